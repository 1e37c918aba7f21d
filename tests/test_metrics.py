import numpy as np
import pytest

from pfvg_core.metrics import (consistency, delta_drift, evaluate, plot_metrics, revisit_consistency, revisit_pairs,
                               sharpness, similarity)


def test_delta_drift_known_answers():
    assert delta_drift(np.ones(100)) == 0
    v = np.concatenate([np.zeros(50), np.ones(50)])
    assert delta_drift(v) == 1.0  # first 15 frames 0, last 15 frames 1
    assert delta_drift(np.linspace(0, 1, 101)) == pytest.approx(0.86, abs=1e-9)  # k = 15: means 0.07 and 0.93
    with pytest.raises(ValueError):
        delta_drift(np.array([]))


def test_sharpness_known_answers():
    flat = np.full((16, 16, 3), 0.5, np.float32)
    assert sharpness(flat) == 0
    checker = ((np.indices((16, 16)).sum(0) % 2)[..., None] * np.ones(3)).astype(np.float32)
    # interior Laplacian of a checkerboard is ±4, so its variance is 16
    assert sharpness(checker) == pytest.approx(16.0)


def test_similarity_and_consistency_known_answers():
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    assert similarity(black, black) == 1 and similarity(black, white) == 0
    grey = np.full((4, 4, 3), 51, np.uint8)  # 0.2
    video = np.stack([black, grey, black])
    c = consistency(video)
    assert c["consistency_first"] == pytest.approx((0.8 + 1.0) / 2)
    assert c["consistency_neighbour"] == pytest.approx(0.8)


def test_revisit_consistency_known_answers():
    cams = np.array([[0, 0], [10, 0], [20, 0], [10, 0], [0, 0]])
    assert revisit_pairs(cams, min_gap=2) == [(1, 3), (0, 4)]
    assert revisit_pairs(cams, min_gap=2, away=15) == [(0, 4)]  # frame 3 never left frame 1's view by 15 px
    f = np.zeros((5, 4, 4, 3), np.uint8)
    f[3] = 255  # the returning view at frame 3 is completely different from frame 1
    r = revisit_consistency(f, cams, min_gap=2)
    assert r["revisit_pairs"] == 2 and r["revisit_consistency"] == pytest.approx(0.5)
    assert revisit_consistency(f, np.arange(5)[:, None], min_gap=2)["revisit_consistency"] is None


def test_evaluate_world_video_against_its_truth(tmp_path):
    from pfvg_core.world import make_video

    v = make_video(3, seconds=30, fps=4)
    out = evaluate(v.frames, v.truth, truth_frames=v.frames, fps=4)
    assert out["mean_mse_to_truth"] == 0 and out["delta_drift_mse_to_truth"] == 0
    assert out["revisit_pairs"] > 0 and out["revisit_consistency"] > 0.9  # the real world matches itself on return
    assert out["revisit_error"] == 0 and out["revisit_frames"] > 0 and out["tracking_corr"] > 0.95
    assert out["identity_returns"] == 0 or (out["identity_colour_error"] == 0 and out["identity_position_error"] == 0)
    noisy = np.clip(v.frames.astype(int) + np.random.default_rng(0).integers(-60, 60, v.frames.shape), 0, 255).astype(np.uint8)
    drifting = v.frames.copy()
    drifting[len(drifting) // 2 :] = noisy[len(drifting) // 2 :]
    bad = evaluate(drifting, v.truth, truth_frames=v.frames, fps=4)
    assert bad["delta_drift_sharpness"] > out["delta_drift_sharpness"] and bad["delta_drift_mse_to_truth"] > 0
    assert bad["revisit_consistency"] < out["revisit_consistency"] and bad["revisit_error"] > 0
    png = plot_metrics(out["per_frame"], str(tmp_path / "m.png"), fps=4)
    from PIL import Image

    assert Image.open(png).size == (640, 360)
    with pytest.raises(ValueError, match="frames must be"):
        evaluate(np.zeros((3, 4, 4)))


def test_world_and_eval_commands(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "w.webp"
    r = subprocess.run([sys.executable, "-m", "pfvg_core", "world", "--seed", "9", "--seconds", "24", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "pfvg_core", "eval", "--video", str(out), "--truth", str(tmp_path / "w.json"),
                        "--plot", str(tmp_path / "p.png"), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["frames"] == 24 * 8 + 1 and res["mean_mse_to_truth"] == 0
    # seed 9 has a static camera: no view is left and revisited, no path to track; sprite masks come
    # from re-rendering the truth JSON's parameters
    assert res["revisit_pairs"] == 0 and res["revisit_consistency"] is None and res["revisit_error"] is None and res["tracking_corr"] is None and res["identity_returns"] > 0
    assert res["identity_colour_error"] == 0 and res["identity_position_error"] == 0
    assert (tmp_path / "p.png").exists()
    r = subprocess.run([sys.executable, "-m", "pfvg_core", "eval", "--video", str(tmp_path / "nope.webp")], capture_output=True, text=True)
    assert r.returncode == 2 and "video not found" in r.stderr
