"""Benchmarks: ratios measured in one run (no timed unit tests). ``python -m pfvg_core bench loop --json``.

loop:
- ``segment_time_ratio``: mean time of segments 190–200 ÷ segments 2–12 (target ≤ 1.05: the
  context is bounded, so segment n costs the same as segment 2); each measured segment is the
  fastest of 3 timings of that same segment, to filter out load from other processes;
- ``rss_growth``: peak RSS after the last segment ÷ after segment 10, minus 1 (target ≤ 0.05);
- ``semanticpack_overhead``: segment time with memory on (gate open, ψ injected and updated) ÷
  memory off, minus 1 (target ≤ 0.05).

train (same model, same videos, one optimizer step = one video of ``clips`` clips):
- ``direct_over_teacher``: Direct Forcing step time ÷ teacher forcing (target ≤ 1.3);
- ``student_over_direct``: 5-step Student Forcing ÷ Direct Forcing (the paper: much larger).
Primary figures use the paper's stage-2 parameters (last layers + SemanticPack), where Direct
Forcing is used; ``last_layers_only`` repeats them with only the output layers trained (no backward
through the DiT) and ``all_params`` with every parameter trained. With Direct Forcing reusing the
loss forward, a Student Forcing step costs k·(clips − 1) more forwards than a teacher step: the
ratio is large only when the backward is cheap.
"""
from __future__ import annotations

import gc
import resource
import statistics
import time

import torch

from ..loop import SamplerOptions, sample_segment
from ..model import PFVGModel
from ..state import MemoryConfig, init_state, step


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
    state = init_state(model, start, cond, seed=0, config=MemoryConfig(memory_mode="on"))
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
    s_on = init_state(model, start, cond, seed=1, config=MemoryConfig(memory_mode="on"))
    s_off = init_state(model, start, cond, seed=1, config=MemoryConfig(memory_mode="off"))
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


def bench_train(config: str = "small", clips: int = 4, latent: int = 16, videos: int = 3, steps: int = 6) -> dict:
    import copy
    import tempfile

    from ..data import write_latent_video
    from ..train import StageConfig, TrainConfig, Trainer, read_log

    base = PFVGModel.build(config, seed=0)
    c = base.latent_channels
    window = 9
    out: dict = {"config": config, "clips_per_video": clips, "latent_hw": latent, "steps_timed": steps - 1}
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        for v in range(videos):
            write_latent_video(f"{tmp}/data", f"v{v}", torch.randn(c, 1 + clips * window, latent, latent, generator=g), f"video {v}", 8)
        for label, params in (("stage2", "last-layers+semanticpack"), ("last_layers_only", "last-layers"), ("all_params", "all")):
            times = {}
            for forcing in ("teacher", "direct", "student"):
                cfg = TrainConfig(model=f"random:{config}", data=f"{tmp}/data", out=f"{tmp}/{label}-{forcing}", window=window,
                                  stages=[StageConfig(forcing, forcing, params, steps)], save_every=10**9)
                tr = Trainer(cfg, model=copy.deepcopy(base))
                tr.run()
                secs = [r["seconds"] for r in read_log(cfg.out)][1:]  # first step is warm-up
                times[forcing] = statistics.median(secs)
            figures = {"direct_over_teacher": round(times["direct"] / times["teacher"], 4),
                       "student_over_direct": round(times["student"] / times["direct"], 4),
                       "step_seconds": {k: round(v, 4) for k, v in times.items()}}
            if label == "stage2":
                out.update(figures)
            else:
                out[label] = figures
    return out


def run(what: str, quick: bool = False, config: str = "small") -> dict:
    if what == "loop":
        return bench_loop(config, segments=220 if quick else 1000, overhead_rounds=4 if quick else 12)
    if what == "train":
        return bench_train(config, steps=3 if quick else 6)
    raise ValueError(f"unknown benchmark {what!r}")
