import json
import os
import subprocess
import sys

import pytest
import torch

from pfvg_core.model import PFVGModel
from research import embedded_recipe as rec
from research import experiments as ex


def test_default_model_recipe_runs_end_to_end_on_cpu(tmp_path):
    """A tiny budget of `make train-default`: codec, latents, pretraining, two stages (sized by wall clock),
    held-out evaluation, bundle, card; the model's DiT takes the codec's latent channels."""
    out = tmp_path / "default"
    subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--out", str(out), "--work", str(tmp_path / "work"),
                    "--quick", "--device", "cpu", "--budget", '{"codec_channels": 6}',
                    "--seconds", '{"base": 2, "stage1": 4, "stage2": 4}'], check=True, capture_output=True)
    model = PFVGModel.load(str(out))
    assert model.codec.latent_channels == 6 == model.latent_channels
    assert model.semanticpack.gate_open and model.meta["window"] == 4
    runs = [json.loads(line)["run"] for line in open(out / "train_log.jsonl")]
    assert runs[0] == "base" and runs[-1] == rec.STAGE_RUNS[-1] and sorted(set(runs)) == sorted(rec.STAGE_RUNS)
    stage1 = [json.loads(line) for line in open(tmp_path / "work" / "stage1_memory_on_seed0" / "train_log.jsonl")]
    assert json.load(open(tmp_path / "work" / "stage1_memory_on_seed0" / "done.json"))["steps"] == len(stage1) >= 1
    early = PFVGModel.load(str(tmp_path / "default_unevaluated"))  # written before the evaluation, same weights
    assert all(torch.equal(a, b) for a, b in zip(early.dit.state_dict().values(), model.dit.state_dict().values()))
    fig = json.load(open(out / "figures.json"))
    assert set(fig["mean"]) >= {"memory on", "memory off", *ex.metrics.REFERENCES}
    card = (out / "MODEL_CARD.md").read_text()
    assert "Direct Forcing" in card and "Honest reading" in card and "(reference) blurred first frame repeated" in card
    size = sum(os.path.getsize(out / f) for f in os.listdir(out) if f.endswith(".safetensors"))
    assert size <= 25e6


def _fig(on, first, blur, tracking, revisit_high):
    """Figures with per-video rows (memory on and the two still references) and their means."""
    ref = {m: None for m in ex.METRICS}
    rows = {name: [{**ref, "seed": k, "mean_mse_to_truth": e} for k, e in enumerate(errors)]
            for name, errors in (("memory on", on), (ex.metrics.REF_FIRST, first), (ex.metrics.REF_BLUR, blur))}
    mean = {name: {**ref, "mean_mse_to_truth": sum(e) / len(e)} for name, e in
            (("memory on", on), (ex.metrics.REF_FIRST, first), (ex.metrics.REF_BLUR, blur))}
    mean["memory on"]["tracking_corr"] = tracking
    return {"rows": rows, "mean": mean,
            "on_minus_off": {"revisit_error": {"mean": revisit_high - 0.001, "low": revisit_high - 0.002, "high": revisit_high}}}


FIRST = [0.030, 0.032, 0.028, 0.031, 0.029, 0.030]
BLUR = [0.025, 0.026, 0.024, 0.025, 0.026, 0.024]


def test_targets_and_honest_reading_follow_the_figures():
    good = _fig([e - 0.01 for e in BLUR], FIRST, BLUR, 0.9, -0.0005)
    t = rec.targets(good)
    assert t["beats first frame repeated (MSE to truth, interval < 0)"] and t["beats blurred first frame (MSE to truth, interval < 0)"]
    assert t["camera tracking correlation ≥ 0.8"] and t["memory on beats off: revisit error (interval < 0)"]
    assert t["memory on beats off: sprite colour on return (interval < 0)"] is None
    assert "Not met: none" in rec.honest_reading(good)
    bad = _fig([e - 0.002 for e in FIRST], FIRST, BLUR, 0.5, 0.001)
    t = rec.targets(bad)
    assert t["beats first frame repeated (MSE to truth, interval < 0)"] and not t["beats blurred first frame (MSE to truth, interval < 0)"]
    assert not t["camera tracking correlation ≥ 0.8"] and not t["memory on beats off: revisit error (interval < 0)"]
    text = rec.honest_reading(bad)
    assert "Not met: beats blurred first frame" in text and "0.50" in text and "loses to the blurred first frame" in text


