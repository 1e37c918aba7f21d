"""Recipe for the embedded default model (``make train-default``): the experiments' pipeline
(``research/experiments.py``) for the paper's method, then the bundle.

1. ≥ 20 s world videos of the training split (views and sprites leave and return inside each clip
   sequence) → the ConvCodec (factor 4, 8 channels, loss weighted to sprite pixels), their latents;
2. shared pretraining: DiT + encoders, teacher forcing, no memory;
3. stage 1: teacher forcing on the whole net, memory on (SemanticPack, ψ trained through ``psi_bptt``
   updates so that it learns to keep what the FramePack context forgets);
4. stage 2: Direct Forcing on the output layers + SemanticPack;
5. evaluation on the held-out split (memory on, memory off at inference, the three references);
6. the bundle in ``pfvg_core/assets/default`` with its training log, figures and model card.

``--experiments`` runs every variant and seed of the experiments at once (``--jobs`` processes) and
ships training seed 0 of "MemoryPack + Direct Forcing" as the default (one GPU call does both).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
from safetensors.torch import load_file

from pfvg_core.model import EMBEDDED_DIR, PFVGModel
from research import experiments as ex

ASSETS = EMBEDDED_DIR
STAGE_RUNS = ("base", "stage1_memory_on_seed0", f"{ex.slug(ex.ALL)}_seed0")


# cpu: what 2 CPU cores train in ≈ 45 min (codec included) — too little for a useful model (docs/embedded-model.md,
# "Training it again"); gpu: the experiments' budget (trained with every variant and seed at once).
PRESETS = {
    "cpu": dict(train_videos=32, heldout=4, codec_steps=800, codec_batch=32, codec_candidates=(), video_batch=4,
                base=12, stage1=10, stage2=6, steps=8, warmup=5),
    "gpu": dict(train_videos=128, steps=8, codec_candidates=((4, 0.0), (4, 20.0))),
}


def default_budget(quick: bool = False, preset: str = "cpu", **kw) -> ex.Budget:
    """The default model's budget: a preset of the experiments' sizes, one seed, the paper's method only."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = {"seeds": (0,), "variants": (ex.ALL,), **({} if quick else PRESETS[preset]), **kw}
    return ex.Budget.tiny(**kw) if quick else ex.Budget(**kw)


def build(out: str = ASSETS, work: str = "build/default", budget: ex.Budget | None = None, device: str = "auto", jobs: int = 1,
          seconds: dict | None = None, log=print) -> dict:
    """Train (or reuse what ``work`` holds), evaluate and write the bundle to ``out``. Returns the figures."""
    b = budget or default_budget()
    if ex.ALL not in b.variants or 0 not in b.seeds:
        raise ValueError(f"the default model is training seed 0 of {ex.ALL!r}: the budget must include it")
    def trained(budget):  # the weights first: a run cut during the evaluation still leaves the model
        if os.path.isfile(os.path.join(work, STAGE_RUNS[-1], "done.json")):
            package(work, {"budget": budget.to_dict(), "device": device}, out.rstrip("/") + "_unevaluated", log)
        else:
            log(f"{STAGE_RUNS[-1]} did not train: no default to write")

    result = ex.run(work, b, device, jobs, log, seconds, on_trained=trained)
    if STAGE_RUNS[-1] in result.get("failed", {}):
        raise ValueError(f"the default (seed 0 of {ex.ALL!r}) did not train: {result['failed'][STAGE_RUNS[-1]]}")
    if 0 not in result["rows"].get(ex.ALL, {}) or any(r not in result["references"] for r in ex.metrics.REFERENCES):
        raise ValueError(f"the default (seed 0 of {ex.ALL!r}) or a reference was not evaluated "
                         f"(cut: {result.get('missing')}; failed: {result.get('failed_evaluations')}): run the same command "
                         f"again on {work} to finish the evaluation; its weights are in {out.rstrip('/')}_unevaluated")
    return package(work, result, out, log)


