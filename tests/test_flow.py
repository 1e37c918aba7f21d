import math

import numpy as np
import pytest
import torch

from pfvg_core import flow


def test_rectified_flow_equations():
    x, eps = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([0.25, 0.8])
    xt = flow.interpolate(x, eps, t)
    assert torch.allclose(xt[0], 0.25 * x[0] + 0.75 * eps[0]) and torch.allclose(xt[1], 0.8 * x[1] + 0.2 * eps[1])
    u = flow.target_velocity(x, eps)
    # with the true velocity, the one-step estimate (eq. 7) recovers x exactly
    assert torch.allclose(flow.one_step_estimate(xt, u, t), x, atol=1e-6)
    assert torch.equal(flow.sigma_of(torch.tensor([1.0, 0.25])), torch.tensor([0.0, 0.75]))
    assert torch.equal(flow.velocity_of(u), -u)


def test_the_dit_boundary_is_the_only_conversion(tiny_model, start_latent):
    """The sampler's (σ, ε − x) goes to the DiT unchanged (timestep σ·1000); the paper's (t, x − ε) is the
    same evaluation seen from the training side."""
    from pfvg_core.loop import segment_context
    from pfvg_core.state import init_state

    cond = tiny_model.conditioning("x", start_latent)
    ctx = segment_context(tiny_model, init_state(tiny_model, start_latent, cond))
    x = torch.randn(1, 4, 9, 16, 16, generator=torch.Generator().manual_seed(0))
    seen = []
    h = tiny_model.dit.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"].clone()), with_kwargs=True)
    with torch.no_grad():
        out = tiny_model.predict_flow(x, torch.tensor([0.75]), cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask, 10.0)
        v = tiny_model.predict_velocity(x, torch.tensor([0.25]), cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask, 10.0)
    h.remove()
    assert torch.equal(seen[0], torch.tensor([750.0])) and torch.equal(seen[1], torch.tensor([750.0]))
    assert torch.equal(v, -out)


def test_time_shift_matches_framepack_formulas():
    s = np.linspace(1, 0, 11)[:-1]
    # static shift s ⇔ μ = log s:  σ' = s·σ / (1 + (s − 1)·σ)
    assert np.allclose(flow.shift_sigmas(s, math.log(3.0)), 3 * s / (1 + 2 * s))
    # resolution-dependent μ (FramePack's calculate_flux_mu)
    assert math.isclose(flow.resolution_mu(256), 0.5) and math.isclose(flow.resolution_mu(4096), 1.15)
    assert flow.resolution_mu(10**6) == pytest.approx(math.log(7.0))
    sched = flow.make_scheduler("euler", 10, math.log(3.0))
    assert np.allclose(sched.sigmas[:-1].numpy(), 3 * s / (1 + 2 * s), atol=1e-6) and sched.sigmas[-1] == 0


@pytest.mark.parametrize("sampler", flow.SAMPLERS)
def test_samplers_integrate_a_straight_path_exactly(sampler):
    """With v = x − ε constant (a straight rectified-flow path), any step count lands on x."""
    x, eps = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
    for steps in (1, 3, 8):
        sched = flow.make_scheduler(sampler, steps, 1.0)
        z = eps.clone()
        for i in range(steps):
            z = sched.step(-(x - eps), sched.timesteps[i], z, return_dict=False)[0]
        assert torch.allclose(z, x, atol=1e-5)


def _gaussian_flow(sampler: str, steps: int, m=2.0, s=0.3, n=4096):
    """Sample data N(m, s²) with its exact velocity field; the exact ODE maps ε to m + s·ε."""
    eps = torch.randn(1, 4, n // 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched = flow.make_scheduler(sampler, steps, math.log(2.0))
    z = eps.clone()
    for i, sigma in enumerate(sched.sigmas[:-1]):
        t = 1 - float(sigma)  # x_t = t·x + (1 − t)·ε
        var = t * t * s * s + (1 - t) ** 2
        ex = m + t * s * s / var * (z - t * m)  # E[x | x_t]
        ee = (1 - t) / var * (z - t * m)  # E[ε | x_t]
        z = sched.step(-(ex - ee), sched.timesteps[i], z, return_dict=False)[0]
    return float((z - (m + s * eps)).abs().max())


def test_unipc_converges_faster_than_euler_on_a_curved_flow():
    err = {(name, steps): _gaussian_flow(name, steps) for name in flow.SAMPLERS for steps in (12, 24)}
    assert err["unipc", 24] < 0.3 * err["euler", 24], err
    # Euler is first order (error roughly halves when the steps double); UniPC's falls much faster
    assert err["unipc", 24] / err["unipc", 12] < 0.5 * err["euler", 24] / err["euler", 12], err


def test_guidance():
    pos, neg = torch.randn(2, 8), torch.randn(2, 8)
    assert torch.equal(flow.guided(pos, neg, 1.0), pos)
    assert torch.allclose(flow.guided(pos, neg, 3.0), neg + 3 * (pos - neg))
    r = flow.guided(pos, neg, 3.0, rescale=1.0)
    assert torch.allclose(r.std(dim=1), pos.std(dim=1), atol=1e-5)
    with pytest.raises(ValueError):
        flow.make_scheduler("euler", 0, 1.0)
    with pytest.raises(ValueError):
        flow.make_scheduler("dpm", 4, 1.0)
