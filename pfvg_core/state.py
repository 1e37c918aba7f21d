"""MemoryState: the immutable value carried from segment to segment (docs/architecture.md §1).

It holds ψ, the bounded packed history with absolute time indices, the start latent, the segment
counter, the seed stream, the id of the model that made it, and what later segments' prompts need
(the start image's features and the frame rate). ``step`` returns a new state and
never mutates its input (ComfyUI caches node outputs, so states are shared values).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .framepack import History, Schedule
from .options import check_limits, option
from .rope import ROPE_MODES
from .validate import MAX_SCHEDULE_FRAMES, SAMPLING, number, short

MEMORY_MODES = ("on", "off", "zero")  # SemanticPack on; off (FramePack only); ψ₀ = 0 ablation


class StateMismatch(ValueError):
    """A memory state used with a model (or layout) other than the one that made it."""


@dataclass(frozen=True)
class MemoryConfig:
    """How the memory is laid out (PFVG §3.1; FramePack §5). ``schedule`` may be given as text."""

    window: int = option(9, "Latent frames generated per segment (FramePack-F1's latent_window_size).", limit=SAMPLING["window"])
    schedule: Schedule = option("td_f16k4f2k2f1k1", "FramePack packing schedule (FramePack §5 notation): "
                                   "f16k4f2k2f1k1 = 16 frames at 4× compression, 2 at 2×, 1 at 1×; td/tc/ta: delete, "
                                   "compress or append the tail.")
    rope: str = option("video", "video: start image at index 0 of the whole video (PFVG); local: FramePack-F1.",
                       choices=ROPE_MODES)
    memory_mode: str = option("on", "SemanticPack on, off, or ψ₀ = 0 (ablation).", choices=MEMORY_MODES)

    def __post_init__(self):
        if isinstance(self.schedule, str):
            try:
                object.__setattr__(self, "schedule", Schedule.parse(self.schedule))
            except ValueError as e:  # name the input, never echo a huge text in full
                reason = str(e).rsplit(": ", 1)[-1][:120]  # framepack's reason, without its own "schedule …:" prefix
                hint = "" if reason.startswith("expected") else "; expected e.g. 'td_f16k4f2k2f1k1'"
                raise ValueError(f"schedule {short(self.schedule, 60)}: {reason}{hint}") from None
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule: expected a FramePack schedule such as 'td_f16k4f2k2f1k1', got {short(self.schedule)}")
        if self.schedule.length > MAX_SCHEDULE_FRAMES:
            raise ValueError(f"schedule: packs {self.schedule.length} frames; at most {MAX_SCHEDULE_FRAMES}")
        check_limits(self)  # window: finite, in its widget's range (options.py, validate.py)
        if self.rope not in ROPE_MODES:
            raise ValueError(f"rope must be one of {ROPE_MODES}, got {short(self.rope)}")
        if self.memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode must be one of {MEMORY_MODES}, got {short(self.memory_mode)}")


@dataclass(frozen=True)
class MemoryState:
    model_id: str
    config: MemoryConfig
    start_latent: torch.Tensor  # [B, C, 1, H, W], time index 0
    history: History  # bounded; the start latent is its first frame
    psi: torch.Tensor | None  # [B, L, dim] (L = prompt+image tokens for ψ₀, then M)
    psi_mask: torch.Tensor | None  # [B, L] bool
    seed: int
    segment: int = 0
    next_index: int = 1  # absolute latent index of the next frame to generate
    image_embeds: torch.Tensor | None = None  # [B, N, image_dim] start image features (later prompts' conditioning)
    fps: float = 8.0  # video frame rate (prompt schedule times)

    def seconds_at(self, temporal_factor: int = 1) -> float:
        """Video time (s) at the start of the next segment, ``temporal_factor`` video frames per latent frame."""
        return (self.next_index - 1) * temporal_factor / self.fps

    @property
    def noise_seed(self) -> int:
        """The seed stream: segment n draws its noise from (seed, n)."""
        return (self.seed * 1_000_003 + self.segment) % (2**63 - 1)

    @property
    def memory_tokens(self) -> int:
        return 0 if self.psi is None else int(self.psi.shape[1])

    def replace(self, **kw) -> "MemoryState":
        return dataclasses.replace(self, **kw)


def check_state(model, state: MemoryState) -> None:
    if not isinstance(state, MemoryState):
        raise TypeError(f"expected a MemoryState, got {type(state).__name__}")
    if state.model_id != model.model_id:
        raise StateMismatch(
            f"this memory state was made by model {state.model_id}, not by the loaded model {model.model_id}: "
            "encode ψ₀ again with this model")


def init_state(model, start_latent: torch.Tensor, cond, seed: int = 0, config: MemoryConfig = MemoryConfig(),
               grad: bool = False, fps: float = 8.0) -> MemoryState:
    """The state before segment 0: history = [start latent], ψ = ψ₀ (PFVG §3.1). ``grad``: keep ψ₀'s graph.
    The state keeps ``cond``'s image features and ``fps`` for the prompts of later segments."""
    fps, seed = number("fps", fps, SAMPLING["fps"]), number("seed", seed, SAMPLING["seed"])  # validate.py
    if start_latent.ndim != 5 or start_latent.shape[2] != 1:
        raise ValueError(f"start_latent must be [B, C, 1, H, W], got {tuple(start_latent.shape)}")
    if start_latent.shape[1] != model.latent_channels:
        raise ValueError(f"start_latent has {start_latent.shape[1]} channels, the model expects {model.latent_channels}")
    psi = mask = None
    if config.memory_mode != "off":
        if model.semanticpack is None:
            raise ValueError("memory_mode 'on'/'zero' needs a model with a SemanticPack; use memory_mode='off'")
        with torch.set_grad_enabled(grad):
            psi, mask = model.semanticpack.init_memory(cond.prompt_embeds.to(model.dtype), cond.image_embeds.to(model.dtype),
                                                       cond.prompt_mask, zero=config.memory_mode == "zero")
    start = start_latent.detach().float()
    history = History(start.clone(), torch.zeros(1, dtype=torch.long))
    embeds = cond.image_embeds.detach() if cond is not None and cond.image_embeds is not None else None
    return MemoryState(model.model_id, config, start, history, psi, mask, int(seed), image_embeds=embeds, fps=float(fps))


