"""The diagnosis ladder (research/ladder.py): its estimator on oracles, and r1/r2 end to end at tiny size."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root: research/

from pfvg_core import world  # noqa: E402
from pfvg_core.codec import PatchCodec  # noqa: E402
from pfvg_core.loop import SamplerOptions  # noqa: E402
from pfvg_core.model import PFVGModel  # noqa: E402
from research import ladder  # noqa: E402

W = 4
POSITIONS = (2, 4)


@pytest.fixture(scope="module")
def lossless():
    """A tiny model whose codec is the identity on pixels (a 1×1 patch codec): generated frames are exactly
    what a sampler returns, so r1 measures the estimator alone."""
    m = PFVGModel.build("tiny", seed=0)
    m.codec = PatchCodec(m.latent_channels, factor=1)
    return m


@pytest.fixture(scope="module")
def videos():
    return ladder.heldout_videos(8, seconds=(1 + (POSITIONS[-1] + 1) * W) / 8)


def oracle(latents):
    """The true next segment (a model that is perfect given the true history)."""
    return lambda model, state, cond, opts: latents[:, :, state.next_index : state.next_index + W].clone()


def copy_last(model, state, cond, opts):
    """The last history frame repeated (a model that never moves)."""
    return state.history.frames[:, :, -1:].repeat(1, 1, W, 1, 1)


def test_heldout_split(videos):
    assert all(world.split_of(v.params.seed) == "heldout" for v in videos)


def test_r1_oracle_has_gain_one_and_copy_gain_zero(lossless, videos):
    """The estimator: the true segment gives correlation ≈ 1 and gain ≈ 1, the copied last frame gain 0,
    and the oracle's row is the truth-through-codec reference's (the same frames)."""
    lat = ladder.encode(lossless, videos)
    res = ladder.run_r1(lossless, videos, lat, POSITIONS, memories=("off",), window=W, reps=200, sampler=oracle(lat), log=lambda m: None)
    assert res["true_abs_shift_px"] > 1.0  # the test would mean nothing on still cameras
    gen = res["rows"][ladder.GEN.format("off")]
    assert gen["corr"]["value"] > 0.95 and abs(gen["gain"]["value"] - 1) < 0.1
    assert gen["mse_to_truth"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert gen["corr"] == res["rows"][ladder.REF_CODEC]["corr"]
    raw = res["rows"][ladder.REF_RAW]
    assert raw["corr"]["value"] > 0.95 and raw["corr"]["low"] <= raw["corr"]["value"] <= raw["corr"]["high"] + 1e-12
    res = ladder.run_r1(lossless, videos, lat, POSITIONS, memories=("off",), window=W, reps=200, sampler=copy_last, log=lambda m: None)
    gen = res["rows"][ladder.GEN.format("off")]
    assert gen["gain"]["value"] == 0.0 and gen["corr"]["value"] == 0.0 and gen["mean_abs_shift"]["value"] == 0.0
    assert gen["mse_to_copy"]["value"] == pytest.approx(0.0, abs=1e-9)
    assert gen == res["rows"][ladder.REF_COPY]


def test_r1_a_lying_estimator_would_fail(lossless, videos):
    """A sampler that moves the wrong way (the true segment mirrored left↔right about the last frame's
    motion: here the segment of the time-reversed camera) must not score like the truth."""
    lat = ladder.encode(lossless, videos)

    def backwards(model, state, cond, opts):  # the frames before the segment, newest first: the camera runs back
        i = state.next_index
        return lat[:, :, i - W - 1 : i - 1].flip(2).clone()

    res = ladder.run_r1(lossless, videos, lat, POSITIONS, memories=("off",), window=W, reps=100, sampler=backwards, log=lambda m: None)
    assert res["rows"][ladder.GEN.format("off")]["gain"]["value"] < 0


def test_prompt_variants_follow_the_world_wording():
    p = next(world.WorldParams.sample(s) for s in world.heldout_seeds(20) if world.WorldParams.sample(s).pan != 0)
    v = ladder.prompt_variants(p, 0.5)
    true, flip, static = v[ladder.R2_TRUE][0], v[ladder.R2_FLIP][0], v[ladder.R2_STATIC][0]
    assert true == p.prompt()
    d, o = ("right", "left") if p.pan > 0 else ("left", "right")
    assert f"pans {d}" in true and f"pans {o}" in flip and static.startswith("static camera; ")
    assert flip.partition("; ")[2] == true.partition("; ")[2]  # only the camera clause changes
    assert v[ladder.R2_FLIP][1] == -v[ladder.R2_TRUE][1] and np.sign(v[ladder.R2_TRUE][1]) == np.sign(p.pan)
    assert v[ladder.R2_STATIC][1] == 0.0 and v[ladder.R2_AMP][0] != true and v[ladder.R2_PERIOD][0] != true


def test_ladder_command_on_a_tiny_random_model_is_deterministic(tmp_path):
    """r1 and r2 through the engine's sampler (random tiny model): the output structure, finite figures,
    the same JSON twice."""
    outs = []
    for k in range(2):
        out = tmp_path / f"l{k}.json"
        assert ladder.main(["--model", "random:tiny", "--rungs", "r1,r2", "--videos", "4", "--positions", "1,2", "--steps", "1",
                            "--window", str(W), "--reps", "50", "--out", str(out)]) == 0
        outs.append(json.loads(out.read_text()))
    a, b = outs
    for r in (a, b):
        for k in ("seconds", "cpu_seconds"):
            r.pop(k)
            for rung in ("r1", "r2"):
                r[rung].pop(k)
    assert a == b
    assert a["heldout_seeds"] == world.heldout_seeds(4)
    rows = a["r1"]["rows"]
    assert set(rows) == {ladder.GEN.format("on"), ladder.GEN.format("off"), ladder.REF_RAW, ladder.REF_CODEC, ladder.REF_COPY,
                         ladder.REF_BLUR, ladder.REF_FIRST}
    for row in rows.values():
        for key in ("corr", "gain", "mse_to_truth", "mse_to_copy", "mean_abs_shift", "error_px"):
            assert set(row[key]) == {"value", "low", "high"} and all(np.isfinite(list(row[key].values())))
    assert "memory on − off" in a["r1"]["differences"]
    assert len(a["r1"]["true_shift"]) == 4 and len(a["r1"]["true_shift"][0]) == 2 * 2
    for m in ("on", "off"):
        mr = a["r2"]["memory"][m]
        assert list(mr["rows"]) == list(ladder.R2_VARIANTS)
        assert mr["rows"][ladder.R2_TRUE]["relative_change"]["value"] == 0.0
        assert mr["rows"][ladder.R2_SEED]["relative_change"]["value"] > 0  # another seed: other noise, another segment
        assert "sign_agreement" in mr["rows"][ladder.R2_FLIP] and "sign_agreement" not in mr["rows"][ladder.R2_STATIC]
    assert len(a["r2"]["videos"]) >= 2 and all(world.split_of(s) == "heldout" for s in a["r2"]["videos"])
    assert "r1 (segments" in ladder.markdown(a)


def test_r3_scores_the_rollout_with_the_references(tiny_model):
    from pfvg_core import metrics

    vids = ladder.heldout_videos(2, seconds=1.0)
    res = ladder.run_r3(tiny_model, vids, memories=("off",), opts=SamplerOptions(steps=1), window=W, reps=20, log=lambda m: None)
    assert set(res["rows"]) == {ladder.GEN.format("off"), *metrics.REFERENCES}
    assert res["rows"][ladder.GEN.format("off")]["mean_mse_to_truth"]["value"] > 0
    assert res["rows"][metrics.REF_FIRST]["tracking_corr"]["value"] == 0.0  # a still video does not track the camera
    pair = res["differences"][f"{ladder.GEN.format('off')} − {metrics.REF_FIRST}"]["mean_mse_to_truth"]
    per = res["points"]
    want = np.mean(np.subtract(per[ladder.GEN.format("off")]["mean_mse_to_truth"], per[metrics.REF_FIRST]["mean_mse_to_truth"]))
    assert pair["value"] == pytest.approx(want) and pair["low"] <= pair["value"] <= pair["high"] and pair["videos"] == 2


def test_r3_differences_are_paired_by_video():
    """Known answer: mode a is mode b + 1 on every video (whatever the spread between videos), so the paired
    interval is exactly [1, 1]; a video where a metric has no value is left out of that metric's pair."""
    from pfvg_core import metrics

    on, off = ladder.GEN.format("on"), ladder.GEN.format("off")
    base = [0.1, 5.0, 30.0, 2.0]
    pts = {on: {k: [b + 1 for b in base] for k in ladder.R3_METRICS}, off: {k: list(base) for k in ladder.R3_METRICS},
           metrics.REF_FIRST: {k: [None, 1.0, 1.0, 1.0] for k in ladder.R3_METRICS}}
    d = ladder.r3_differences(pts, ("on", "off"), ladder.resamples(4, 200, 0))
    k = ladder.R3_METRICS[0]
    assert d[f"{on} − {off}"][k] == {"value": 1.0, "low": 1.0, "high": 1.0, "videos": 4}
    assert d[f"{on} − {metrics.REF_FIRST}"][k]["videos"] == 3
    assert d[f"{on} − {metrics.REF_FIRST}"][k]["value"] == pytest.approx(np.mean([6.0, 31.0, 3.0]) - 1.0)


