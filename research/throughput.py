"""Training throughput of the experiments' small world models on one device.

The 2026-11-26 H200 runs were launch-bound: 16 videos stacked in one forward pass, fp32 with TF32 matmuls,
eager kernels — 1.83 s per optimizer step of 16 videos × 40 clips for the shared pretraining alone, i.e.
≈ 350 clip-samples per second (docs/research.md). The ways out are the usual ones for a small model on a
big card: more videos per forward pass (``video_batch``), bf16 autocast (``amp``) and fused kernels
(``compile``: ``torch.compile`` of the DiT's blocks). Which of them pays, and by how much, is a measurement,
not a guess: ``probe`` trains a few steps of the shared pretraining (teacher forcing, memory off: the figure
the 2026-11-26 number is) in each setting, in one process on the same data, and reports clip-samples per
second; ``choose`` keeps the fastest setting that ran. A setting that fails (out of memory, a compiler
error) is a row with its error, never the end of the call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time

import torch

# the setting of the 2026-11-26 runs (measured there: ≈ 350 clip-samples per second on an H200)
REFERENCE = {"video_batch": 16, "amp": "off", "compile": "off"}
H200_2026_11_26 = 16 * 40 / 1.83


def settings(batches: tuple[int, ...] = (64, 256), compile_too: bool = True, reference_batch: int = 16) -> list[dict]:
    """The settings ``probe`` measures: the reference, larger batches, bf16 at the largest batch, then (one
    compilation: it costs a minute) ``compile`` at the largest batch with whichever of fp32 / bf16 ran faster
    there (``amp: "best"``, resolved by ``probe``)."""
    big = max(batches)
    out = [dict(REFERENCE, video_batch=reference_batch)]
    out += [{"video_batch": nb, "amp": "off", "compile": "off"} for nb in batches]
    out.append({"video_batch": big, "amp": "bf16", "compile": "off"})
    if compile_too:
        out.append({"video_batch": big, "amp": "best", "compile": "blocks"})
    return out


COMPILE_ESTIMATE_S = 60.0  # the probe starts a compiled setting only this long before its stop


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(work: str, b, device: str, setting: dict, steps: int = 2, max_clips: int = 8) -> dict:
    """Clip-samples per second of the shared pretraining's training step in ``setting`` (video_batch, amp,
    compile) on the experiments folder ``work`` (its latents and codec; ``experiments.prepare_data``).
    One step first (compilation, allocator warm-up: its seconds reported as ``first_step_s``), then ``steps``
    timed steps of ``max_clips`` clips per video."""
    from pfvg_core.train import StageConfig, TrainConfig, Trainer
    from research.experiments import fresh_model

    dev = torch.device(device)
    row = {**setting, "steps": steps, "max_clips": max_clips}
    try:
        model = fresh_model(work, b, seed=0)
        nb = setting["video_batch"]
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(model="(throughput probe)", data=os.path.join(work, "latents"), out=out,
                              stages=[StageConfig("probe", "teacher", "all", steps + 2)], window=b.window, memory_mode="off",
                              accumulate=b.accumulate, videos_per_step=nb, video_batch=nb, max_clips=max_clips, lr=b.lr,
                              save_every=10**9, shift=b.shift, device=device, amp=setting["amp"], compile=setting["compile"])
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            if setting["compile"] != "off":  # as in the trainings, which compile many at once (research.protocol)
                import torch._inductor.config as inductor_config

                inductor_config.compile_threads = 1
            trainer = Trainer(cfg, model=model)
            t = time.perf_counter()
            trainer.run(max_steps=1)
            _sync(dev)
            row["first_step_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            trainer.run(max_steps=steps)
            _sync(dev)
            dt = time.perf_counter() - t
            clips = min(max_clips, min(trainer.data[v].num_clips(b.window) for v in range(len(trainer.data))))
        row["seconds_per_step"] = round(dt / steps, 4)
        row["clip_samples_per_s"] = round(steps * nb * clips / dt, 1)
        if dev.type == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    except Exception as e:  # noqa: BLE001 - a setting that fails is a row with its error, the probe goes on
        row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    finally:
        with contextlib.suppress(Exception):
            del trainer, model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    return row


def probe(work: str, b, device: str, rows_settings: list[dict] | None = None, steps: int = 2, max_clips: int = 8,
          log=print, on_row=None, horizon_s: float = 60.0, max_peak_gib: float | None = None,
          stop_at: float | None = None) -> dict:
    """Every setting measured in turn (``settings()`` by default); returns {rows, chosen, ratio_to_reference,
    ratio_to_h200_2026_11_26}; the choice counts a run's extra first-step time (compilation) over ``horizon_s`` and
    keeps to ``max_peak_gib`` of measured peak memory. No setting starts after ``stop_at`` (a ``time.time()``
    value): those are rows marked ``skipped``. The ratios compare clip-samples per second with the reference setting measured
    in the same run and with the 2026-11-26 H200 figure (meaningful only on an H200)."""
    if device == "cuda" or str(device).startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # as the 2026-11-26 runs (experiments.train_job)
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    for s in rows_settings or settings():
        need = COMPILE_ESTIMATE_S if s["compile"] != "off" else 0.0  # a compilation cannot be stopped once started
        if stop_at is not None and time.time() + need >= stop_at:
            rows.append({**s, "skipped": "the probe's time is up" + (" for a compilation" if need else "")})
            continue
        if s["amp"] == "best":  # the faster of fp32 / bf16 measured at this batch (fp32 when neither ran)
            same = [r for r in rows if r["video_batch"] == s["video_batch"] and r["compile"] == "off" and r.get("clip_samples_per_s")]
            s = {**s, "amp": max(same, key=lambda r: r["clip_samples_per_s"])["amp"] if same else "off"}
        row = measure(work, b, device, s, steps, max_clips)
        rows.append(row)
        log(f"throughput {row}")
        if on_row is not None:
            on_row(rows)
    chosen = choose(rows, horizon_s, max_peak_gib)
    ref = rows[0].get("clip_samples_per_s") if rows else None
    best = chosen.get("clip_samples_per_s") if chosen else None
    return {"rows": rows, "chosen": chosen, "device": str(device),
            "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() and str(device).startswith("cuda") else "cpu",
            "ratio_to_reference": round(best / ref, 2) if best and ref else None,
            "ratio_to_h200_2026_11_26": round(best / H200_2026_11_26, 2) if best else None,
            "max_peak_gib": max_peak_gib, "target": "≥ 10× the 2026-11-26 H200 figure"}


def effective_rate(row: dict, horizon_s: float) -> float:
    """Clip-samples per second over a run of ``horizon_s`` seconds: a setting whose first step is slow (a
    compilation) loses that time once per run (every training is a process of its own)."""
    extra = max(0.0, row.get("first_step_s", 0.0) - row["seconds_per_step"])
    return row["clip_samples_per_s"] * max(0.0, horizon_s - extra) / horizon_s


def choose(rows: list[dict], horizon_s: float = 60.0, max_peak_gib: float | None = None) -> dict | None:
    """The setting that trains the most clip-samples in a run of ``horizon_s`` seconds (None when none ran),
    among those whose measured peak memory is at most ``max_peak_gib``."""
    ok = [r for r in rows if "error" not in r and "skipped" not in r and r.get("clip_samples_per_s")
          and (max_peak_gib is None or r.get("peak_gib", 0.0) <= max_peak_gib)]
    return max(ok, key=lambda r: effective_rate(r, horizon_s)) if ok else None


def apply(b, chosen: dict | None):
    """The budget with the chosen setting (unchanged when nothing ran)."""
    if not chosen:
        return b
    return dataclasses.replace(b, video_batch=chosen["video_batch"], amp=chosen["amp"], compile=chosen["compile"])
