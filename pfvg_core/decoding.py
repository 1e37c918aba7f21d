"""Decoding a whole video in bounded chunks, into one preallocated output.

A codec's intermediates are far larger than its output (the embedded ConvCodec holds ~2.3 MB of
activations per 64×64 frame against 48 KB of float frames), so decoding every frame in one batch makes
peak memory grow with the video's length. Here the latents are decoded ``chunk`` latent frames at a
time and each chunk is written straight into the output, allocated once at its final size and layout
(ComfyUI's IMAGE, uint8 frames, or codec pixels): peak memory is the output plus one chunk's
intermediates, whatever the length.

Chunking is exact: ``ConvCodec`` and ``PatchCodec`` decode every frame on its own (no temporal
context), so a frame decodes to the same pixels in any batch; a codec with temporal context
(``f1_encoders.F1Codec``, HunyuanVideo's causal VAE) brings its own ``decode_chunks`` — the latent
windows its ``decode`` is made of — and a temporal codec without one is decoded in one call.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

DECODE_CHUNK = 16  # latent frames per decode call (the embedded codec: ~37 MB of intermediates)
LAYOUTS = ("image", "uint8", "pixels")


def decoded_length(codec, latent_frames: int) -> int:
    """Pixel frames ``codec`` decodes ``latent_frames`` latent frames to (1 + tf·(T − 1) for a causal VAE)."""
    tf = int(getattr(codec, "temporal_factor", 1))
    return latent_frames if tf == 1 else 1 + tf * (latent_frames - 1)


def decode_chunks(codec, latents: torch.Tensor, chunk: int = DECODE_CHUNK, device=None, dtype=None) -> Iterator[torch.Tensor]:
    """Pixels [B, 3, t, H, W] in [−1, 1] (float, on the CPU), chunk after chunk; their concatenation along
    time is ``codec.decode(latents)``. ``device``/``dtype``: where the codec runs (default: its weights')."""
    if latents.ndim != 5:
        raise ValueError(f"latents: expected [B, C, T, H, W], got {tuple(latents.shape)}")
    chunk = int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk: expected a positive number of latent frames, got {chunk}")
    if device is None or dtype is None:
        w = next(codec.parameters(), None) if hasattr(codec, "parameters") else None
        device = device if device is not None else (w.device if w is not None else "cpu")
        dtype = dtype if dtype is not None else (w.dtype if w is not None else torch.float32)
    with torch.no_grad():
        if hasattr(codec, "decode_chunks"):  # a codec with temporal context: its own windows
            for px in codec.decode_chunks(latents):
                yield px.float().cpu()
            return
        if int(getattr(codec, "temporal_factor", 1)) != 1:  # temporal context and no windows of its own
            yield codec.decode(latents.to(device, dtype)).float().cpu()
            return
        for a in range(0, latents.shape[2], chunk):
            yield codec.decode(latents[:, :, a : a + chunk].to(device, dtype)).float().cpu()


def _allocate(layout: str, b: int, t: int, h: int, w: int):
    if layout == "image":  # ComfyUI IMAGE [B·T, H, W, 3] in [0, 1]
        return torch.empty(b * t, h, w, 3, dtype=torch.float32)
    if layout == "uint8":  # the first batch item's frames [T, H, W, 3] (video_io.to_uint8_frames)
        return np.empty((t, h, w, 3), np.uint8)
    return torch.empty(b, 3, t, h, w, dtype=torch.float32)  # codec pixels [B, 3, T, H, W] in [−1, 1]


def _write(out, layout: str, px: torch.Tensor, t0: int, total: int) -> None:
    """Chunk ``px`` [B, 3, t, H, W] into ``out`` at frames t0 … t0 + t (the conversions of ``comfy_io.pixels_to_image``
    and ``video_io.to_uint8_frames``, done on the chunk)."""
    t = px.shape[2]
    if layout == "pixels":
        out[:, :, t0 : t0 + t] = px
    elif layout == "uint8":
        out[t0 : t0 + t] = ((px[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    else:
        x = ((px.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 4, 1)  # [B, t, H, W, 3]
        for i in range(px.shape[0]):
            out[i * total + t0 : i * total + t0 + t] = x[i]


def decode_video(codec, latents: torch.Tensor, *, start: torch.Tensor | None = None, layout: str = "pixels",
                 chunk: int = DECODE_CHUNK, device=None, dtype=None,
                 on_chunk: Callable[[torch.Tensor, int], None] | None = None):
    """Decode ``latents`` [B, C, T, h, w] (``start`` [B, C, 1, h, w] first, if given) chunk by chunk into one
    preallocated output of ``layout``: "image" (ComfyUI IMAGE [B·T', H, W, 3] float in [0, 1]), "uint8" (the
    first batch item, [T', H, W, 3]) or "pixels" ([B, 3, T', H, W] float in [−1, 1]). ``on_chunk(pixels, t0)``
    sees every decoded chunk (e.g. for a preview from the chunk at hand) before it is written."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")
    parts = ([start] if start is not None else []) + [latents]
    for p in parts:
        if not torch.is_tensor(p) or p.ndim != 5:
            raise ValueError(f"latents: expected [B, C, T, H, W], got {tuple(getattr(p, 'shape', ()))}")
    total = sum(decoded_length(codec, p.shape[2]) for p in parts)
    out, t0 = None, 0
    for p in parts:
        for px in decode_chunks(codec, p.to(latents.dtype) if p is start else p, chunk, device, dtype):
            if out is None:
                out = _allocate(layout, px.shape[0], total, px.shape[3], px.shape[4])
            if t0 + px.shape[2] > total:
                raise ValueError(f"the codec decoded more frames than its temporal factor gives ({total})")
            if on_chunk is not None:
                on_chunk(px, t0)
            _write(out, layout, px, t0, total)
            t0 += px.shape[2]
    if t0 != total:
        raise ValueError(f"the codec decoded {t0} frames, expected {total}")
    return out