def test_a_tie_with_a_still_reference_is_not_a_win():
    """A lower mean whose paired interval holds zero ties the reference: the target is not met."""
    on = [FIRST[0] - 0.004, FIRST[1] + 0.003, FIRST[2] - 0.003, FIRST[3] + 0.002, FIRST[4] - 0.002, FIRST[5] + 0.0035]
    fig = _fig(on, FIRST, BLUR, 0.0, 0.001)
    assert fig["mean"]["memory on"]["mean_mse_to_truth"] < fig["mean"][ex.metrics.REF_FIRST]["mean_mse_to_truth"]
    assert rec.against_references(fig)[ex.metrics.REF_FIRST]["verdict"] == "ties"
    assert rec.targets(fig)["beats first frame repeated (MSE to truth, interval < 0)"] is False
    text = rec.honest_reading(fig)
    assert "ties with the first frame repeated" in text and "Targets met: none" in text


def test_the_shipped_card_reads_its_figures_with_the_paired_intervals():
    """The shipped bundle's card says what its figures say: no target it does not meet, and how to train it again."""
    fig = json.load(open(os.path.join(rec.ASSETS, "figures.json")))
    card = open(os.path.join(rec.ASSETS, "MODEL_CARD.md")).read()
    met = [k for k, v in rec.targets(fig).items() if v]
    assert card.count("Honest reading") == 1 and rec.honest_reading(fig) in card
    assert "Targets met: " + (", ".join(met) or "none") + "." in card
    history = PFVGModel.load(rec.ASSETS).meta["history"]
    for cmd in rec.reproduce_commands(history, fig["budget"]):
        assert cmd in card and cmd.startswith("python -m research.embedded_recipe")
    assert f"the {len(history)} runs" in card or len(history) == 1


def test_provenance_paths_are_repository_relative_or_a_base_name(tmp_path):
    assert ex.provenance_path(rec.ASSETS) == "pfvg_core/assets/default"
    assert ex.provenance_path(str(tmp_path / "bundle")) == "bundle"
    assert ex.provenance_path(None) is None
    assert ex.resolve_path("pfvg_core/assets/default") in ("pfvg_core/assets/default", os.path.join(ex.REPO_ROOT, "pfvg_core/assets/default"))
    rec_ = ex.recorded({"budget": {"warm_start": str(tmp_path / "b")}, "codec": {"choice": [{"warm_start": rec.ASSETS}]}})
    assert rec_ == {"budget": {"warm_start": "b"}, "codec": {"choice": [{"warm_start": "pfvg_core/assets/default"}]}}


def test_presets_name_the_default_budgets():
    import pytest

    with pytest.raises(ValueError, match="preset"):
        rec.default_budget(preset="tpu")
    b = rec.default_budget()
    assert b.seeds == (0,) and b.variants == (ex.ALL,) and b.base == rec.PRESETS["cpu"]["base"] and b.dit == "embedded"
    assert rec.default_budget(preset="gpu").video_batch == ex.Budget().video_batch


def test_warm_start_continues_from_a_bundle_and_records_the_history(tmp_path):
    """The recipe continues from the shipped default (its codec kept, its weights the start) and
    the card's training history lists both runs."""
    args = ["--quick", "--device", "cpu", "--budget", '{"codec_channels": 6}', "--seconds", '{"base": 2, "stage1": 3, "stage2": 3}']
    first = tmp_path / "first"
    subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--out", str(first), "--work", str(tmp_path / "w1"),
                    *args], check=True, capture_output=True)
    second = tmp_path / "second"
    subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--out", str(second), "--work", str(tmp_path / "w2"),
                    "--warm-start", str(first), *args], check=True, capture_output=True)
    a, b = PFVGModel.load(str(first)), PFVGModel.load(str(second))
    assert all(torch.equal(x, y) for x, y in zip(a.codec.state_dict().values(), b.codec.state_dict().values()))  # kept
    assert not all(torch.equal(x, y) for x, y in zip(a.dit.state_dict().values(), b.dit.state_dict().values()))  # trained on
    history = b.meta["history"]
    assert len(history) == 2 and history[0]["warm_start"] is None and history[1]["warm_start"] == "first"  # no machine path
    assert history[1]["minutes"] >= 0 and set(history[1]["steps"]) == set(rec.STAGE_RUNS)
    card = (second / "MODEL_CARD.md").read_text()
    assert "## Training history" in card and "first (run 1)" in card and "scratch" in card
    assert "--warm-start build/run1-model" in card and str(tmp_path) not in card
    assert str(tmp_path) not in (second / "pfvg.json").read_text() + (second / "figures.json").read_text()
    # the base run started from the bundle's weights, not from a random DiT
    log = [json.loads(x) for x in open(tmp_path / "w2" / "base" / "train_log.jsonl")]
    scratch = [json.loads(x) for x in open(tmp_path / "w1" / "base" / "train_log.jsonl")]
    assert log[0]["loss"] < scratch[0]["loss"]


