"""Truth-anchored metrics: known answers, and on world videos a still frame never wins."""
import numpy as np
import pytest

from pfvg_core.metrics import (COLUMNS, REF_CODEC, REF_FIRST, REFERENCES, TRUTH_ANCHORED, blur, camera_tracking,
                               evaluate, evaluate_references, frame_shifts, markdown_table, reference_blurred_first_frame,
                               reference_first_frame, reference_through_codec, reference_videos, returns, revisit_error,
                               sprite_identity_on_return, sprite_returns, window_delta_drift)
from pfvg_core.world import heldout_seeds, make_video


def test_window_delta_drift_computes_consistency_inside_each_window():
    from pfvg_core.metrics import consistency

    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    video = np.stack([black] * 17 + [black, white, black])  # 20 frames: 15 % = 3 frames per window
    # first window: all black (consistency 1); last window: black, white, black
    assert window_delta_drift(video, lambda w: consistency(w)["consistency_neighbour"]) == pytest.approx(1.0)
    assert window_delta_drift(video, lambda w: consistency(w)["consistency_first"]) == pytest.approx(0.5)
    still = np.repeat(video[:1], 20, 0)
    assert window_delta_drift(still, lambda w: consistency(w)["consistency_first"]) == 0
    out = evaluate(video)
    assert out["delta_drift_consistency_neighbour"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="2 frames"):
        window_delta_drift(video[:1], len)


def test_returns_need_the_camera_to_leave():
    cams = np.array([[0, 0], [10, 0], [20, 0], [10, 0], [0, 0]])
    assert returns(cams, min_gap=2, away=15) == [(0, 4)]  # frame 3 never left frame 1's view by 15 px
    assert returns(cams, min_gap=2, away=10) == [(1, 3), (0, 4)]
    assert returns(cams, min_gap=5, away=10) == []
    assert returns(np.zeros((10, 2)), min_gap=2, away=1) == []  # a static camera never returns


def test_revisit_error_known_answer():
    cams = np.array([[0, 0], [10, 0], [20, 0], [10, 0], [0, 0]])
    truth = np.zeros((5, 4, 4, 3), np.float32)
    video = truth.copy()
    video[4] = 0.5  # wrong only on the returning frame
    video[2] = 1.0  # wrong away from any return: not counted
    r = revisit_error(video, truth, cams, min_gap=2, away=15)
    assert r == {"revisit_error": pytest.approx(0.25), "revisit_frames": 1}
    assert revisit_error(truth, truth, cams, min_gap=2, away=15)["revisit_error"] == 0
    assert revisit_error(video, truth, np.zeros((5, 2)), min_gap=2)["revisit_error"] is None


def _sprite_scene(offset: int, colour=(235, 30, 30), show=True):
    """16×16 frames, 10 of them: a 4×4 red sprite visible in frames 0–1 and 6–9, absent in 2–5."""
    ids = np.full((10, 16, 16), -1, np.int8)
    ids[0:2, 2:6, 2:6] = 0
    ids[6:10, 8:12, 4:8] = 0
    frames = np.zeros((10, 16, 16, 3), np.uint8)
    frames[0:2, 2:6, 2:6] = colour
    if show:
        frames[6:10, 8:12, 4 + offset : 8 + offset] = colour
    return frames, ids


def test_sprite_identity_on_return_known_answers():
    vis = np.array([[16], [16], [0], [0], [0], [0], [16], [16], [16], [16]])
    assert sprite_returns(vis, min_absent=3) == [(0, 6)] and sprite_returns(vis, min_absent=5) == []
    red = [[255, 30, 30]]
    frames, ids = _sprite_scene(0)
    r = sprite_identity_on_return(frames, ids, red, min_absent=3)
    assert r["identity_returns"] == 1 and r["identity_found"] == 1.0
    assert r["identity_colour_error"] == pytest.approx(20 / 3) and r["identity_position_error"] == pytest.approx(0.0)
    frames, ids = _sprite_scene(3, colour=(255, 30, 30))  # right colour, 3 px to the right
    r = sprite_identity_on_return(frames, ids, red, min_absent=3)
    # the true mask now shows one red column and three black ones
    assert r["identity_colour_error"] == pytest.approx((255 * 0.75 + 30 * 0.75 * 2) / 3)
    assert r["identity_position_error"] == pytest.approx(3.0)
    frames, ids = _sprite_scene(0, show=False)  # the sprite never comes back: lost
    r = sprite_identity_on_return(frames, ids, red, min_absent=3)
    assert r["identity_found"] == 0 and r["identity_position_error"] == 16
    assert sprite_identity_on_return(frames, ids, red, min_absent=5)["identity_colour_error"] is None


