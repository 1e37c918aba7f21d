"""The whole research protocol in one run of bounded wall clock:
``python -m research.protocol --out OUT --seconds 420``.

Phases, each timed and logged to ``OUT/report.json`` (``phases``) the moment it ends:

1. ``data``: world videos of the training split, the codec (the chosen configuration: 8 channels, sprite
   weight ×21; no candidates), the latents (``experiments.prepare_data``);
2. ``probe``: training throughput of each speed setting (``throughput.probe``: videos per forward pass, bf16,
   ``torch.compile``), the reference being the 2026-11-26 setting; the fastest that ran and fits the memory
   trains everything below (``report.json`` → ``throughput``);
3. ``train``: every run of the protocol (shared pretraining; stage 1 per seed, memory on and off; stage 2 per
   variant and seed: (a)–(c) with 3 seeds), the stages sized by the seconds left and the trainings at a time
   the memory allows (``experiments.calibrate``), all of them ended by a deadline that leaves the evaluation
   its time; the runs are packed into ``OUT`` at once (``carry.pack_runs``), so they survive whatever happens to
   the evaluation;
4. ``eval``: the references, then every model on the held-out 60 s videos (batched per model, bf16 when the
   runs trained in bf16, ``--jobs`` processes); each finished evaluation's scores go to ``OUT/scores.json`` at
   once; the evaluations the deadline cuts are listed and done later on any machine (``carry unpack`` restores
   the runs and the scores; ``embedded_recipe --experiments --work …`` finishes and ships seed 0);
5. ``report.json`` → ``experiments``: the table (and its Markdown).

``OUT`` then holds ``report.json``, ``scores.json`` and the packed runs (``runs-*.safetensors``). One job's failure (a compiler error, out of memory) is recorded and the rest goes on. ``--quick`` runs the same
command at tiny size on a CPU (the dry run CI tests).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time


from pfvg_core.atomic import write_json
from research import carry
from research import experiments as ex
from research import throughput

# the research budget on a GPU: the experiments' protocol, the codec chosen on 2026-11-26 (no candidates),
# 16 held-out 60 s videos, 3 training seeds, 8 sampling steps
GPU_BUDGET = dict(train_videos=256, codec_candidates=(), steps=8)
# shares of the seconds left after data and probe: training phases, then the evaluation (the rest)
SPLIT = {"base": 0.17, "stage1": 0.22, "stage2": 0.17}
TRAIN_OVERRUN = 1.15  # every training ends by (data + probe) + 1.15 × its shares: the evaluation keeps the rest
PACK_RESERVE_S = 20.0  # seconds kept for writing the table at the end
PROBE_SHARE = 0.2  # the probe starts no setting after this share of the call
# per-step time of one run alone relative to the shared pretraining at the same setting: stage 1 (ψ, BPTT), stage 2
# (the slowest variant, Student Forcing: 5 more DiT evaluations per clip; docs/research.md, H200 step times)
ALONE = {"stage1": 1.5, "stage2": 2.5}
REPORT = "report.json"
# share of the GPU's memory the trainings may take at once; a memory-on run keeps the graphs of ``psi_bptt`` clips
# (ψ's gradient runs that far back), so it needs ≈ psi_bptt × the probe's peak (measured memory off, one clip)
MEMORY_USE = 0.85
CUDA_CONTEXT_GIB = 0.6  # per process, beside what the probe measures (its allocations only)


def training_processes(peak_gib: float | None, total_gib: float | None, psi_bptt: int, jobs: int) -> int:
    """Trainings at a time that fit the device: ``MEMORY_USE`` × its memory ÷ (``psi_bptt`` × the probe's peak +
    a CUDA context)."""
    if not peak_gib or not total_gib:
        return jobs
    return max(1, min(jobs, int(MEMORY_USE * total_gib // (peak_gib * psi_bptt + CUDA_CONTEXT_GIB))))


def slowdowns(b: ex.Budget, train_jobs: int) -> dict:
    """``calibrate``'s slow-downs for stages 1–2 when ``train_jobs`` run at a time: one run's own cost
    (``ALONE``) × the runs sharing the GPU (assumed saturated by one run at the chosen batch: conservative) ×
    the waves a phase needs."""
    plan = ex.training_plan(b)
    out = {}
    for k, name in ((1, "stage1"), (2, "stage2")):
        n = max(1, len(plan[k]))
        out[name] = ALONE[name] * min(train_jobs, n) * math.ceil(n / train_jobs)
    return out


class Report:
    """``OUT/report.json``: phases (name, seconds, measured figures), the probe, the table; rewritten atomically
    at every change, so that a call cut at any moment leaves a readable file."""

    def __init__(self, out: str, log=print):
        self.path = os.path.join(out, REPORT)
        self.log = log
        self.t0 = time.time()
        self.data: dict = {"phases": []}
        self.write()

    def write(self) -> None:
        write_json(self.path, self.data, indent=1)

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.write()

    def done(self, name: str, started: float, **extra) -> dict:
        rec = {"phase": name, "seconds": round(time.time() - started, 1), "since_start_s": round(time.time() - self.t0, 1), **extra}
        self.data["phases"].append(rec)
        self.write()
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
    reserve = min(PACK_RESERVE_S, 0.05 * seconds)
    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    os.makedirs(out, exist_ok=True)
    report = Report(out, log)
    t = time.time()
    _, b = ex.prepare_data(work, b, dev, log)
    report.done("data", t, train_videos=b.train_videos, seconds_per_video=b.seconds)
    t = time.time()
    total_gib = torch.cuda.get_device_properties(dev).total_memory / 2**30 if dev.startswith("cuda") else None
    train_jobs = jobs
    if probe_settings:
        horizon = min(SPLIT.values()) * max(1.0, deadline - time.time() - reserve)  # the shortest training phase
        res = throughput.probe(work, b, dev, probe_settings, probe_steps, probe_clips, log,
                               on_row=lambda rows: report.set("throughput", {"rows": rows, "partial": True}),
                               horizon_s=horizon, max_peak_gib=None if total_gib is None else
                               (MEMORY_USE * total_gib - CUDA_CONTEXT_GIB) / b.psi_bptt,
                               stop_at=t_start + PROBE_SHARE * seconds)
        report.set("throughput", res)
        b = throughput.apply(b, res["chosen"])
        train_jobs = training_processes((res["chosen"] or {}).get("peak_gib"), total_gib, b.psi_bptt, jobs)
        report.done("probe", t, chosen=res["chosen"], ratio_to_reference=res["ratio_to_reference"],
                    ratio_to_h200_2026_11_26=res["ratio_to_h200_2026_11_26"], train_jobs=train_jobs, device_gib=total_gib)
    if b.compile != "off":  # many trainings compile at once on the machine's cores: one compiler thread each
        os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    left = deadline - time.time() - reserve
    split = {k: max(1.0, v * left) for k, v in SPLIT.items()}
    split["slowdown"] = slowdowns(b, train_jobs)
    t_train = time.time()
    train_deadline = t_train + TRAIN_OVERRUN * sum(v for k, v in split.items() if k in SPLIT)
    state = {"t_eval": time.time()}

    def trained(budget):
        names = [[job["name"] for job in phase] for phase in ex.training_plan(budget)]
        figures = {k: training_throughput(work, n) for k, n in zip(("base", "stage1", "stage2"), names)}
        try:
            files = carry.pack_runs(work, out, log=log)
        except Exception as e:  # noqa: BLE001 - the evaluation still runs; the report says what was not packed
            files, figures["pack_error"] = [], f"{type(e).__name__}: {e}"
        report.done("train", t_train, budget_seconds=split, steps={"base": budget.base, "stage1": budget.stage1,
                    "stage2": budget.stage2}, video_batch=budget.video_batch, amp=budget.amp, compile=budget.compile,
                    train_jobs=train_jobs, throughput=figures, packed_files=len(files))
        state["t_eval"] = time.time()

    result = ex.run(work, b, dev, jobs, log, split, on_trained=trained, deadline=deadline - reserve,
                    on_evaluated=lambda _res: write_scores(work, out), train_jobs=train_jobs, train_deadline=train_deadline)
    write_scores(work, out)
    evaluated = sum(len(per) for per in result["rows"].values())
    report.done("eval", state["t_eval"], evaluated_models=evaluated, missing=result["missing"], failed=result["failed"],
                heldout=b.heldout, heldout_seconds=b.heldout_seconds)
    report.set("experiments", result)
    report.set("experiments_md", ex.markdown(result))
    report.done("total", t_start)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.protocol", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the report, the scores and the packed runs")
    ap.add_argument("--work", default="build/research", help="the experiments folder (trainings, evaluations)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--jobs", type=int, default=16, help="processes at a time (trainings, evaluations)")
    ap.add_argument("--seconds", type=float, default=420.0, help="wall clock for the whole call")
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
    except Exception as e:  # noqa: BLE001 - what was written under OUT stays; say what stopped the call
        import traceback

        traceback.print_exc()
        print(f"error: the call stopped: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(ex.markdown(res))
    return 0 if not res["missing"] else 3


if __name__ == "__main__":
    sys.exit(main())
