import json
import os

import numpy as np
import pytest
import torch

from pfvg_core import metrics, world
from pfvg_core.codec import reconstruction_loss, saturated_mask
from research import experiments as ex


def test_tiny_experiments_run_in_parallel_processes_on_cpu(tmp_path):
    """Every variant × seed trained (2 processes at a time) from one shared pretraining; stage 2 from ONE
    stage-1 checkpoint per seed; scored on the held-out split with the references and paired intervals."""
    b = ex.Budget.tiny(variants=(ex.ALL, "MemoryPack + teacher forcing", "FramePack only (no memory) + Direct Forcing"),
                       heldout_seconds=3.0)
    res = ex.run(str(tmp_path), b, device="cpu", jobs=2, log=lambda m: None)
    names = list(b.variants) + [ex.INFERENCE_OFF]
    assert sorted(res["rows"]) == sorted(names)
    for name in names:
        assert sorted(res["rows"][name]) == list(b.seeds)
        for per in res["rows"][name].values():
            assert [s["seed"] for s in per] == world.heldout_seeds(b.heldout)
            assert all(s["mean_mse_to_truth"] > 0 for s in per)
    assert list(res["references"]) == list(metrics.REFERENCES)
    # same budget: every stage-2 run made the same optimizer steps from its seed's stage-1 checkpoint
    for seed in b.seeds:
        for v in b.variants:
            log = ex._read_log(os.path.join(tmp_path, f"{ex.slug(v)}_seed{seed}"))
            assert len(log) == b.stage2 and log[0]["stage"].startswith("stage2-")
    comps = res["comparisons"]
    assert set(comps) == {c for c, (a, bb) in ex.COMPARISONS.items() if a in names and bb in names}
    r = comps["(a') memory on − off at inference (same model)"]["mean_mse_to_truth"]
    assert r["pairs"] == len(b.seeds) * b.heldout and r["low"] <= r["mean"] <= r["high"]
    md = open(tmp_path / "experiments.md").read()
    assert all(ref in md for ref in metrics.REFERENCES) and "(b) Direct − teacher forcing" in md
    assert json.load(open(tmp_path / "experiments.json"))["budget"]["stage2"] == b.stage2
    # a second run finds every job done and gives the same numbers
    again = ex.run(str(tmp_path), b, device="cpu", jobs=1, log=lambda m: None)
    assert again["rows"] == json.loads(json.dumps(res["rows"], default=str)) or again["rows"] == res["rows"]


def test_plan_shares_one_stage1_checkpoint_per_seed():
    b = ex.Budget(seeds=(0, 1, 2))
    base, stage1, stage2 = ex.training_plan(b)
    assert [j["name"] for j in base] == ["base"] and base[0]["memory"] == "off"
    assert len(stage1) == 6 and all(j["init"] == "base" for j in stage1)
    for seed in b.seeds:
        on = [j for j in stage2 if j["seed"] == seed and j["memory"] == "on"]
        assert len(on) == 3 and {j["init"] for j in on} == {f"stage1_memory_on_seed{seed}"}
        assert {j["stage"]["forcing"] for j in on} == {"direct", "teacher", "student"}
    assert {j["stage"]["steps"] for j in stage2} == {b.stage2}
    assert len(ex.evaluation_plan(b)) == 3 * (len(ex.VARIANTS) + 1)


def test_paired_interval_known_answers():
    const = ex.paired_interval(np.full((3, 16), 0.5))
    assert const["mean"] == 0.5 and const["low"] == 0.5 and const["high"] == 0.5 and const["pairs"] == 48
    rng = np.random.default_rng(0)
    noise = ex.paired_interval(rng.normal(0, 1, (3, 16)))
    assert noise["low"] < 0 < noise["high"]
    shifted = ex.paired_interval(rng.normal(-1, 0.3, (3, 16)))
    assert shifted["high"] < 0  # a clear improvement: the interval excludes zero
    d = np.full((2, 4), np.nan)
    assert ex.paired_interval(d)["mean"] is None
    d[0, 1] = 2.0
    assert ex.paired_interval(d)["mean"] == 2.0 and ex.paired_interval(d)["pairs"] == 1
    with pytest.raises(ValueError, match="seeds, videos"):
        ex.paired_interval(np.zeros(5))