def package(work: str, result: dict, out: str, log=print) -> dict | None:
    """Copy seed 0 of the paper's method from an experiments folder into the bundle ``out``, with its
    training log (the three stages in order) and, when ``result`` holds the evaluation, the figures
    (held-out split) and the model card."""
    model = PFVGModel.load(os.path.join(work, STAGE_RUNS[-1], "model"))
    model.meta["recipe"] = ex.recorded({"budget": result["budget"], "device": result["device"], "codec": result.get("codec"),
                                        "stages": list(STAGE_RUNS)})
    model.meta["history"] = training_history(work, result)
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    with open(os.path.join(tmp, "train_log.jsonl"), "w") as f:
        for run in STAGE_RUNS:
            for rec in ex._read_log(os.path.join(work, run)):
                f.write(json.dumps({"run": run, **rec}) + "\n")
    figures = None
    if "rows" in result:
        figures = default_figures(result)
        with open(os.path.join(tmp, "figures.json"), "w") as f:
            json.dump(figures, f, indent=1)
        write_model_card(tmp, figures)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log(f"default model written to {out}")
    return figures


def training_history(work: str, result: dict) -> list[dict]:
    """The model's training history: the warm-start bundle's (when the run continued from one), then this run
    — which runs, on which machine, for how long (minutes of training from the runs' logs), and the command that
    trains it again (``reproduce``: the recipe's arguments with the steps this run trained)."""
    import platform
    import time

    b = result["budget"]
    previous = []
    if b.get("warm_start"):
        with open(os.path.join(ex.resolve_path(b["warm_start"]), "pfvg.json")) as f:
            previous = list((json.load(f).get("meta") or {}).get("history") or [])
    steps = {run: len(ex._read_log(os.path.join(work, run))) for run in STAGE_RUNS}
    minutes = sum(r.get("seconds", 0.0) for run in STAGE_RUNS for r in ex._read_log(os.path.join(work, run))) / 60
    entry = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "device": result["device"],
             "machine": f"{platform.machine()}, {os.cpu_count()} cores" if result["device"] == "cpu" else result["device"],
             "warm_start": ex.provenance_path(b.get("warm_start")), "train_videos": b["train_videos"], "steps": steps,
             "minutes": round(minutes, 1)}
    entry["budget"] = budget_arguments(b, [steps[r] for r in STAGE_RUNS])
    return previous + [entry]


STEP_FIELDS = ("base", "stage1", "stage2")


def budget_arguments(budget: dict, steps: list[int] | None = None, preset: str = "cpu") -> dict:
    """The ``--budget`` fields that differ from ``preset`` (warm start and codec candidates aside), with the stage
    steps fixed to ``steps`` (what the run trained): with them the recipe trains the same number of steps again."""
    ref = default_budget(preset=preset).to_dict()
    out = {k: v for k, v in budget.items() if k not in ("warm_start",) + STEP_FIELDS and k in ref and ref[k] != v
           and not (isinstance(v, list) and list(ref[k] or []) == v)}
    for k, n in zip(STEP_FIELDS, steps or [budget[k] for k in STEP_FIELDS]):
        out[k] = n
    return out


def reproduce_commands(history: list[dict], budget: dict, device: str = "cpu", out: str = "pfvg_core/assets/default") -> list[str]:
    """The commands that train the bundle again, one per run of its history (each run continues from the previous
    one's bundle), from what the bundle records: the budget's fields that differ from the ``cpu`` preset and the
    steps each run trained."""
    cmds = []
    for k, h in enumerate(history, 1):
        args = h.get("budget") or budget_arguments({**budget, "train_videos": h.get("train_videos", budget["train_videos"])},
                                                   list((h.get("steps") or {}).values()) or None)
        target = out if k == len(history) else f"build/run{k}-model"
        cmd = (f"python -m research.embedded_recipe --preset cpu --device {h.get('device') or device} --work build/run{k} "
               f"--out {target} --budget '{json.dumps(args)}'")
        if k > 1:
            cmd += f" --warm-start build/run{k - 1}-model"
        cmds.append(cmd)
    return cmds


