"""RoPE consistency (PFVG §3.1): which temporal index each token's rotary phase uses.

- ``video`` (PFVG): the start image sits at index 0 of the whole video, and every history frame
  and the segment being generated keep their absolute indices, so relative positions across
  segments are those of the real video (R_q(m)·R_k(n) = R_g(n − m)).
- ``local`` (FramePack-F1): indices restart every segment: start image 0, then the packed frames
  1, 2, … in time order, then the window (F1: [0 | 1–16 | 17–18 | 19 | 20–28]).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .framepack import PackedContext

ROPE_MODES = ("video", "local")


@dataclass(frozen=True)
class TimeIndices:
    """Index tensors for the diffusers call: window, clean (start ⊕ 1x), 2x, 4x."""

    latents: torch.Tensor
    clean: torch.Tensor
    history_2x: torch.Tensor
    history_4x: torch.Tensor


def time_indices(mode: str, packed: PackedContext, window_start: int, window: int) -> TimeIndices:
    """Map the packed context and the window ``[window_start, window_start + window)`` to RoPE indices."""
    if mode == "video":
        return TimeIndices(
            latents=torch.arange(window_start, window_start + window),
            clean=packed.clean.indices.long(),
            history_2x=packed.history_2x.indices.long(),
            history_4x=packed.history_4x.indices.long(),
        )
    if mode != "local":
        raise ValueError(f"rope mode must be one of {ROPE_MODES}, got {mode!r}")
    # F1 local layout: start 0, then 4x, 2x, 1x frames in order, then the window.
    n4 = packed.history_4x.indices.numel()
    n2 = packed.history_2x.indices.numel()
    n1 = packed.clean.indices.numel() - 1
    i4 = torch.arange(1, 1 + n4)
    i2 = torch.arange(1 + n4, 1 + n4 + n2)
    i1 = torch.arange(1 + n4 + n2, 1 + n4 + n2 + n1)
    w0 = 1 + n4 + n2 + n1
    return TimeIndices(
        latents=torch.arange(w0, w0 + window),
        clean=torch.cat([torch.zeros(1, dtype=torch.long), i1]),
        history_2x=i2,
        history_4x=i4,
    )