def step(model, state: MemoryState, segment: torch.Tensor, grad: bool = False) -> MemoryState:
    """MemoryPack update after segment xⁿ [B, C, T, H, W]: history ⊕ xⁿ (bounded) and
    ψₙ₊₁ = Squeeze(ψₙ, Memorize(xⁿ)). Returns a new state; ``state`` is left as it was.

    ``grad=True`` (training) keeps the graph of this one ψ update (ψₙ itself is detached:
    gradients flow through one update, not back through the whole video)."""
    check_state(model, state)
    hist = state.history
    if segment.ndim != 5 or segment.shape[:2] != hist.frames.shape[:2] or segment.shape[3:] != hist.frames.shape[3:]:
        raise ValueError(f"segment shape {tuple(segment.shape)} does not fit the history {tuple(hist.frames.shape)} "
                         "([B, C, T, H, W] with the same B, C, H, W)")
    seg = segment.detach().float()
    t = seg.shape[2]
    idx = torch.arange(state.next_index, state.next_index + t)
    history = hist.append(seg, idx, state.config.schedule)
    psi, mask = state.psi, state.psi_mask
    if psi is not None:
        with torch.set_grad_enabled(grad):
            psi = model.semanticpack.update(psi.detach(), seg.to(model.dtype).to(model.device), mask)
        mask = None  # after Squeeze every memory token is real
    return state.replace(history=history, psi=psi, psi_mask=mask, segment=state.segment + 1, next_index=state.next_index + t)
