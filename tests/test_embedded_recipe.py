import json
import os
import subprocess
import sys

from pfvg_core.model import PFVGModel


def test_default_model_recipe_runs_end_to_end_on_cpu(tmp_path):
    """A tiny budget of the `make train-default` command: codec, latents, two stages, bundle, card."""
    out = tmp_path / "default"
    subprocess.run([sys.executable, "-m", "pfvg_core.tools.embedded_recipe", "--out", str(out), "--work", str(tmp_path / "work"),
                    "--videos", "2", "--videos-seconds", "2.5", "--stage1", "1", "--stage2", "1", "--codec-steps", "3",
                    "--eval-seconds", "2"], check=True, capture_output=True)
    model = PFVGModel.load(str(out))
    assert model.codec is not None and model.semanticpack.gate_open and model.meta["window"] == 4
    stages = [json.loads(line)["stage"] for line in open(out / "train_log.jsonl")]
    assert stages == ["stage1-teacher", "stage2-direct"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "Direct" in card and "MSE to the true video" in card
    size = sum(os.path.getsize(out / f) for f in os.listdir(out) if f.endswith(".safetensors"))
    assert size <= 25e6


def test_honest_reading_follows_the_figures():
    from pfvg_core.tools.embedded_recipe import honest_reading

    fig = {"mean": {"mse_generated": 0.02, "mse_first_frame_repeated": 0.03, "mse_codec_reconstruction": 0.002}}
    log = [{"seconds": 30.0}] * 4
    good = honest_reading(fig, log, 0.0)
    assert "below the 'first frame repeated' baseline" in good and "2 minutes" in good and "g = 1.000" in good
    fig["mean"]["mse_generated"] = 0.04
    bad = honest_reading(fig, log, -4.0)
    assert "above the 'first frame repeated' baseline" in bad and "much less than" in bad
    assert "gate" not in honest_reading(fig, log, None)