def default_figures(result: dict) -> dict:
    """The default model's scores on the held-out split: memory on, memory off (same model), the references,
    their means, and the paired on − off differences with 95 % intervals (bootstrap over the videos)."""
    on = result["rows"][ex.ALL][0] if 0 in result["rows"][ex.ALL] else result["rows"][ex.ALL]["0"]
    rows = {"memory on": on}
    off_rows = result["rows"].get(ex.INFERENCE_OFF)
    if off_rows is not None:
        rows["memory off"] = off_rows[0] if 0 in off_rows else off_rows["0"]
    rows.update(result["references"])
    means = {name: {m: _mean([s.get(m) for s in per]) for m in ex.METRICS} for name, per in rows.items()}
    paired = {}
    if "memory off" in rows:
        for m in ex.METRICS:
            d = np.array([[ex._num(a.get(m)) - ex._num(b.get(m)) for a, b in zip(rows["memory on"], rows["memory off"])]])
            paired[m] = ex.paired_interval(d)
    return ex.recorded({"videos": len(on), "seconds": result["budget"]["heldout_seconds"], "mean": means,
                        "on_minus_off": paired, "codec": result["codec"], "budget": result["budget"], "rows": rows})


def _mean(xs):
    v = [x for x in xs if x is not None]
    return float(np.mean(v)) if v else None


def against_references(fig: dict, metric: str = "mean_mse_to_truth") -> dict[str, dict]:
    """Memory on − each still reference on ``metric``, paired by held-out video with a 95 % interval, and the
    verdict: ``beats`` (interval below zero), ``loses`` (above zero) or ``ties`` (the interval holds zero)."""
    out = {}
    on = fig["rows"]["memory on"]
    for ref in (ex.metrics.REF_FIRST, ex.metrics.REF_BLUR):
        r = ex.paired_interval(np.array([[ex._num(a.get(metric)) - ex._num(b.get(metric)) for a, b in zip(on, fig["rows"][ref])]]))
        verdict = None if r["mean"] is None else ("beats" if r["high"] < 0 else ("loses" if r["low"] > 0 else "ties"))
        out[ref] = {**r, "verdict": verdict}
    return out


def targets(fig: dict) -> dict[str, bool | None]:
    """The default model's targets, each True / False (None: not measurable here). Beating a still reference
    needs the paired interval below zero: a tie is not a win."""
    m = fig["mean"]
    on = m["memory on"]
    refs = against_references(fig)
    out = {
        "beats first frame repeated (MSE to truth, interval < 0)": None if refs[ex.metrics.REF_FIRST]["verdict"] is None
        else refs[ex.metrics.REF_FIRST]["verdict"] == "beats",
        "beats blurred first frame (MSE to truth, interval < 0)": None if refs[ex.metrics.REF_BLUR]["verdict"] is None
        else refs[ex.metrics.REF_BLUR]["verdict"] == "beats",
        "camera tracking correlation ≥ 0.8": None if on["tracking_corr"] is None else on["tracking_corr"] >= 0.8,
    }
    for metric, label in (("revisit_error", "revisit error"), ("identity_colour_error", "sprite colour on return"),
                          ("identity_position_error", "sprite position on return")):
        r = fig["on_minus_off"].get(metric)
        out[f"memory on beats off: {label} (interval < 0)"] = None if not r or r["mean"] is None else r["high"] < 0
    return out


def honest_reading(fig: dict) -> str:
    """The figures in words: how the model compares with the still references (paired intervals), which targets
    are met, with the numbers."""
    m = fig["mean"]
    on, first, blur = m["memory on"], m[ex.metrics.REF_FIRST], m[ex.metrics.REF_BLUR]
    t = targets(fig)
    met = [k for k, v in t.items() if v]
    missed = [k for k, v in t.items() if v is False]
    parts = [f"Error to the truth {on['mean_mse_to_truth']:.4f} against {first['mean_mse_to_truth']:.4f} for the first frame "
             f"repeated and {blur['mean_mse_to_truth']:.4f} for the blurred first frame"]
    for ref, r in against_references(fig).items():
        if r["verdict"] is not None:
            name = ref.replace("(reference) ", "")
            verb = {"beats": "beats", "loses": "loses to", "ties": "ties with"}[r["verdict"]]
            parts.append(f"it {verb} the {name} (on − reference {r['mean']:+.4f} "
                         f"[{r['low']:+.4f}, {r['high']:+.4f}])")
    if on["tracking_corr"] is not None:
        parts.append(f"camera tracking correlation {on['tracking_corr']:.2f} (target 0.8)")
    for metric in ("revisit_error", "identity_colour_error", "identity_position_error"):
        r = fig["on_minus_off"].get(metric)
        if r and r["mean"] is not None:
            parts.append(f"{metric} on − off {r['mean']:+.4g} [{r['low']:+.4g}, {r['high']:+.4g}]")
    return ("Honest reading: " + "; ".join(parts) + ". Targets met: " + (", ".join(met) or "none") + ". Not met: "
            + (", ".join(missed) or "none") + ".")