def test_r2_oracle_that_ignores_the_prompt(lossless, videos):
    """The true video whatever the prompt: the true prompt's shift agrees in sign, the flipped one's does not,
    and no prompt changes the prediction."""
    lat = ladder.encode(lossless, videos)
    moving = [i for i, v in enumerate(videos) if v.params.pan != 0]  # r2 runs on these
    res = ladder.run_r2(lossless, videos, lat, memories=("off",), window=W, reps=100, sampler=oracle(lat[moving]),
                        log=lambda m: None, segments=4)
    assert res["videos"] == [videos[i].params.seed for i in moving]
    ref = res["references"][ladder.REF_RAW]
    rows = res["memory"]["off"]["rows"]
    assert rows[ladder.R2_TRUE]["sign_agreement"]["value"] == ref["sign_agreement"]["value"] >= 0.8
    assert rows[ladder.R2_FLIP]["sign_agreement"]["value"] <= 0.2
    assert rows[ladder.R2_TRUE]["shift_ratio"]["value"] == pytest.approx(1, abs=0.25)
    assert all(r["relative_change"]["value"] == 0.0 for r in rows.values())
    with pytest.raises(ValueError, match="frames"):
        ladder.run_r2(lossless, videos, lat, memories=("off",), window=W, sampler=oracle(lat), segments=50, log=lambda m: None)
