"""Video extension: a video's frames fed through the MemoryPack update give the loop's own state, so
continuing a video equals generating further; the source is streamed; the CLI writes source + continuation."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pfvg_core.extend import encode_chunks, state_from_latents, state_from_video
from pfvg_core.loop import SamplerOptions, generate_long_video
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryConfig
from pfvg_core.cli import main
from pfvg_core.video_io import open_video, resample, to_uint8_frames, write_video

OPTS = SamplerOptions(steps=3)
CFG = MemoryConfig(window=3)


@pytest.fixture(scope="module")
def model():
    m = PFVGModel.build("tiny", seed=0)
    m.semanticpack.open_gate(-1.0)
    return m


def test_state_from_the_loops_own_latents_continues_like_the_loop(model):
    torch.manual_seed(0)
    start = torch.randn(1, 4, 1, 8, 8)
    segs = list(generate_long_video(model, start, "a red ball", 4, seed=5, config=CFG, options=OPTS))
    cond = model.conditioning("a red ball", start)
    # the first 3 segments as a "video": start frame + 9 latent frames, in uneven chunks
    video = torch.cat([start] + [s.latents for s in segs[:3]], 2)
    state = state_from_latents(model, [video[:, :, :4], video[:, :, 4:]], cond, seed=5, config=CFG)
    ref = segs[2].state
    assert (state.segment, state.next_index) == (ref.segment, ref.next_index)
    assert torch.equal(state.history.frames, ref.history.frames) and torch.equal(state.history.indices, ref.history.indices)
    torch.testing.assert_close(state.psi, ref.psi, atol=1e-6, rtol=1e-5)
    nxt = next(generate_long_video(model, state, "a red ball", 1, options=OPTS))
    torch.testing.assert_close(nxt.latents, segs[3].latents, atol=1e-5, rtol=1e-4)


def test_frames_are_encoded_one_window_at_a_time(model):
    seen = []

    def frames():
        for k in range(11):
            seen.append(k)
            yield np.full((64, 64, 3), 20 * k, np.uint8)

    chunks = encode_chunks(model.codec, frames(), window=3)
    first = next(chunks)
    assert first.shape[2] == 1 and seen == [0]  # lazily: nothing read beyond the start frame
    assert [c.shape[2] for c in chunks] == [3, 3, 3, 1]
    calls = []
    state = state_from_video(model, frames(), "a red ball", seed=1, config=CFG, on_chunk=lambda c: calls.append(c.shape[2]))
    assert calls == [3, 3, 3, 1] and state.next_index == 11 and state.segment == 4
    assert state.history.frames.shape[2] <= CFG.schedule.length + 1  # bounded however long the source
    with pytest.raises(ValueError, match="no frames"):
        state_from_video(model, iter([]), "x", config=CFG)


def test_resample_keeps_time():
    assert list(resample(range(10), 10, 5)) == [0, 2, 4, 6, 8]
    assert list(resample(range(3), 4, 8)) == [0, 0, 1, 1, 2, 2]
    assert len(list(resample(range(300), 30, 8))) == 80


def test_cli_extends_a_video_and_writes_source_then_continuation(tmp_path):
    src = tmp_path / "src.mp4"
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 48, 48, 3), dtype=np.uint8), 17, 0)  # 17 frames at 16 fps
    write_video(frames, str(src), 16)
    out = tmp_path / "ext.webm"
    rc = main(["generate", "--model", "random:tiny", "--extend", str(src), "--prompt", "a cat", "--seconds", "2",
               "--fps", "4", "--size", "32", "32", "--steps", "1", "--window", "2", "--out", str(out)])
    assert rc == 0
    r = open_video(str(out))
    assert r.fps == pytest.approx(4) and r.size == (32, 32)
    got = r.read_all()
    assert got.shape[0] == 5 + 8  # the source resampled to 4 fps (≈1.06 s → 5 frames), then 2 s
    src_small = open_video(str(src), resize=(32, 32)).read_all()
    assert np.abs(got[0].astype(int) - src_small[0].astype(int)).mean() < 6  # starts with the source


@pytest.mark.parametrize("args, msg", [
    (["--image", "IMG", "--extend", "VID"], "either --image"),
    ([], "either --image"),
    (["--image", "IMG", "--step-cache", "-1"], "--step-cache"),
    (["--image", "IMG", "--threads", "0"], "--threads"),
    (["--image", "IMG", "--lora", "missing.safetensors"], "missing.safetensors"),
    (["--extend", "nope.mp4"], "video not found: nope.mp4"),
])
def test_cli_bad_speed_lora_and_extend_options(tmp_path, capsys, args, msg):
    img = tmp_path / "s.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    vid = tmp_path / "v.mp4"
    write_video(np.zeros((3, 64, 64, 3), np.uint8), str(vid), 8)
    args = [str(img) if a == "IMG" else str(vid) if a == "VID" else a for a in args]
    rc = main(["generate", "--model", "random:tiny", "--prompt", "x", "--seconds", "1", "--steps", "1",
               "--out", str(tmp_path / "o.webp"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and msg in err[0], err


def test_cli_lora_and_cache_change_the_video_and_default_sampler(tmp_path):
    from safetensors.torch import save_file

    img = tmp_path / "s.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img)
    g = torch.Generator().manual_seed(0)
    save_file({"transformer.single_transformer_blocks.0.proj_out.lora_A.weight": torch.randn(2, 96, generator=g),
               "transformer.single_transformer_blocks.0.proj_out.lora_B.weight": torch.randn(32, 2, generator=g)},
              tmp_path / "l.safetensors")

    def run(name, *extra):
        out = tmp_path / f"{name}.webp"
        assert main(["generate", "--model", "random:tiny", "--image", str(img), "--prompt", "x", "--seconds", "2",
                     "--fps", "4", "--steps", "3", "--window", "2", "--out", str(out), *extra]) == 0
        with Image.open(out) as v:
            return [np.asarray(v.convert("RGB")) for _ in [v.seek(k) for k in range(v.n_frames)]]

    base = run("base")
    assert not np.array_equal(run("lora", "--lora", f"{tmp_path / 'l.safetensors'}:2.0")[-1], base[-1])
    assert np.array_equal(run("lora0", "--lora", f"{tmp_path / 'l.safetensors'}:0")[-1], base[-1])
    assert np.array_equal(run("cache0", "--step-cache", "0")[-1], base[-1])


def test_embedded_default_samples_with_the_benchmarked_unipc_steps():
    from pfvg_core.model import EMBEDDED_SAMPLING, load_embedded_model

    m = load_embedded_model()
    assert m.sampling_defaults == EMBEDDED_SAMPLING == {"sampler": "unipc", "steps": 9}
    assert PFVGModel.build("tiny").sampling_defaults == {"sampler": "euler", "steps": 25}