def _panning_video(path_x, path_y=None, size=64):
    rng = np.random.default_rng(0)
    canvas = blur(rng.integers(0, 256, (1, 96, 160, 3)).astype(np.uint8), 2.0)[0]
    path_y = np.zeros_like(path_x) if path_y is None else path_y
    return np.stack([canvas[y : y + size, x : x + size] for x, y in zip(path_x, path_y)])


def test_camera_tracking_known_answers():
    t = np.arange(40)
    xs = np.round(50 * (1 - np.cos(2 * np.pi * t / 20)) / 2).astype(int)
    ys = np.round(10 * (1 - np.cos(2 * np.pi * t / 10)) / 2).astype(int)
    video = _panning_video(xs, ys)
    cams = np.stack([xs, ys], 1)
    assert np.abs(frame_shifts(video) - np.diff(cams, axis=0)).max() < 0.25  # the true shifts
    r = camera_tracking(video, cams)
    assert r["tracking_corr"] == pytest.approx(1.0, abs=1e-3) and r["tracking_error_px"] < 1
    still = np.repeat(video[:1], len(video), 0)
    s = camera_tracking(still, cams)
    assert s["tracking_corr"] == 0 and s["tracking_error_px"] > 5
    mirrored = camera_tracking(_panning_video(50 - xs, ys), cams)  # pans left where the truth pans right
    assert mirrored["tracking_corr_x"] == pytest.approx(-1.0, abs=1e-3) and mirrored["tracking_corr_y"] == pytest.approx(1.0, abs=1e-3)
    assert camera_tracking(video, np.zeros((40, 2)))["tracking_corr"] is None  # static truth: not applicable


def test_references_and_blur():
    v = make_video(heldout_seeds(1)[0], seconds=2)
    refs = reference_videos(v.frames, lambda f: f[::-1].copy())
    assert list(refs) == list(REFERENCES)
    assert np.array_equal(refs[REF_FIRST], reference_first_frame(v.frames)) and (refs[REF_FIRST] == v.frames[0]).all()
    assert np.array_equal(refs[REF_CODEC], v.frames[::-1])
    b = reference_blurred_first_frame(v.frames)
    assert b.shape == v.frames.shape and (b == b[0]).all() and b[0].astype(float).std() < v.frames[0].astype(float).std()
    flat = np.full((1, 8, 8, 3), 77, np.uint8)
    assert np.array_equal(blur(flat), flat)  # blur keeps a flat image
    with pytest.raises(ValueError, match="codec"):
        reference_through_codec(v.frames, lambda f: f[:1])


def test_table_always_shows_the_references():
    rows = {"model": [{c: 1.0 for c in COLUMNS}], **{r: [{c: 2.0 for c in COLUMNS}] for r in REFERENCES}}
    md = markdown_table(rows)
    lines = md.splitlines()
    assert lines[2].startswith("| model |") and all(any(line.startswith(f"| {r} |") for line in lines) for r in REFERENCES)
    assert "tracking_corr ↑" in lines[0] and "revisit_error ↓" in lines[0] and "delta_drift_mse_to_truth ↓" in lines[0]
    with pytest.raises(ValueError, match="references"):
        markdown_table({"model": rows["model"], REF_FIRST: rows[REF_FIRST]})


def _box_codec(frames):
    """A stand-in latent codec: 2×2 averages, upsampled (loses detail like a factor-2 codec)."""
    f = frames.astype(np.float32)
    t, h, w, c = f.shape
    low = f.reshape(t, h // 2, 2, w // 2, 2, c).mean((2, 4))
    return np.round(low.repeat(2, 1).repeat(2, 2)).astype(np.uint8)


@pytest.mark.parametrize("seed", heldout_seeds(6))
def test_a_still_frame_never_wins_a_truth_anchored_metric(seed):
    v = make_video(seed, seconds=40)
    rng = np.random.default_rng(seed)
    noisy = np.clip(v.frames.astype(int) + rng.integers(-10, 11, v.frames.shape), 0, 255).astype(np.uint8)
    still = {name: r[0] for name, r in evaluate_references([v], _box_codec).items() if name != REF_CODEC}
    good = {"codec round trip": evaluate(_box_codec(v.frames), v.truth, v.frames, v.fps, sprite_ids=v.sprite_ids),
            "truth + noise": evaluate(noisy, v.truth, v.frames, v.fps, sprite_ids=v.sprite_ids)}
    checked = 0
    for metric, better in TRUTH_ANCHORED.items():
        for g in good.values():
            for s in still.values():
                if g[metric] is None:  # not defined for this video (static camera: no revisit, no tracking)
                    assert s[metric] is None and v.params.static and metric in ("revisit_error", "tracking_corr")
                    continue
                if v.params.static and metric == "mean_mse_to_truth":
                    continue  # a static camera's first frame is the true background: only sprites differ (documented)
                checked += 1
                assert (s[metric] > g[metric]) if better == "lower" else (s[metric] < g[metric]), (metric, s[metric], g[metric])
    assert checked >= (8 if v.params.static else 16)