# the truth-anchored metrics a new default must not lose on; tracking: higher is better
SHIP_METRICS = ("mean_mse_to_truth", "revisit_error", "identity_colour_error", "identity_position_error", "tracking_corr")
HIGHER_BETTER = {"tracking_corr"}


def against_shipped(new: dict, old: dict) -> dict:
    """A candidate default (``figures.json`` of its bundle) against the shipped one, paired by held-out video
    (memory on, the same videos: refused otherwise): candidate − shipped per truth-anchored metric with a 95 %
    interval. ``better``: a lower mean error to the truth and no metric worse with its interval excluding zero
    (``worse`` names those); ``gains``: the metrics better with the interval excluding zero."""
    a, b = new["rows"]["memory on"], old["rows"]["memory on"]
    if [x.get("seed") for x in a] != [x.get("seed") for x in b]:
        raise ValueError(f"the two models were scored on different held-out videos ({[x.get('seed') for x in a]} vs "
                         f"{[x.get('seed') for x in b]}): score them on the same ones (experiments.score_model)")
    diffs = {m: ex.paired_interval(np.array([[ex._num(x.get(m)) - ex._num(y.get(m)) for x, y in zip(a, b)]]))
             for m in SHIP_METRICS}

    def sign(m, r):  # +1: the candidate is better with the interval excluding zero, −1: worse, 0: a tie
        if r["mean"] is None:
            return 0
        up = r["low"] > 0
        down = r["high"] < 0
        if m in HIGHER_BETTER:
            return 1 if up else (-1 if down else 0)
        return 1 if down else (-1 if up else 0)

    worse = [m for m, r in diffs.items() if sign(m, r) < 0]
    gains = [m for m, r in diffs.items() if sign(m, r) > 0]
    means = {"candidate": {m: _mean([x.get(m) for x in a]) for m in SHIP_METRICS},
             "shipped": {m: _mean([y.get(m) for y in b]) for m in SHIP_METRICS}}
    better = diffs["mean_mse_to_truth"]["mean"] is not None and diffs["mean_mse_to_truth"]["mean"] < 0 and not worse
    return {"videos": len(a), "diffs": diffs, "means": means, "worse": worse, "gains": gains, "better": better}


def against_table(cmp: dict) -> str:
    """The comparison as the model card's section."""
    head = "| model (memory on) | " + " | ".join(SHIP_METRICS) + " |\n|---|" + "---|" * len(SHIP_METRICS) + "\n"
    rows = ""
    for name, key in (("this model", "candidate"), ("the default it replaced", "shipped")):
        rows += f"| {name} | " + " | ".join("—" if cmp["means"][key][m] is None else f"{cmp['means'][key][m]:.4g}"
                                            for m in SHIP_METRICS) + " |\n"
    cells = ["—" if r["mean"] is None else f"{r['mean']:+.3g} [{r['low']:+.3g}, {r['high']:+.3g}]" for r in cmp["diffs"].values()]
    rows += "| this − replaced, 95 % interval (paired by video) | " + " | ".join(cells) + " |\n"
    words = (f"Better with the interval excluding zero: {', '.join(cmp['gains']) or 'none'}; worse: "
             f"{', '.join(cmp['worse']) or 'none'} (tracking: higher is better, the others lower).")
    return head + rows + "\n" + words + "\n"


