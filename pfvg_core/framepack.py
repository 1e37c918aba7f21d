"""FramePack short-term context (FramePack §3; PFVG §3.1 "MemoryPack = FramePack + SemanticPack").

Recent latent frames are packed with patchify kernels 1x (1,2,2), 2x (2,4,4) and 4x (4,8,8): the
newer a frame, the finer its kernel, so the context length is bounded whatever the history length.

Schedules use the FramePack paper's notation (§5): ``f16k4f2k2f1k1`` = the oldest 16 frames with
kernel k4, then 2 frames with k2, then the newest frame with k1. The start latent is always packed
with k1 beside the 1x frames (FramePack-F1). A tail prefix says what happens to frames older than
the schedule: ``td_`` delete (default), ``tc_`` compress (their temporal mean, one k4 slot) or
``ta_`` append (each tail frame kept and encoded with k4: the context then grows with the video).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

KERNELS = {1: (1, 2, 2), 2: (2, 4, 4), 4: (4, 8, 8)}  # the embedders of the diffusers class
TAILS = ("delete", "compress", "append")
_TAIL_CODE = {"td": "delete", "tc": "compress", "ta": "append"}


@dataclass(frozen=True)
class Schedule:
    """A packing schedule: groups ``(frames, kernel)`` from oldest to newest, and a tail option."""

    groups: tuple[tuple[int, int], ...] = ((16, 4), (2, 2), (1, 1))
    tail: str = "delete"

    def __post_init__(self):
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, got {self.tail!r}")
        if not self.groups:
            raise ValueError("a schedule needs at least one group")
        for frames, k in self.groups:
            if k not in KERNELS:
                raise ValueError(f"kernel k{k} is not available: the packed DiT has k1, k2 and k4")
            if frames <= 0 or frames % k:
                raise ValueError(f"group f{frames}k{k}: the frame count must be a positive multiple of {k}")

    @classmethod
    def parse(cls, text: str) -> "Schedule":
        """Parse ``[td_|tc_|ta_]f16k4f2k2f1k1`` (FramePack §5 notation)."""
        s = text.strip()
        tail = "delete"
        m = re.fullmatch(r"(?:(td|tc|ta)_)?((?:f\d+k\d+)+)", s)
        if not m:
            raise ValueError(f"schedule {text!r}: expected e.g. 'f16k4f2k2f1k1' or 'tc_f16k4f2k2f1k1'")
        if m.group(1):
            tail = _TAIL_CODE[m.group(1)]
        groups = tuple((int(f), int(k)) for f, k in re.findall(r"f(\d+)k(\d+)", m.group(2)))
        try:
            return cls(groups=groups, tail=tail)
        except ValueError as e:
            raise ValueError(f"schedule {text!r}: {e}") from None

    @property
    def name(self) -> str:
        code = {v: k for k, v in _TAIL_CODE.items()}[self.tail]
        return f"{code}_" + "".join(f"f{f}k{k}" for f, k in self.groups)

    @property
    def length(self) -> int:
        """Frames the schedule packs (the start latent not counted)."""
        return sum(f for f, _ in self.groups)


F1_SCHEDULE = Schedule()  # td_f16k4f2k2f1k1, FramePack-F1's layout


@dataclass(frozen=True)
class History:
    """Latent history with absolute time indices, trimmed to what the schedule can still pack.

    ``frames`` [B, C, T, H, W], ``indices`` [T] (absolute latent time, the start image at 0).
    With tail ``compress``, frames that fell out of the schedule are kept as a running sum.
    """

    frames: torch.Tensor
    indices: torch.Tensor
    tail_sum: torch.Tensor | None = None
    tail_count: int = 0
    tail_index_sum: float = 0.0

    def append(self, frames: torch.Tensor, indices: torch.Tensor, schedule: Schedule) -> "History":
        """A new History with ``frames`` appended (never mutates ``self``)."""
        # the history stays where it started (the CPU): a segment sampled on a GPU is copied to it
        all_frames = torch.cat([self.frames, frames.to(self.frames.device, self.frames.dtype)], dim=2)
        all_idx = torch.cat([self.indices, indices.to(self.indices.device, self.indices.dtype)])
        keep = schedule.length
        if schedule.tail == "append" or all_frames.shape[2] <= keep:
            return History(all_frames, all_idx, self.tail_sum, self.tail_count, self.tail_index_sum)
        old, old_idx = all_frames[:, :, :-keep], all_idx[:-keep]
        tail_sum, count, idx_sum = self.tail_sum, self.tail_count, self.tail_index_sum
        if schedule.tail == "compress":
            s = old.sum(dim=2, keepdim=True)
            tail_sum = s if tail_sum is None else tail_sum + s
            count += old.shape[2]
            idx_sum += float(old_idx.double().sum())
        return History(all_frames[:, :, -keep:].clone(), all_idx[-keep:].clone(), tail_sum, count, idx_sum)


@dataclass(frozen=True)
class PackedGroup:
    """Frames for one kernel: latents [B, C, T, H, W] and their absolute indices [T]."""

    latents: torch.Tensor
    indices: torch.Tensor
    kernel: int


@dataclass(frozen=True)
class PackedContext:
    """What FramePack feeds the DiT: the start latent + 1x, 2x and 4x history (F1 order)."""

    clean: PackedGroup  # start latent ⊕ 1x frames (kernel 1)
    history_2x: PackedGroup
    history_4x: PackedGroup

    def num_tokens(self, patch_size: int = 2) -> int:
        """Context tokens these groups become in the DiT."""
        total = 0
        for g in (self.clean, self.history_2x, self.history_4x):
            kt, kh, kw = KERNELS[g.kernel]
            kh, kw = kh * patch_size // 2, kw * patch_size // 2
            _, _, t, h, w = g.latents.shape
            total += -(-t // kt) * -(-h // kh) * -(-w // kw)
        return total


def pack_history(history: History, start_latent: torch.Tensor, schedule: Schedule = F1_SCHEDULE, start_index: int = 0) -> PackedContext:
    """Pack a latent history into FramePack's multi-kernel context (FramePack §3, Fig. 1).

    The newest ``schedule.length`` frames are split into the schedule's groups (left-padded with
    zero frames while the history is shorter, as FramePack-F1 starts from zeros; padding frames get
    the indices just before the oldest real frame). Groups are merged per kernel in time order.
    ``start_latent`` [B, C, 1, H, W] is packed with kernel 1 at ``start_index``.
    """
    frames, idx = history.frames, history.indices
    n = schedule.length
    tail_frames = tail_idx = None
    if schedule.tail == "append" and frames.shape[2] > n:
        tail_frames, tail_idx = frames[:, :, :-n], idx[:-n]
    frames, idx = frames[:, :, -n:], idx[-n:]
    pad = n - frames.shape[2]
    if pad > 0:
        b, c, _, h, w = frames.shape
        first = int(idx[0]) if idx.numel() else start_index + 1
        frames = torch.cat([frames.new_zeros(b, c, pad, h, w), frames], dim=2)
        idx = torch.cat([torch.arange(first - pad, first, dtype=idx.dtype), idx])
    per_kernel: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {1: [], 2: [], 4: []}
    pos = 0
    for count, k in schedule.groups:
        per_kernel[k].append((frames[:, :, pos : pos + count], idx[pos : pos + count]))
        pos += count
    # Tail frames use the coarsest kernel, ahead of the 4x group.
    if schedule.tail == "compress" and history.tail_count > 0:
        mean = history.tail_sum / history.tail_count
        mean_idx = round(history.tail_index_sum / history.tail_count)
        per_kernel[4].insert(0, (mean.expand(-1, -1, 4, -1, -1), torch.full((4,), mean_idx, dtype=idx.dtype)))
    elif tail_frames is not None:
        r = (-tail_frames.shape[2]) % 4  # pad to a multiple of the kernel by repeating the oldest frame
        tf = torch.cat([tail_frames[:, :, :1].expand(-1, -1, r, -1, -1), tail_frames], dim=2)
        ti = torch.cat([tail_idx[:1].expand(r), tail_idx])
        per_kernel[4].insert(0, (tf, ti))

    def merged(k: int, lead: tuple[torch.Tensor, torch.Tensor] | None = None) -> PackedGroup:
        parts = ([lead] if lead is not None else []) + per_kernel[k]
        if not parts:  # the diffusers class wants all three groups: one empty slot of zeros
            b, c, _, h, w = frames.shape
            kt = KERNELS[k][0]
            first = int(idx[0])
            return PackedGroup(frames.new_zeros(b, c, kt, h, w), torch.arange(first - kt, first, dtype=idx.dtype), k)
        return PackedGroup(torch.cat([p[0] for p in parts], dim=2), torch.cat([p[1] for p in parts]), k)

    start = (start_latent.to(frames.dtype), torch.tensor([start_index], dtype=idx.dtype))
    return PackedContext(clean=merged(1, start), history_2x=merged(2), history_4x=merged(4))
