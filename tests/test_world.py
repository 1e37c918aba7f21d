import json

import numpy as np
import pytest

from pfvg_core.world import (HELDOUT_START, SPRITE_COLOURS, Sprite, WorldParams, background_view, camera, camera_path,
                             heldout_seeds, make_video, render, split_of, train_seeds, video_from_truth)

CONTEXT_S = 19 / 8  # FramePack f16k4f2k2f1k1 keeps 19 latent frames: 2.4 s at 8 fps


def test_same_seed_same_video_other_seed_other_video():
    a, b, c = make_video(4, seconds=3), make_video(4, seconds=3), make_video(5, seconds=3)
    assert np.array_equal(a.frames, b.frames) and a.prompt == b.prompt and a.truth == b.truth
    assert np.array_equal(a.sprite_ids, b.sprite_ids)
    assert not np.array_equal(a.frames, c.frames)


def test_video_size_rate_and_prompt():
    v = make_video(1, seconds=60, fps=8)
    assert v.frames.shape == (481, 64, 64, 3) and v.frames.dtype == np.uint8
    assert v.sprite_ids.shape == (481, 64, 64) and v.masks.shape == (481, len(v.params.sprites), 64, 64)
    for s in v.params.sprites:
        assert s.describe() in v.prompt
    assert v.params.palette in v.prompt


def test_splits_are_disjoint():
    tr, ho = set(train_seeds(500)), set(heldout_seeds(16))
    assert len(ho) == 16 and not tr & ho and min(ho) == HELDOUT_START
    assert all(split_of(s) == "train" for s in tr) and all(split_of(s) == "heldout" for s in ho)
    with pytest.raises(ValueError, match="training seeds"):
        train_seeds(10, start=HELDOUT_START - 5)


@pytest.mark.parametrize("seed", range(12))
def test_camera_returns_within_a_training_clip(seed):
    p = WorldParams.sample(seed)
    assert camera(p, p.period) == camera(p, 0) and p.period <= 16
    xs, ys = camera_path(p, np.arange(0, p.period, 1 / 8))
    assert xs.min() >= 0 and xs.max() <= p.canvas_w - p.view and ys.min() >= 0 and ys.max() <= p.canvas_h - p.view
    if p.static:
        assert len(set(xs)) == 1 and len(set(ys)) == 1 and p.prompt().startswith("static camera")
    else:
        assert np.ptp(xs) == abs(p.pan) and np.ptp(ys) == abs(p.tilt)
        assert ("right" if p.pan > 0 else "left") in p.prompt().split(";")[0]


def test_camera_modes_all_occur():
    ps = [WorldParams.sample(s) for s in range(60)]
    assert any(p.static for p in ps) and any(p.pan > 0 for p in ps) and any(p.pan < 0 for p in ps)
    assert any(p.tilt != 0 for p in ps)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 6, 7])
def test_ground_truth_matches_the_pixels(seed):
    v = make_video(seed, seconds=30, fps=4)
    p = v.params
    for k, frame in enumerate(v.frames):
        cam = tuple(v.truth["camera"][k])
        assert cam == camera(p, k / v.fps)
        bg = background_view(p, cam)
        sprite_px = np.zeros(frame.shape[:2], bool)
        for i, s in enumerate(p.sprites):
            colour = np.array(SPRITE_COLOURS[s.colour], np.uint8)
            hit = (frame == colour).all(-1)
            assert np.array_equal(hit, v.sprite_ids[k] == i)
            assert hit.any() == v.truth["sprite_visible"][k][i] and hit.sum() == v.truth["sprite_pixels"][k][i]
            assert v.truth["sprite_colours"][k][i] == list(colour)
            if v.truth["sprite_occluded"][k][i] or not v.truth["sprite_in_view"][k][i]:
                assert not hit.any()
            if hit.any():  # the pixels lie inside the true box, around the true centre
                ys, xs = np.nonzero(hit)
                x0, y0, x1, y1 = v.truth["sprite_boxes"][k][i]
                assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1
                cx, cy = v.truth["sprite_centres"][k][i]
                assert x0 <= cx <= x1 and y0 <= cy <= y1
            sprite_px |= hit
        # everything that is not a sprite is the background seen from the true camera position
        assert np.array_equal(frame[~sprite_px], bg[~sprite_px])


def _longest_gap_then_return(visible: np.ndarray) -> int:
    """Longest run of False that starts after a True and ends with a True (leaves, then returns)."""
    best, run, seen = 0, 0, False
    for x in visible:
        if x:
            if seen:
                best = max(best, run)
            seen, run = True, 0
        else:
            run += 1
    return best


def test_what_leaves_the_view_returns_inside_a_training_clip():
    """The world needs memory: in 20 s clips, views and sprites leave for longer than the FramePack
    context (2.4 s) and come back."""
    fps, views, sprites, moving = 8, 0, 0, 0
    for seed in range(40):
        v = make_video(seed, seconds=20, fps=fps)
        cams = np.array(v.truth["camera"])
        if not v.params.static:
            moving += 1
            # the left column of the first view (right column when panning left)
            col = cams[0, 0] + (0 if v.params.pan >= 0 else v.params.view - 1)
            seen = (cams[:, 0] <= col) & (col < cams[:, 0] + v.params.view)
            views += _longest_gap_then_return(seen) / fps > CONTEXT_S
        vis = np.array(v.truth["sprite_visible"])
        sprites += any(_longest_gap_then_return(vis[:, i]) / fps > CONTEXT_S for i in range(vis.shape[1]))
    assert moving >= 25 and views == moving  # every moving camera loses its first view and finds it again
    assert sprites >= 30  # most clips (36 of these 40) have a sprite that leaves and returns


def test_prompt_says_what_the_parameters_say():
    still = Sprite("circle", "red", 5, 50, 40, 0, 0)
    up = Sprite("square", "blue", 5, 50, 40, 0, -3)
    left = Sprite("triangle", "cyan", 5, 50, 40, -7, 2, (20, 150))
    p = WorldParams(0, pan=0, cam_x=40, sprites=(still, up, left), occluders=((60, 12),))
    text = p.prompt()
    assert text.startswith("static camera;") and "pans" not in text and "tilt" not in text
    assert "red circle standing still" in text and "blue square moving up 3 px/s" in text
    assert "cyan triangle moving left 7 px/s and down 2 px/s" in text and "1 dark pillar in front" in text
    assert "left" not in still.describe() + up.describe() and "right" not in text
    q = WorldParams(0, pan=-64, cam_x=100, period=9, tilt=16, cam_y=0)
    assert q.prompt().startswith("camera pans left 64 px and back every 9 s, tilts down 16 px and back twice;")
    longest = max((WorldParams.sample(s).prompt().split(";")[0] for s in range(300)), key=len)
    assert len(longest.encode()) <= 77  # the camera survives a 77-byte text encoder
    assert q.prompt().endswith("no pillar")


def test_truth_json_round_trip():
    v = make_video(HELDOUT_START + 3, seconds=5)
    w = video_from_truth(json.loads(v.truth_json()))
    assert w.params == v.params and np.array_equal(w.frames, v.frames) and w.truth == v.truth


def test_bad_arguments():
    with pytest.raises(ValueError, match="seconds"):
        render(WorldParams.sample(0), seconds=0)
    with pytest.raises(ValueError, match="cam_x"):
        WorldParams(0, pan=96, cam_x=64)
    with pytest.raises(ValueError, match="shape"):
        Sprite("hexagon", "red", 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="colour"):
        Sprite("circle", "brown", 4, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="truth"):
        video_from_truth({"camera": []})
