"""Whole-video decoding in bounded chunks (pfvg_core.decoding): the same frames as one batch, memory flat in length."""
import numpy as np
import pytest
import torch

from pfvg_core.decoding import decode_chunks, decode_video, decoded_length
from pfvg_core.model import load_embedded_model
from pfvg_core.video_io import to_uint8_frames


@pytest.fixture(scope="module")
def codec():
    return load_embedded_model().codec


def _latents(t, b=1, seed=0, c=8):  # the embedded codec: 8 latent channels, 16 × 16 for 64 × 64 frames
    return torch.randn(b, c, t, 16, 16, generator=torch.Generator().manual_seed(seed))


def _image(px):  # the IMAGE conversion the nodes did on a whole decoded video (comfy_io.pixels_to_image)
    x = (px.float().clamp(-1, 1) + 1) / 2
    return x.permute(0, 2, 3, 4, 1).reshape(-1, *x.shape[3:], 3).contiguous()


def test_embedded_codec_has_no_temporal_context(codec):
    """ConvCodec decodes each frame on its own: a frame's pixels do not depend on its neighbours."""
    lat = _latents(6)
    other = lat.clone()
    other[:, :, [0, 1, 3, 4, 5]] = _latents(5, seed=1)
    with torch.no_grad():
        assert torch.allclose(codec.decode(lat)[:, :, 2], codec.decode(other)[:, :, 2], atol=1e-6, rtol=0)


def test_chunked_decode_equals_one_batch(codec):
    """Chunks of 3 latent frames (and the start frame alone) against the codec on all 21 frames at once. The codec is
    per frame, so only the convolution's batch blocking can differ: float32 agreement to 1e-6 on values in [−1, 1]
    (measured: 0 to 3e-7, where the chunk size changes how oneDNN blocks the batch)."""
    start, lat = _latents(1, seed=2), _latents(20)
    with torch.no_grad():
        whole = codec.decode(torch.cat([start, lat], 2)).float()
    px = decode_video(codec, lat, start=start, layout="pixels", chunk=3)
    assert px.shape == whole.shape == (1, 3, 21, 64, 64)
    assert (px - whole).abs().max() <= 1e-6
    assert torch.allclose(decode_video(codec, lat, start=start, layout="image", chunk=3), _image(whole), atol=1e-6, rtol=0)
    u8 = decode_video(codec, lat, start=start, layout="uint8", chunk=3)
    assert u8.dtype == np.uint8 and np.array_equal(u8, to_uint8_frames(px))
    seen = []
    decode_video(codec, lat, chunk=8, on_chunk=lambda p, t0: seen.append((t0, p.shape[2])))
    assert seen == [(0, 8), (8, 8), (16, 4)]  # every chunk at its place, no chunk longer than asked


def test_image_layout_keeps_comfyui_batch_order(codec):
    lat = _latents(5, b=2)
    with torch.no_grad():
        whole = codec.decode(lat)
    img = decode_video(codec, lat, layout="image", chunk=2)
    assert img.shape == (10, 64, 64, 3)
    assert torch.allclose(img, _image(whole), atol=1e-6, rtol=0)  # item 0's frames, then item 1's


def test_bad_layout_and_chunk_are_named(codec):
    with pytest.raises(ValueError, match="layout"):
        decode_video(codec, _latents(2), layout="png")
    with pytest.raises(ValueError, match="chunk"):
        decode_video(codec, _latents(2), chunk=0)
    with pytest.raises(ValueError, match=r"latents: expected \[B, C, T, H, W\]"):
        decode_video(codec, torch.zeros(4, 2, 16, 16))


class _Temporal(torch.nn.Module):
    """A codec with temporal context (each frame mixes in the previous one) and no windows of its own."""

    temporal_factor = 2

    def decode(self, z):
        x = z[:, :3].repeat_interleave(2, dim=2)[:, :, 1:]
        return (x + torch.roll(x, 1, dims=2)) / 2


def test_a_temporal_codec_without_windows_is_decoded_in_one_call():
    codec, lat = _Temporal(), _latents(5)
    chunks = list(decode_chunks(codec, lat, chunk=2))
    assert len(chunks) == 1 and torch.equal(chunks[0], codec.decode(lat))
    assert decode_video(codec, lat).shape[2] == decoded_length(codec, 5) == 9


def test_causal_vae_is_decoded_window_by_window():
    """FramePack-F1's codec (HunyuanVideo's causal VAE, tiny random weights): decoded in windows of tile_latents with
    one latent of overlap; the chunked output is exactly its decode, 1 + 4(T − 1) frames, one window at a time."""
    diffusers = pytest.importorskip("diffusers")
    from pfvg_core.f1_encoders import F1Codec

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                              norm_num_groups=4, scaling_factor=0.5).eval()
    codec = F1Codec(vae, tile_latents=2)
    lat = torch.randn(1, 4, 5, 4, 4, generator=torch.Generator().manual_seed(3))
    windows = [p.shape[2] for p in decode_chunks(codec, lat)]
    assert windows == [5, 4, 4, 4]  # windows [0, 2), [1, 3), [2, 4), [3, 5): 1 + 4 frames, then 4 new frames each
    whole = codec.decode(lat)
    out = decode_video(codec, lat, layout="pixels")
    assert out.shape == whole.shape == (1, 3, decoded_length(codec, 5), 32, 32) and decoded_length(codec, 5) == 17
    assert torch.equal(out, whole)
    assert np.array_equal(decode_video(codec, lat, layout="uint8"), to_uint8_frames(whole))


def test_decode_peak_memory_is_flat_in_the_video_length():
    """Peak memory above the start of a decode into a ComfyUI IMAGE (the kernel's high-water mark, reset before; sampled where it cannot be reset):
    going from 10 s to 60 s adds at most 1.2× the extra frames returned (plus 16 MB of measurement slack); decoding
    in one batch adds ~50× (bench decode prints the figures)."""
    from bench.engine import decode_peak

    short, long = decode_peak(10.0), decode_peak(60.0)
    grown = long["peak_mb"] - short["peak_mb"]
    assert grown <= 1.2 * (long["returned_mb"] - short["returned_mb"]) + 16, (short, long)