def _figs(errors, tracking, seeds=(1, 2, 3, 4)):
    on = [{"seed": s, **{m: None for m in ex.METRICS}, "mean_mse_to_truth": e, "revisit_error": e, "identity_colour_error": 100.0,
           "identity_position_error": 50.0, "tracking_corr": t} for s, e, t in zip(seeds, errors, tracking)]
    return {"rows": {"memory on": on}}


def test_a_candidate_is_shipped_only_when_it_beats_the_default_on_the_same_videos():
    old = _figs([0.05, 0.06, 0.05, 0.07], [0.0, 0.1, 0.0, 0.1])
    good = rec.against_shipped(_figs([0.04, 0.05, 0.04, 0.06], [0.0, 0.1, 0.0, 0.1]), old)
    assert good["better"] and set(good["gains"]) == {"mean_mse_to_truth", "revisit_error"} and good["worse"] == []
    assert good["diffs"]["mean_mse_to_truth"]["mean"] == pytest.approx(-0.01)
    worse_tracking = rec.against_shipped(_figs([0.04, 0.05, 0.04, 0.06], [-0.5, -0.4, -0.5, -0.4]), old)
    assert not worse_tracking["better"] and worse_tracking["worse"] == ["tracking_corr"]
    assert not rec.against_shipped(_figs([0.06, 0.07, 0.05, 0.08], [0.0, 0.1, 0.0, 0.1]), old)["better"]
    with pytest.raises(ValueError, match="different held-out videos"):
        rec.against_shipped(_figs([0.04] * 4, [0.0] * 4, seeds=(5, 6, 7, 8)), old)
    text = rec.against_table(good)
    assert "this − replaced" in text and "mean_mse_to_truth" in text and "-0.01 [" in text


def _scaled_copy(bundle, dest, factor):
    """A copy of ``bundle`` whose memory-on error to the truth is ``factor`` × the original on every video."""
    import shutil

    shutil.copytree(bundle, dest)
    fig = json.load(open(dest / "figures.json"))
    for r in fig["rows"]["memory on"]:
        r["mean_mse_to_truth"] *= factor
    json.dump(fig, open(dest / "figures.json", "w"))
    return dest


def test_ship_replaces_the_default_and_writes_why_in_its_card(tmp_path):
    """`embedded_recipe --ship BUNDLE`: the better candidate replaces --out, its card says against what."""
    args = ["--quick", "--device", "cpu", "--budget", '{"codec_channels": 6}', "--seconds", '{"base": 2, "stage1": 2, "stage2": 2}']
    shipped = tmp_path / "shipped"
    subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--out", str(shipped), "--work", str(tmp_path / "w"),
                    *args], check=True, capture_output=True)
    cand = _scaled_copy(shipped, tmp_path / "cand", 0.5)
    before = (shipped / "figures.json").read_text()
    worse = _scaled_copy(shipped, tmp_path / "worse", 2.0)
    r = subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--ship", str(worse), "--out", str(shipped)],
                       capture_output=True, text=True)
    assert r.returncode == 3 and (shipped / "figures.json").read_text() == before  # not better: left as it was
    r = subprocess.run([sys.executable, "-m", "research.embedded_recipe", "--ship", str(cand), "--out", str(shipped)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    card = (shipped / "MODEL_CARD.md").read_text()
    assert "Against the default it replaced" in card and "this − replaced" in card
    assert json.load(open(shipped / "figures.json"))["against_shipped"]["better"]
    assert PFVGModel.load(str(shipped)).latent_channels == 6 and not os.path.exists(str(shipped) + ".tmp")
