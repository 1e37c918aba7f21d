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


def _fig(mse, tracking, revisit_high):
    ref = {m: None for m in ex.METRICS}
    return {"mean": {"memory on": {**ref, "mean_mse_to_truth": mse, "tracking_corr": tracking},
                     ex.metrics.REF_FIRST: {**ref, "mean_mse_to_truth": 0.03},
                     ex.metrics.REF_BLUR: {**ref, "mean_mse_to_truth": 0.025}},
            "on_minus_off": {"revisit_error": {"mean": revisit_high - 0.001, "low": revisit_high - 0.002, "high": revisit_high}}}


def test_targets_and_honest_reading_follow_the_figures():
    good = _fig(0.02, 0.9, -0.0005)
    t = rec.targets(good)
    assert t["beats first frame repeated (MSE to truth)"] and t["beats blurred first frame (MSE to truth)"]
    assert t["camera tracking correlation ≥ 0.8"] and t["memory on beats off: revisit error (interval < 0)"]
    assert t["memory on beats off: sprite colour on return (interval < 0)"] is None
    assert "Not met: none" in rec.honest_reading(good)
    bad = _fig(0.028, 0.5, 0.001)
    t = rec.targets(bad)
    assert t["beats first frame repeated (MSE to truth)"] and not t["beats blurred first frame (MSE to truth)"]
    assert not t["camera tracking correlation ≥ 0.8"] and not t["memory on beats off: revisit error (interval < 0)"]
    text = rec.honest_reading(bad)
    assert "Not met: beats blurred first frame" in text and "0.0280" in text and "0.50" in text


def test_presets_name_the_default_budgets():
    import pytest

    with pytest.raises(ValueError, match="preset"):
        rec.default_budget(preset="tpu")
    b = rec.default_budget()
    assert b.seeds == (0,) and b.variants == (ex.ALL,) and b.base == rec.PRESETS["cpu"]["base"] and b.dit == "embedded"
    assert rec.default_budget(preset="gpu").video_batch == ex.Budget().video_batch


def test_warm_start_continues_from_a_bundle_and_records_the_history(tmp_path):
    """Issue 22 item 1: the recipe continues from the shipped default (its codec kept, its weights the start) and
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
    assert len(history) == 2 and history[0]["warm_start"] is None and history[1]["warm_start"] == str(first)
    assert history[1]["minutes"] >= 0 and set(history[1]["steps"]) == set(rec.STAGE_RUNS)
    card = (second / "MODEL_CARD.md").read_text()
    assert "## Training history" in card and str(first) in card and "scratch" in card
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