def ship(candidate: str, shipped: str = ASSETS, log=print) -> dict:
    """Replace the shipped default ``shipped`` by the bundle ``candidate`` when it is better on the held-out
    split (``against_shipped``); the comparison goes into the candidate's figures and model card first.
    Returns the comparison; the shipped bundle is left as it is when the candidate is not better."""
    with open(os.path.join(candidate, "figures.json")) as f:
        new = json.load(f)
    with open(os.path.join(shipped, "figures.json")) as f:
        old = json.load(f)
    cmp = against_shipped(new, old)
    if not cmp["better"]:
        log(f"not shipped: error to the truth {cmp['diffs']['mean_mse_to_truth']['mean']:+.4g}, worse on {cmp['worse']}")
        return cmp
    new["against_shipped"] = cmp
    tmp = shipped.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(candidate, tmp)
    with open(os.path.join(tmp, "figures.json"), "w") as f:
        json.dump(new, f, indent=1)
    write_model_card(tmp, new)
    old_dir = shipped.rstrip("/") + ".old"
    shutil.rmtree(old_dir, ignore_errors=True)
    os.replace(shipped, old_dir)
    os.replace(tmp, shipped)
    shutil.rmtree(old_dir, ignore_errors=True)
    log(f"shipped {candidate} as {shipped}: better on {cmp['gains']}")
    return cmp


def history_table(history: list[dict]) -> str:
    if not history:
        return "(not recorded)"
    rows = ["| # | date | machine | continued from | videos | steps (base, stage 1, stage 2) | minutes of training |",
            "|---|---|---|---|---|---|---|"]
    for k, h in enumerate(history, 1):
        steps = ", ".join(str(v) for v in (h.get("steps") or {}).values())
        start = ex.provenance_path(h.get("warm_start"))
        if start and k > 1:  # the bundle of run k − 1
            start = f"{start} (run {k - 1})"
        rows.append(f"| {k} | {h.get('date')} | {h.get('machine')} | {start or 'scratch'} | {h.get('train_videos')} "
                    f"| {steps} | {h.get('minutes')} |")
    return "\n".join(rows)


