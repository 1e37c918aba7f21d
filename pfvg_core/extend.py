"""Video extension: continue an existing video (PFVG §3.1 memory, docs/architecture.md §1 state).

The source video's first frame becomes the start latent (RoPE index 0) and ψ₀ comes from the prompt and
that frame, as for a new video; then every later window of source frames goes through the same
MemoryPack update as a generated segment (history ⊕ xⁿ, ψₙ₊₁ = Squeeze(ψₙ, Memorize(xⁿ))). The state
after the last source frame is where generation goes on, with the absolute time indices of the whole
video. Frames are read and encoded one window at a time, so a long source is never held in memory.

End frame: not offered. FramePack's end-frame support is its inverted ("anti-drifting") sampling of the
original FramePack model, which generates sections backwards with the end frame as a clean latent at a
future index; FramePack-F1 (the backbone here) is trained only forwards — its clean latents are the
start frame and the past — and neither F1 nor the embedded default has seen a future clean frame.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from .state import MemoryConfig, MemoryState, init_state, step
from .video_io import to_pixels


def encode_chunks(codec, frames: Iterable[np.ndarray], window: int) -> Iterator[torch.Tensor]:
    """uint8 frames [H, W, 3] (any iterable, consumed lazily) → latents [1, C, T, H', W']: the first
    frame alone (the start latent), then ``window`` latent frames (``window``·temporal factor pixel
    frames) at a time; a last partial window is encoded as it is."""
    tf = getattr(codec, "temporal_factor", 1)
    w = next(codec.parameters(), None)
    dev, dt = (w.device, w.dtype) if w is not None else ("cpu", torch.float32)

    def enc(frames_):
        with torch.no_grad():
            return codec.encode(to_pixels(np.stack(frames_)).to(dev, dt)).float().cpu()

    buf: list[np.ndarray] = []
    first = True
    for f in frames:
        buf.append(np.asarray(f, dtype=np.uint8))
        if first or len(buf) == window * tf:
            yield enc(buf)
            buf, first = [], False
    if first:
        raise ValueError("the video to extend has no frames")
    if buf:
        if len(buf) % tf:
            buf = buf[: len(buf) - len(buf) % tf]
        if buf:
            yield enc(buf)


def state_from_latents(model, chunks: Iterable[torch.Tensor], cond, seed: int = 0,
                       config: MemoryConfig = MemoryConfig(), fps: float = 8.0) -> MemoryState:
    """The memory state after an existing video given as latent chunks [B, C, T, H, W] (the first
    chunk's first frame is the start latent; ``cond``: the conditioning ψ₀ is made from)."""
    state = None
    for chunk in chunks:
        if chunk.ndim != 5:
            raise ValueError(f"latent chunks must be [B, C, T, H, W], got {tuple(chunk.shape)}")
        if state is None:
            state = init_state(model, chunk[:, :, :1], cond, seed, config, fps=fps)
            chunk = chunk[:, :, 1:]
        for a in range(0, chunk.shape[2], config.window):  # as generated segments: one window at a time
            state = step(model, state, chunk[:, :, a : a + config.window])
    if state is None:
        raise ValueError("the video to extend has no frames")
    return state


def state_from_video(model, frames: Iterable[np.ndarray], prompt: str, seed: int = 0,
                     config: MemoryConfig = MemoryConfig(), image_embeds: torch.Tensor | None = None,
                     on_chunk=None, fps: float = 8.0) -> MemoryState:
    """The memory state after an existing video (uint8 frames at the model's resolution and ``fps``, streamed)."""
    if model.codec is None:
        raise ValueError("extending a video needs a model with a codec to encode its frames")
    return extend_state(model, config, fps, frames=frames, prompt=prompt, image_embeds=image_embeds, seed=seed,
                        on_chunk=on_chunk)


def extend_state(model, config: MemoryConfig, fps: float, *, frames: Iterable[np.ndarray] | None = None,
                 latents: torch.Tensor | None = None, prompt: str | None = None,
                 features: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                 image_embeds: torch.Tensor | None = None, seed: int = 0, on_chunk=None) -> MemoryState:
    """The state to continue an existing video from: uint8 ``frames`` [H, W, 3] (encoded with the model's
    codec, one window at a time) or video ``latents`` [B, C, T, H, W] (e.g. from a VAE); ψ₀ from a
    ``prompt`` or external prompt ``features`` (tokens, pooled) and the first frame. ``on_chunk`` sees
    every later chunk before it is used."""
    from .operations import start_conditioning

    if latents is not None:
        if latents.ndim != 5 or latents.shape[1] != model.latent_channels:
            raise ValueError(f"latent: expected video latents [B, {model.latent_channels}, T, H, W], got {tuple(latents.shape)}")
        chunks = iter([latents.float()])
    elif frames is not None:
        if model.codec is None:
            raise ValueError("this model has no codec: give the video as a LATENT (e.g. from a VAE Encode node)")
        chunks = encode_chunks(model.codec, frames, config.window)
    else:
        raise ValueError("give the video to extend as IMAGE frames or a video LATENT")
    first = next(chunks, None)
    if first is None:
        raise ValueError("the video to extend has no frames")
    with torch.no_grad():
        cond = start_conditioning(model, first[:, :, :1], prompt, features, image_embeds)

    def all_chunks():
        yield first
        for c in chunks:
            if on_chunk is not None:
                on_chunk(c)
            yield c

    return state_from_latents(model, all_chunks(), cond, seed, config, fps)
