"""Benchmarks: ratios measured in one run (no timed unit tests). ``python -m pfvg_core bench loop --json``.

loop:
- ``segment_time_ratio``: mean time of segments 190–200 ÷ segments 2–12 (target ≤ 1.05: the
  context is bounded, so segment n costs the same as segment 2); each measured segment is the
  fastest of 3 timings of that same segment, to filter out load from other processes;
- ``rss_growth``: peak RSS after the last segment ÷ after segment 10, minus 1 (target ≤ 0.05);
- ``semanticpack_overhead``: segment time with memory on (gate open, ψ injected and updated) ÷
  memory off, minus 1 (target ≤ 0.05).
"""
from __future__ import annotations

import gc
import resource
import statistics
import time

import torch

from .loop import SamplerOptions, sample_segment
from .model import PFVGModel
from .state import MemoryConfig, init_state, step


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _segment_time(model, state, cond, options, repeats: int = 1) -> tuple[float, object]:
    """Time to sample and step one segment; with ``repeats`` > 1 the same segment (a state fully
    determines it) is timed several times and the fastest kept, filtering out load from elsewhere."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        x = sample_segment(model, state, cond, options=options)
        new_state = step(model, state, x)
        best = min(best, time.perf_counter() - t0)
    return best, new_state


def bench_loop(config: str = "small", segments: int = 1000, steps: int = 4, latent: int = 16, overhead_rounds: int = 12,
               overhead_steps: int = 25) -> dict:
    """Segment time and RSS over ``segments`` segments of ``steps`` Euler steps; SemanticPack overhead
    on segments of ``overhead_steps`` steps (the sampler's default: the per-segment ψ update is
    amortised over a real segment)."""
    torch.manual_seed(0)
    model = PFVGModel.build(config, seed=0)
    model.semanticpack.open_gate(-1.0)  # as a trained model: ψ tokens really enter the DiT
    model.refresh_id()
    c = model.latent_channels
    start = torch.randn(1, c, 1, latent, latent)
    with torch.no_grad():
        cond = model.conditioning("a red square moves right over a textured field", start)
    options = SamplerOptions(steps=steps)
    state = init_state(model, start, cond, seed=0, config=MemoryConfig(memory="on"))
    times, rss = [], {}
    measured = set(range(2, 13)) | set(range(190, 201)) | set(range(segments - 11, segments))
    for n in range(segments):
        dt, state = _segment_time(model, state, cond, options, repeats=3 if n in measured else 1)
        times.append(dt)
        if n + 1 in (10, segments):
            gc.collect()
            rss[n + 1] = _rss_mb()
    early, late = times[2:13], times[190:201] if segments > 200 else times[-11:]
    # SemanticPack overhead: alternate on/off segments from states of the same age.
    options = SamplerOptions(steps=overhead_steps)
    s_on = init_state(model, start, cond, seed=1, config=MemoryConfig(memory="on"))
    s_off = init_state(model, start, cond, seed=1, config=MemoryConfig(memory="off"))
    for _ in range(3):  # past ψ₀ and the warm-up
        _, s_on = _segment_time(model, s_on, cond, options)
        _, s_off = _segment_time(model, s_off, cond, options)
    on, off = [], []
    for _ in range(overhead_rounds):
        dt, s_on = _segment_time(model, s_on, cond, options, repeats=2)
        on.append(dt)
        dt, s_off = _segment_time(model, s_off, cond, options, repeats=2)
        off.append(dt)
    return {
        "config": config, "segments": segments, "steps_per_segment": steps, "overhead_steps_per_segment": overhead_steps,
        "latent_hw": latent,
        "segment_time_ratio": round(statistics.mean(late) / statistics.mean(early), 4),
        "rss_growth": round(rss[segments] / rss[10] - 1.0, 4),
        "semanticpack_overhead": round(statistics.median(on) / statistics.median(off) - 1.0, 4),
        "segment_ms_early": round(1000 * statistics.mean(early), 2),
        "segment_ms_late": round(1000 * statistics.mean(late), 2),
        "rss_mb_10": round(rss[10], 1), "rss_mb_last": round(rss[segments], 1),
        "torch_threads": torch.get_num_threads(),
    }


def run(what: str, quick: bool = False, config: str = "small") -> dict:
    if what == "loop":
        return bench_loop(config, segments=220 if quick else 1000, overhead_rounds=4 if quick else 12)
    raise ValueError(f"unknown benchmark {what!r}")