def write_model_card(folder: str, fig: dict) -> None:
    with open(os.path.join(folder, "pfvg.json")) as f:
        cfg = json.load(f)
    b = fig["budget"]
    log = [json.loads(line) for line in open(os.path.join(folder, "train_log.jsonl")) if line.strip()]
    minutes = sum(r.get("seconds", 0.0) for r in log) / 60
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder) if f.endswith(".safetensors"))
    sp = os.path.join(folder, "semanticpack.safetensors")
    gate = float(load_file(sp)["log_gate"]) if os.path.exists(sp) else None
    steps = {r["run"]: r["step"] for r in log}
    c = fig["codec"]
    history = cfg["meta"].get("history") or []
    commands = "\n".join(reproduce_commands(history, b, cfg["meta"].get("recipe", {}).get("device", "cpu")))
    runs = "run" if len(history) == 1 else f"{len(history)} runs"
    how = ("this command" if len(history) == 1 else
           f"these {len(history)} commands in order, each run continuing from the bundle of the one before")
    table = "| video | " + " | ".join(ex.METRICS) + " |\n|---|" + "---|" * len(ex.METRICS) + "\n"
    for name, row in fig["mean"].items():
        table += f"| {name} | " + " | ".join("—" if row[k] is None else f"{row[k]:.4g}" for k in ex.METRICS) + " |\n"
    diffs = " | ".join("—" if not fig["on_minus_off"].get(k) or fig["on_minus_off"][k]["mean"] is None else
                       "{mean:+.3g} [{low:+.3g}, {high:+.3g}]".format(**fig["on_minus_off"][k]) for k in ex.METRICS)
    card = f"""# PFVG embedded default model

A small model of the paper's architecture trained on the procedural world, shipped so that a new user
gets a real long video on a CPU with no download. The training log is `train_log.jsonl` beside this card
(the three stages of the last run, in order); the training history below lists the {runs} that made it.

- **Data**: {b['train_videos']} world videos of the training split, {b['seconds']:g} s each, 64×64 at 8 fps: cameras
  that pan away and return within the clip, sprites that leave the view or go behind pillars and return.
- **Codec**: ConvCodec (factor 4, {b['codec_channels']} latent channels, width {b['codec_width']}), {b['codec_steps']} steps of
  L1 + MSE weighted ×{1 + b['sprite_weight']:g} on sprite pixels. Held-out sprite colour error per channel
  {c['sprite_colour_error_per_channel']} (of 255), background MSE {c['background_mse']} (of 255²).
- **DiT**: diffusers' `HunyuanVideoFramepackTransformer3DModel`, config `{b['dit']}`, FramePack `td_f16k4f2k2f1k1`,
  window {b['window']} latent frames; SemanticPack with {b['memory_tokens']} memory tokens.
- **Recipe** (PFVG §4.1): shared pretraining without memory ({steps.get('base')} steps), stage 1 teacher forcing on
  everything with memory on ({steps.get('stage1_memory_on_seed0')} steps; ψ trained through {b['psi_bptt']} updates),
  stage 2 Direct Forcing on `norm_out.linear` + `proj_out` + SemanticPack ({steps.get(STAGE_RUNS[-1])} steps);
  a step = {b['video_batch']} videos stacked in one forward, an optimizer step every {b['accumulate']} clips in
  pretraining and every {b['psi_bptt']} clips in stages 1–2; {minutes:.1f} minutes of training
  on {cfg['meta'].get('recipe', {}).get('device', '?')}.
- **Gate**: {'closed' if gate is None else f'g = {np.exp(gate):.3f}'} (weight of ψ tokens in every attention).
- **Weights**: {size / 1e6:.1f} MB of safetensors.

## Training history

{history_table(history)}

Trained again from the repository root by {how}; the steps are those each run trained (the runs sized their
stages by wall clock); on a GPU, `--device cuda`:

```bash
{commands}
```

## Figures (held-out split: {fig['videos']} videos × {fig['seconds']:g} s, generated from the first frame and prompt)

{table}
Memory on − off (same model, paired by video, 95 % bootstrap interval):

| | {' | '.join(ex.METRICS)} |
|---|{'---|' * len(ex.METRICS)}
| on − off | {diffs} |

{honest_reading(fig)}
"""
    if fig.get("against_shipped"):
        card += f"""
## Against the default it replaced (why this model is shipped)

Scored with the same protocol on the same {fig['against_shipped']['videos']} held-out videos (memory on):

{against_table(fig['against_shipped'])}"""
    with open(os.path.join(folder, "MODEL_CARD.md"), "w") as f:
        f.write(card)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.embedded_recipe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=ASSETS)
    ap.add_argument("--work", default="build/default")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--jobs", type=int, default=1, help="processes at a time (trainings, evaluations)")
    ap.add_argument("--experiments", action="store_true", help="run every variant and seed of the experiments too")
    ap.add_argument("--quick", action="store_true", help="a tiny budget (smoke run)")
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="budget preset (cpu: the shipped model's)")
    ap.add_argument("--budget", default=None, help="JSON object of Budget fields to override")
    ap.add_argument("--seconds", default=None, help='JSON {"base": s, "stage1": s, "stage2": s}: size the stages by wall clock')
    ap.add_argument("--ship", default=None, metavar="BUNDLE",
                    help="train nothing: replace --out by this evaluated bundle when it beats it on the held-out split")
    ap.add_argument("--warm-start", default=None, metavar="BUNDLE",
                    help="continue from this model bundle (e.g. pfvg_core/assets/default): its codec, DiT, encoders and "
                         "SemanticPack; recorded in the card's training history")
    a = ap.parse_args(argv)
    if a.ship:
        cmp = ship(a.ship, a.out, log=lambda m: print(m, file=sys.stderr, flush=True))
        print(json.dumps(cmp, indent=1))
        return 0 if cmp["better"] else 3
    kw = json.loads(a.budget) if a.budget else {}
    if a.warm_start:  # used as an absolute path; recorded relative to the repository (experiments.provenance_path)
        kw["warm_start"] = os.path.abspath(a.warm_start)
    if a.experiments:
        b = ex.Budget.tiny(**kw) if a.quick else ex.Budget(**{**PRESETS["gpu"], **kw})
    else:
        b = default_budget(a.quick, a.preset, **kw)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    fig = build(a.out, a.work, b, a.device, a.jobs, json.loads(a.seconds) if a.seconds else None, log)
    print(json.dumps({"mean": fig["mean"], "on_minus_off": fig["on_minus_off"], "targets": targets(fig)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
