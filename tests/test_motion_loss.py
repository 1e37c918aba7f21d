"""The loss that pays for motion (``train.motion_weights``) and the fast-pan training videos of the recipe."""
import numpy as np
import pytest
import torch

from pfvg_core import world
from pfvg_core.train import TrainConfig, motion_weights
from research import experiments as ex


def test_motion_weights_known_answer():
    """A still clip weighs 1 everywhere; in a clip where one latent location changes, that location carries the
    weight 1 + strength · d / mean(d) and the still ones 1."""
    prev = torch.zeros(1, 2, 1, 4, 4)
    still = torch.zeros(1, 2, 3, 4, 4)
    assert torch.equal(motion_weights(still, prev, 5.0), torch.ones(1, 1, 3, 4, 4))
    moving = still.clone()
    moving[:, :, 0, 1, 2] = 2.0  # changes from the previous frame at frame 0, back at frame 1
    w = motion_weights(moving, prev, 5.0)
    d_mean = (2.0 + 2.0) / (3 * 16)  # |Δ| = 2 at (0, 1, 2) and (1, 1, 2), channel mean 2
    assert w[0, 0, 0, 1, 2] == pytest.approx(1 + 5.0 * 2.0 / d_mean)
    assert w[0, 0, 1, 1, 2] == pytest.approx(1 + 5.0 * 2.0 / d_mean)
    assert w[0, 0, 2, 1, 2] == 1.0 and w[0, 0, 0, 0, 0] == 1.0
    assert float(w.mean()) == pytest.approx(1 + 5.0)


def test_motion_weight_is_a_checked_training_option():
    assert TrainConfig(motion_weight=2.0).motion_weight == 2.0
    with pytest.raises(ValueError, match="motion_weight"):
        TrainConfig(motion_weight=-1.0)
    with pytest.raises(ValueError, match="motion_weight"):
        TrainConfig(motion_weight=float("nan"))


def test_fast_pans_make_the_chosen_panning_seeds_fast_and_leave_the_rest():
    b0 = ex.Budget.tiny(seconds=2.0)
    b1 = ex.Budget.tiny(seconds=2.0, fast_pans=1.0)
    seeds = world.train_seeds(40)
    panning = [s for s in seeds if world.WorldParams.sample(s).pan != 0]
    static = [s for s in seeds if world.WorldParams.sample(s).pan == 0]
    assert panning and static
    v = ex.training_video(panning[0], b1)
    assert v.params.period == ex.FAST_PAN_PERIOD and v.params.tilt == 0.0 and v.params.pan == world.WorldParams.sample(panning[0]).pan
    assert np.array_equal(ex.training_video(static[0], b1).frames, world.make_video(static[0], seconds=2.0, fps=8).frames)
    assert np.array_equal(ex.training_video(panning[0], b0).frames, world.make_video(panning[0], seconds=2.0, fps=8).frames)
    half = ex.Budget.tiny(seconds=2.0, fast_pans=0.5)
    fast = [s for s in range(400) if ex.training_video(s, half).params.period == ex.FAST_PAN_PERIOD
            and world.WorldParams.sample(s).period != ex.FAST_PAN_PERIOD]
    eligible = [s for s in range(400) if world.WorldParams.sample(s).pan != 0 and world.WorldParams.sample(s).period != ex.FAST_PAN_PERIOD]
    assert 0.35 < len(fast) / len(eligible) < 0.65  # about half of the panning seeds, chosen by seed
    assert fast == [s for s in range(400) if ex.training_video(s, half).params.period == ex.FAST_PAN_PERIOD
                    and world.WorldParams.sample(s).period != ex.FAST_PAN_PERIOD]  # the same seeds every time


def test_flow_loss_weighted_by_motion_equals_the_weighted_mean(monkeypatch):
    """With a velocity that is 0 everywhere the loss is Σ w·(x − ε)² / Σ w: weight 0 gives the plain MSE, weight
    > 0 the motion-weighted mean; no previous frame with a weight is an error."""
    from pfvg_core import train

    monkeypatch.setattr(train, "velocity", lambda model, ctx, x_t, t, cond, guidance: torch.zeros_like(x_t))
    clip = torch.zeros(1, 2, 3, 4, 4)
    clip[:, :, :, 1, 2] = 3.0
    prev = torch.zeros(1, 2, 1, 4, 4)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731 - the same draws for every form
    plain = train.flow_matching_loss(None, None, clip, None, gen(), "logit_normal", 1.0, None)
    noise = torch.randn(clip.shape, generator=(lambda g: (train.sample_t(1, g, "logit_normal", 1.0), g)[1])(gen()))
    target = clip - noise
    assert float(plain) == pytest.approx(float((target ** 2).mean()), rel=1e-6)
    weighted = train.flow_matching_loss(None, None, clip, None, gen(), "logit_normal", 1.0, None, motion_weight=4.0, previous=prev)
    w = motion_weights(clip, prev, 4.0).expand_as(target)
    assert float(weighted) == pytest.approx(float((w * target ** 2).sum() / w.sum()), rel=1e-6)
    assert float(weighted) > float(plain)  # the changing location has the largest error here
    with pytest.raises(ValueError, match="previous"):
        train.flow_matching_loss(None, None, clip, None, gen(), "logit_normal", 1.0, None, motion_weight=4.0)
