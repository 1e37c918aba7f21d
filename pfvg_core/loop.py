"""Segment sampler and the long-video loop (PFVG Fig. 1; docs/architecture.md §1).

    for n = 0, 1, …:  context = FramePack(history) + ψₙ + start latent (RoPE index 0)
                      xⁿ = rectified-flow sampler(DiT, noise, context, prompt of segment n)
                      state = step(state, xⁿ)      (history ⊕ xⁿ, ψₙ₊₁ = Squeeze(ψₙ, Memorize(xⁿ)))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from . import flow
from .framepack import pack_history
from .model import Conditioning, PFVGModel
from .options import option
from .rope import time_indices
from .state import MemoryConfig, MemoryState, check_state, init_state, step
from .validate import SAMPLING, check_finite, number, prompt_entries, short


class Cancelled(RuntimeError):
    """Raised when the cancel check returns True (checked before every sampling step)."""


@dataclass(frozen=True)
class SamplerOptions:
    """How one segment is sampled (FramePack-F1's sampler settings)."""

    steps: int = option(25, "Sampling steps per segment.", limit=SAMPLING["steps"])
    cfg: float = option(1.0, "Real classifier-free guidance (1 = off, FramePack-F1's default; > 1 uses the negative prompt).",
                        limit=SAMPLING["cfg"], step=0.1)
    distilled_guidance: float = option(10.0, "FramePack-F1's embedded (distilled) guidance scale.", limit=SAMPLING["distilled_guidance"],
                                       step=0.1)
    guidance_rescale: float = 0.0  # std rescale of real CFG (FramePack)
    shift: float | None = option(None, "Time shift; 0 = resolution-dependent (FramePack); otherwise in [0.01, 100].",
                                 min=0.0, max=SAMPLING["shift"].hi, step=0.1, widget_default=0.0)
    sampler: str = option("euler", "euler: first order; unipc: UniPC bh2 (FramePack's sampler), better at few steps.",
                          choices=flow.SAMPLERS)

    def __post_init__(self):
        if self.shift == 0:  # the widget's "resolution-dependent"
            object.__setattr__(self, "shift", None)
        for name in ("steps", "cfg", "distilled_guidance", "guidance_rescale", "shift"):  # finite, bounded (validate.py)
            object.__setattr__(self, name, number(name, getattr(self, name), SAMPLING[name]))
        if self.sampler not in flow.SAMPLERS:
            raise ValueError(f"sampler must be one of {flow.SAMPLERS}, got {short(self.sampler)}")


@dataclass(frozen=True)
class StepEvent:
    """Passed to the progress callback after every sampling step."""

    segment: int
    step: int  # 1-based within the segment
    steps: int
    denoised: torch.Tensor | None = None  # the step's estimate of the clean window x₀ = x − σ·(ε − x) (previews)


@dataclass(frozen=True)
class SegmentContext:
    """Everything the DiT sees besides x_t for one segment: FramePack context, RoPE indices, ψ tokens."""

    packed: object
    indices: object
    psi_tokens: torch.Tensor | None
    psi_mask: torch.Tensor | None


def segment_context(model: PFVGModel, state: MemoryState) -> SegmentContext:
    """MemoryPack for the next segment: FramePack(history) + ψₙ, with the RoPE indices of the state's mode."""
    cfg = state.config
    packed = pack_history(state.history, state.start_latent, cfg.schedule)
    idx = time_indices(cfg.rope, packed, state.next_index, cfg.window)
    psi_tokens = None
    if state.psi is not None and model.semanticpack is not None:
        psi_tokens = model.semanticpack.context_tokens(state.psi.to(model.device, model.dtype))
    return SegmentContext(packed, idx, psi_tokens, state.psi_mask)


def velocity(model: PFVGModel, ctx: SegmentContext, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning,
             guidance: float | None) -> torch.Tensor:
    """v_θ(x_t, t) for a segment in context, in the paper's convention (training; PFVG eq. 5)."""
    return model.predict_velocity(x_t, t, cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask, guidance)


def segment_noise(state: MemoryState, device="cpu") -> torch.Tensor:
    """ε for the state's next segment, from the seed stream (same on every device)."""
    b, c, _, h, w = state.start_latent.shape
    gen = torch.Generator("cpu").manual_seed(state.noise_seed)
    return torch.randn(b, c, state.config.window, h, w, generator=gen).to(device)


def denoise(model: PFVGModel, ctx: SegmentContext, noise: torch.Tensor, cond: Conditioning, negative: Conditioning | None,
            options: SamplerOptions, on_step: Callable[[int], None] | None = None, cancel: Callable[[], bool] | None = None,
            where: str = "") -> torch.Tensor:
    """The one sampling loop: integrate the flow from ``noise`` (σ = 1) to a clean window (σ = 0) with
    ``options.sampler``, in the sampler's convention (σ, flow prediction ε − x; ``flow`` docstring), so the
    scheduler's σ goes to the DiT and the DiT's output to the scheduler unchanged.
    ``cancel`` is checked before every step; ``on_step(i, x0)`` is called after step i (1-based) with that
    step's clean estimate x₀ = x_σ − σ·(ε − x) (the flow prediction read as a denoised window, for previews)."""
    b, _, win, h, w = noise.shape
    mu = flow.schedule_mu(options.shift, win * (h // 2) * (w // 2))
    # the schedule stays on the CPU: its bookkeeping (which step, which σ) reads values, which on a GPU would wait
    # for the card at every step; its σ are 0-d tensors that combine with the window on any device
    sched = flow.make_scheduler(options.sampler, options.steps, mu, device="cpu")
    use_neg = negative is not None and options.cfg != 1.0
    x = noise
    with torch.no_grad():
        for i, sigma in enumerate(sched.sigmas[:-1]):
            if cancel is not None and cancel():
                raise Cancelled(f"cancelled at {where}step {i + 1}/{options.steps}")
            sigmas = sigma.expand(b).float()
            out = model.predict_flow(x, sigmas, cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask,
                                     options.distilled_guidance)
            out_neg = (model.predict_flow(x, sigmas, negative, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask,
                                          options.distilled_guidance) if use_neg else None)
            out = flow.guided(out, out_neg, options.cfg, options.guidance_rescale)
            x0 = (x - sigma.to(x) * out) if on_step is not None else None
            x = sched.step(out, sched.timesteps[i], x, return_dict=False)[0]
            if on_step is not None:
                on_step(i + 1, x0)
    return x


def sample_segment(model: PFVGModel, state: MemoryState, cond: Conditioning, negative: Conditioning | None = None,
                   options: SamplerOptions = SamplerOptions(), on_step: Callable[[StepEvent], None] | None = None,
                   cancel: Callable[[], bool] | None = None) -> torch.Tensor:
    """Sample segment xⁿ [B, C, window, H, W] given the memory state. Deterministic per (seed, segment)."""
    check_state(model, state)
    with torch.no_grad():
        ctx = segment_context(model, state)
    report = (lambda i, x0: on_step(StepEvent(state.segment, i, options.steps, x0))) if on_step is not None else None
    x = denoise(model, ctx, segment_noise(state, model.device), cond, negative, options, report, cancel,
                where=f"segment {state.segment}, ")
    return check_finite(f"segment {state.segment}", x)  # never a NaN video reported as a success


# --- prompt schedule ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptSchedule:
    """Prompts with start times in seconds: segment n uses the last prompt started by its start.

    A prompt is text (encoded by the model's text encoder) or a ``Conditioning`` already encoded (e.g. each
    line encoded by ComfyUI's text encoders: ``with_prompts``); ``texts`` keeps the lines for display."""

    entries: tuple[tuple[float, object], ...]
    texts: tuple[str, ...] | None = None

    def with_prompts(self, prompts) -> "PromptSchedule":
        """The same times with each line's prompt replaced by ``prompts[i]`` (e.g. its encoded conditioning)."""
        prompts = list(prompts)
        if len(prompts) != len(self.entries):
            raise ValueError(f"prompt schedule: {len(prompts)} prompts for {len(self.entries)} lines")
        return PromptSchedule(tuple((t, p) for (t, _), p in zip(self.entries, prompts)), self.labels())

    def labels(self) -> tuple[str, ...]:
        return self.texts or tuple(p if isinstance(p, str) else f"prompt {i + 1}" for i, (_, p) in enumerate(self.entries))

    def text_at(self, seconds: float) -> str:
        labels = self.labels()
        current = labels[0]
        for (t, _), label in zip(self.entries, labels):
            if t <= seconds + 1e-9:
                current = label
        return current

    @classmethod
    def parse(cls, text: str) -> "PromptSchedule":
        """A schedule when the first line starts with a time — then every line does: ``0: a cat`` /
        ``[12s] a dog``, the first at 0 — else the whole text is one prompt from 0 s (the rule of
        ``validate.prompt_entries``: no text silently becomes a timed schedule)."""
        entries = prompt_entries(text, "prompt schedule")
        if isinstance(entries, str):
            if not entries.strip():
                raise ValueError("prompt schedule is empty: give at least one prompt")
            entries = ((0.0, entries.strip()),)
        return cls(entries)

    def prompt_at(self, seconds: float):
        current = self.entries[0][1]
        for t, p in self.entries:
            if t <= seconds + 1e-9:
                current = p
        return current


def segments_for_seconds(seconds: float, fps: float, window: int, temporal_factor: int = 1) -> int:
    """Segments needed for ``seconds`` of video at ``fps`` (a segment = window latent frames)."""
    seconds, fps = number("seconds", seconds, SAMPLING["seconds"]), number("fps", fps, SAMPLING["fps"])
    n = max(1, math.ceil(seconds * fps / (window * temporal_factor)))
    return number("segments (seconds × fps ÷ frames per segment)", n, SAMPLING["segments"])


@dataclass(frozen=True)
class SegmentResult:
    index: int
    latents: torch.Tensor  # [B, C, window, H, W]
    state: MemoryState  # the state after this segment
    prompt: str
    seconds: float  # video time (s) at the end of this segment


def generate_long_video(model: PFVGModel, start: torch.Tensor | MemoryState, prompt: str | PromptSchedule, num_segments: int,
                        seed: int | None = None, config: MemoryConfig = MemoryConfig(), options: SamplerOptions = SamplerOptions(),
                        fps: float = 8.0, negative_prompt: str | None = None, image_embeds: torch.Tensor | None = None,
                        conditioning: Conditioning | None = None,
                        on_step: Callable[[StepEvent], None] | None = None, cancel: Callable[[], bool] | None = None,
                        on_segment: Callable[[SegmentResult], None] | None = None) -> Iterator[SegmentResult]:
    """The long-video loop (PFVG Fig. 1): yield segments as they are made. Memory stays bounded: only the
    state is carried.

    ``start``: the start latent [B, C, 1, H, W] (a new video: ψ₀ from the first prompt, ``seed``, ``config``,
    ``fps``, ``image_embeds``) or a MemoryState to continue from (its config, fps and image features; ``seed``,
    if given, replaces its seed). ``prompt``: one prompt or a schedule (segment n's start time picks its
    prompt); each prompt is encoded once. ``conditioning``: features to use for every segment instead of
    the prompts (e.g. from ComfyUI's text encoder). ``negative_prompt`` is used when ``options.cfg`` > 1.
    Hooks: ``on_step`` after every sampling step, ``cancel`` before every step (raises Cancelled),
    ``on_segment`` after every segment (before it is yielded)."""
    num_segments = number("segments", num_segments, SAMPLING["segments"])
    if seed is not None:
        seed = number("seed", seed, SAMPLING["seed"])
    schedule = prompt if isinstance(prompt, PromptSchedule) else PromptSchedule(((0.0, prompt),))
    state = start if isinstance(start, MemoryState) else None
    start_latent = state.start_latent if state is not None else start
    if state is not None:
        check_state(model, state)
        image_embeds, fps = state.image_embeds, state.fps
    tf = model.temporal_factor
    cache: dict[str, Conditioning] = {}

    def cond_for(p) -> Conditioning:
        if isinstance(p, Conditioning):  # already encoded (a schedule of ComfyUI conditionings)
            return p
        if p not in cache:
            with torch.no_grad():
                cache[p] = model.conditioning(p, start_latent.to(model.device), image_embeds)
        return cache[p]

    negative = cond_for(negative_prompt) if negative_prompt is not None and options.cfg != 1.0 else None
    if state is None:
        first = conditioning if conditioning is not None else cond_for(schedule.entries[0][1])
        state = init_state(model, start_latent, first, seed or 0, config, fps=fps)
    elif seed is not None:
        state = state.replace(seed=int(seed))
    for _ in range(num_segments):
        now = state.seconds_at(tf)
        p = schedule.prompt_at(now)
        x = sample_segment(model, state, conditioning if conditioning is not None else cond_for(p), negative, options,
                           on_step, cancel)
        state = step(model, state, x)
        result = SegmentResult(state.segment - 1, x, state, schedule.text_at(now), state.seconds_at(tf))
        if on_segment is not None:
            on_segment(result)
        yield result
