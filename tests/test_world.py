import numpy as np
import pytest

from pfvg_core.world import SPRITE_COLOURS, WorldParams, background_view, camera, make_video, render


def test_same_seed_same_video_other_seed_other_video():
    a, b, c = make_video(4, seconds=3), make_video(4, seconds=3), make_video(5, seconds=3)
    assert np.array_equal(a.frames, b.frames) and a.prompt == b.prompt and a.truth == b.truth
    assert not np.array_equal(a.frames, c.frames)


def test_video_size_rate_and_prompt():
    v = make_video(1, seconds=60, fps=8)
    assert v.frames.shape == (481, 64, 64, 3) and v.frames.dtype == np.uint8
    for s in v.params.sprites:
        assert f"{s.colour} {s.shape}" in v.prompt
    assert v.params.palette in v.prompt


def test_camera_pans_away_and_returns():
    p = WorldParams.sample(2)
    xs = [camera(p, t)[0] for t in np.arange(0, p.period + 1e-9, 0.5)]
    assert xs[0] == 0 and max(xs) == int(round(p.pan)) and camera(p, p.period)[0] == 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
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
            visible = v.truth["sprite_in_view"][k][i] and not v.truth["sprite_occluded"][k][i]
            assert hit.any() == visible, (k, i)
            if visible:  # the pixels lie inside the true box
                ys, xs = np.nonzero(hit)
                x0, y0, x1, y1 = v.truth["sprite_boxes"][k][i]
                assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1
            sprite_px |= hit
        # everything that is not a sprite is the background seen from the true camera position
        assert np.array_equal(frame[~sprite_px], bg[~sprite_px])


def test_occluders_hide_sprites_for_seconds():
    longest = 0
    for seed in range(20):
        v = make_video(seed, seconds=60, fps=8)
        occ = np.array(v.truth["sprite_occluded"])
        for i in range(occ.shape[1]):
            run = best = 0
            for o in occ[:, i]:
                run = run + 1 if o else 0
                best = max(best, run)
            longest = max(longest, best)
    assert longest / 8 >= 2.0  # some sprite stays hidden for at least 2 s


def test_bad_arguments():
    with pytest.raises(ValueError):
        render(WorldParams.sample(0), seconds=0)