def test_calibrate_fits_the_stages_in_their_seconds():
    b = ex.calibrate(ex.Budget(), base_seconds_per_step=2.0, seconds={"stage1": 100, "stage2": 120})
    assert b.stage1 == int(100 / (2.0 * ex.SLOWDOWN["stage1"])) and b.stage2 == int(120 / (2.0 * ex.SLOWDOWN["stage2"]))
    assert ex.calibrate(ex.Budget(), 1e3, {"stage1": 1, "stage2": 1}).stage1 == 1  # at least one step
    alone = ex.calibrate(ex.Budget(), 2.0, {"stage1": 100, "stage2": 120, "slowdown": {"stage1": 1.25}})
    assert alone.stage1 == 40 and alone.stage2 == b.stage2


def test_pick_codec_prefers_sprite_colour_within_the_background_budget():
    cands = [{"channels": 4, "sprite_weight": 0.0, "sprite_colour_error_per_channel": [40, 50, 60], "background_mse": 90},
             {"channels": 4, "sprite_weight": 20.0, "sprite_colour_error_per_channel": [20, 25, 22], "background_mse": 105},
             {"channels": 8, "sprite_weight": 50.0, "sprite_colour_error_per_channel": [5, 6, 7], "background_mse": 200}]
    assert ex.pick_codec(cands)["sprite_weight"] == 20.0  # the third loses the background


def test_sprite_weighted_loss_counts_sprite_pixels_more():
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, 2:4, 2:4] = 1.0  # a saturated red patch (channel 0 at 255)
    x[:, 1:, 2:4, 2:4] = -1.0
    m = saturated_mask(x, dilate=0)
    assert m.sum() == 4 and m[0, 0, 2, 2] == 1 and m[0, 0, 0, 0] == 0
    rec = x.clone()
    rec[:, :, 2:4, 2:4] = 0.0  # error on the sprite only
    assert reconstruction_loss(rec, x, 20.0) > 3 * reconstruction_loss(rec, x, 0.0)  # 21·64 / (64 + 20·16) = 3.5


class _Identity(torch.nn.Module):
    def encode(self, x):
        return x

    def decode(self, z):
        return z


def test_codec_fidelity_of_a_lossless_codec_is_zero():
    v = world.make_video(world.heldout_seeds(1, start=7)[0], seconds=3.0)
    f = ex.codec_fidelity(_Identity(), [v])
    assert f["background_mse"] == 0 and abs(f["sharpness_ratio"] - 1) < 1e-6
    if f["sprite_appearances"]:
        assert max(f["sprite_colour_error_per_channel"]) < 1e-6


def test_seconds_size_the_shared_pretraining_by_time_not_by_its_step_budget(tmp_path):
    """With ``seconds``, the shared pretraining trains until its seconds are up (not the budget's ``base``
    steps, a trap a CPU preset of 12 base steps fell into), and the stages get the steps that fit theirs."""
    b = ex.Budget.tiny(variants=(ex.ALL,), seeds=(0,), heldout=1, heldout_seconds=2.0, base=1)
    res = ex.run(str(tmp_path), b, device="cpu", jobs=1, log=lambda m: None,
                 seconds={"base": 4.0, "stage1": 1.0, "stage2": 1.0, "slowdown": {"stage1": 1.0, "stage2": 1.0}})
    base = res["trained"]["base"]
    assert base["steps"] > 1 and base["seconds"] >= 4.0
    assert len(ex._read_log(os.path.join(tmp_path, "base"))) == base["steps"] == res["budget"]["base"]
    assert json.load(open(tmp_path / "budget.json"))["base"] == base["steps"]
