import json
import os
import subprocess
import sys

import torch

from pfvg_core.model import PFVGModel
from pfvg_core.tools import embedded_recipe as rec
from pfvg_core.tools import experiments as ex


def test_default_model_recipe_runs_end_to_end_on_cpu(tmp_path):
    """A tiny budget of `make train-default`: codec, latents, pretraining, two stages (sized by wall clock),
    held-out evaluation, bundle, card; the model's DiT takes the codec's latent channels."""
    out = tmp_path / "default"
    subprocess.run([sys.executable, "-m", "pfvg_core.tools.embedded_recipe", "--out", str(out), "--work", str(tmp_path / "work"),
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
