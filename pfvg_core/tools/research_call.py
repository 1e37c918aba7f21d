"""One device call does the whole research protocol (issue 22 item 2):
``python -m pfvg_core.tools.research_call --out $OUT --seconds 480``.

Phases, each timed and logged to ``OUT/phases.jsonl`` the moment it ends:

1. ``data``: world videos of the training split, the codec (the chosen configuration: 8 channels, sprite
   weight ×21; no candidates), the latents (``experiments.prepare_data``);
2. ``probe``: training throughput of each speed setting (``throughput.probe``: videos per forward pass, bf16,
   ``torch.compile``), the reference being the 2026-11-26 setting; the fastest that ran trains everything below
   (``OUT/throughput.json``);
3. ``train``: every run of the protocol (shared pretraining; stage 1 per seed, memory on and off; stage 2 per
   variant and seed: (a)–(c) with 3 seeds), the stages sized by the seconds left (``experiments.calibrate``);
   the runs are packed into ``OUT`` at once (``carry.pack_runs``: at most 8 files of ≤ 15 MiB), so they come
   back whatever happens to the evaluation;
4. ``eval``: every model on the held-out 60 s videos (batched per model, bf16 / compiled as chosen, ``--jobs``
   processes), the three references; each finished evaluation's scores go to ``OUT/scores.json`` at once; the
   evaluations the deadline cuts are listed and done later on any machine (``carry unpack`` restores the runs
   and the scores; ``embedded_recipe --experiments --work …`` finishes and ships seed 0);
5. ``OUT/experiments.{json,md}``: the table.

Every phase's measured clip-samples per second and seconds are in ``phases.jsonl``. ``--quick`` runs the same
command at tiny size on a CPU (the dry run CI tests).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time


from ..atomic import write_json
from . import carry
from . import experiments as ex
from . import throughput

# the research budget on a GPU: the experiments' protocol, the codec chosen on 2026-11-26 (no candidates),
# 16 held-out 60 s videos, 3 training seeds, 8 sampling steps
GPU_BUDGET = dict(train_videos=256, codec_candidates=(), steps=8)
# shares of the seconds left after data and probe: training phases, then the evaluation (the rest)
SPLIT = {"base": 0.17, "stage1": 0.22, "stage2": 0.17}
PACK_RESERVE_S = 20.0  # seconds kept for writing the table at the end
# share of the GPU's memory the trainings may take at once; a memory-on run keeps the graphs of ``psi_bptt`` clips
# (ψ's gradient runs that far back), so it needs ≈ psi_bptt × the probe's peak (measured memory off, one clip)
MEMORY_USE = 0.85


def training_processes(peak_gib: float | None, total_gib: float | None, psi_bptt: int, jobs: int) -> int:
    """Trainings at a time that fit the device: ``MEMORY_USE`` × its memory ÷ (``psi_bptt`` × the probe's peak)."""
    if not peak_gib or not total_gib:
        return jobs
    return max(1, min(jobs, int(MEMORY_USE * total_gib // (peak_gib * psi_bptt))))


class Phases:
    """``OUT/phases.jsonl``: one line per finished phase (name, seconds, measured figures)."""

    def __init__(self, out: str, log=print):
        self.path = os.path.join(out, "phases.jsonl")
        self.log = log
        self.t0 = time.time()

    def done(self, name: str, started: float, **extra) -> dict:
        rec = {"phase": name, "seconds": round(time.time() - started, 1), "since_start_s": round(time.time() - self.t0, 1), **extra}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self.log(f"phase {rec}")
        return rec


def training_throughput(work: str, names: list[str]) -> dict:
    """Clip-samples per second of finished runs (their training logs: clips × videos per step ÷ step seconds)."""
    clips = seconds = 0.0
    for n in names:
        for r in ex._read_log(os.path.join(work, n)):
            clips += r.get("clips", 0)
            seconds += r.get("seconds", 0.0)
    return {"clip_samples": int(clips), "step_seconds": round(seconds, 1),
            "clip_samples_per_s": round(clips / seconds, 1) if seconds else None}


def write_scores(work: str, out: str) -> str:
    """Every finished evaluation of the experiments folder ``work`` into ``OUT/scores.json`` (atomically)."""
    scores = {}
    for name in sorted(os.listdir(work)):
        folder = os.path.join(work, name)
        if os.path.isdir(folder):
            for f in sorted(os.listdir(folder)):
                if f.startswith("scores_") and f.endswith(".json"):
                    with open(os.path.join(folder, f)) as fh:
                        scores.setdefault(name, {})[f] = fh.read()
    path = os.path.join(out, carry.SCORES)
    write_json(path, scores)
    return path


def run(out: str, work: str, b: ex.Budget, device: str, jobs: int, seconds: float, probe_settings: list[dict] | None,
        probe_steps: int = 2, probe_clips: int = 8, log=print) -> dict:
    """The whole protocol within ``seconds`` of wall clock (see the module's docstring). Returns the result."""
    import torch

    t_start = time.time()
    deadline = t_start + seconds
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    os.makedirs(out, exist_ok=True)
    phases = Phases(out, log)
    t = time.time()
    _, b = ex.prepare_data(work, b, dev, log)
    phases.done("data", t, train_videos=b.train_videos, seconds_per_video=b.seconds)
    t = time.time()
    total_gib = torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.startswith("cuda") else None
    train_jobs = jobs
    if probe_settings:
        horizon = min(SPLIT.values()) * max(1.0, deadline - time.time() - min(PACK_RESERVE_S, 0.05 * seconds))  # the shortest training phase
        res = throughput.probe(work, b, dev, probe_settings, probe_steps, probe_clips, log,
                               on_row=lambda rows: write_json(os.path.join(out, "throughput.json"), {"rows": rows, "partial": True}, indent=1),
                               horizon_s=horizon, max_peak_gib=None if total_gib is None else MEMORY_USE * total_gib / b.psi_bptt)
        write_json(os.path.join(out, "throughput.json"), res, indent=1)
        b = throughput.apply(b, res["chosen"])
        train_jobs = training_processes((res["chosen"] or {}).get("peak_gib"), total_gib, b.psi_bptt, jobs)
        phases.done("probe", t, chosen=res["chosen"], ratio_to_reference=res["ratio_to_reference"],
                    ratio_to_h200_2026_11_26=res["ratio_to_h200_2026_11_26"], train_jobs=train_jobs, device_gib=total_gib)
    reserve = min(PACK_RESERVE_S, 0.05 * seconds)
    left = deadline - time.time() - reserve
    split = {k: max(1.0, v * left) for k, v in SPLIT.items()}
    t_train = time.time()

    def trained(budget):
        plan = ex.training_plan(budget)
        phase_names = [[job["name"] for job in phase] for phase in plan]
        figures = {k: training_throughput(work, names) for k, names in zip(("base", "stage1", "stage2"), phase_names)}
        files = carry.pack_runs(work, out, log=log)
        phases.done("train", t_train, budget_seconds=split, steps={"base": budget.base, "stage1": budget.stage1, "stage2": budget.stage2},
                    video_batch=budget.video_batch, amp=budget.amp, compile=budget.compile, throughput=figures,
                    packed_files=len(files))
        nonlocal t_eval
        t_eval = time.time()

    t_eval = time.time()
    result = ex.run(work, b, dev, jobs, log, split, on_trained=trained, deadline=deadline - reserve,
                    on_evaluated=lambda _res: write_scores(work, out), train_jobs=train_jobs)
    write_scores(work, out)
    evaluated = sum(len(per) for per in result["rows"].values())
    phases.done("eval", t_eval, evaluated_models=evaluated, missing=result["missing"], heldout=b.heldout,
                heldout_seconds=b.heldout_seconds)
    for f in ("experiments.json", "experiments.md"):
        shutil.copyfile(os.path.join(work, f), os.path.join(out, f))
    phases.done("total", t_start)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pfvg_core.tools.research_call", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="what comes back from the device ($OUT)")
    ap.add_argument("--work", default="build/research", help="the experiments folder on the device")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--jobs", type=int, default=16, help="processes at a time (trainings, evaluations)")
    ap.add_argument("--seconds", type=float, default=480.0, help="wall clock for the whole call")
    ap.add_argument("--budget", default=None, help="JSON object of Budget fields to override")
    ap.add_argument("--batches", default="64,256", help="videos per forward pass the probe tries beside the reference")
    ap.add_argument("--no-probe", action="store_true", help="train with the budget's settings, measure nothing first")
    ap.add_argument("--no-compile", action="store_true", help="the probe leaves torch.compile out")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a dry run of the command on a CPU)")
    a = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    kw = json.loads(a.budget) if a.budget else {}
    if a.quick:
        b = ex.Budget.tiny(**{"seeds": (0, 1), **kw})
        batches = tuple(int(x) for x in a.batches.split(",")) if a.batches != "64,256" else (2,)
        probe = None if a.no_probe else throughput.settings(batches, compile_too=not a.no_compile, reference_batch=1)
        steps, clips = 1, 2
    else:
        b = ex.Budget(**{**GPU_BUDGET, **kw})
        batches = tuple(int(x) for x in a.batches.split(","))
        probe = None if a.no_probe else throughput.settings(batches, compile_too=not a.no_compile)
        steps, clips = 2, 8
    try:
        res = run(a.out, a.work, b, a.device, a.jobs, a.seconds, probe, steps, clips, log)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(ex.markdown(res))
    return 0 if not res["missing"] else 3


if __name__ == "__main__":
    sys.exit(main())
