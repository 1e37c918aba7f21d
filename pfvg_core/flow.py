"""Rectified flow (PFVG §3.2, eqs. 3–7) and the time-shifted sampling schedule (FramePack-F1).

Two conventions, each used on one side only:

- **training** (the paper's, eqs. 3–7): x_t = t·x + (1 − t)·ε, t ∈ [0, 1] (t = 1 is data), velocity
  u_t = x − ε;
- **sampling** (the DiT's and diffusers' flow schedulers'): noise level σ = 1 − t (σ = 1 is noise), flow
  prediction ε − x = −u_t. The sampler never converts: it hands the scheduler's σ to the DiT and the
  DiT's output to the scheduler.

The DiT itself takes timestep σ·1000. ``PFVGModel.predict_flow`` is the one place σ becomes the DiT's
timestep; ``PFVGModel.predict_velocity`` is the one place the paper's (t, u) meets the DiT (via
``sigma_of`` and ``velocity_of``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

SAMPLERS = ("euler", "unipc")  # first-order Euler; UniPC bh2, order 2 (FramePack's sampler)


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. 3: x_t = t·x + (1 − t)·ε (``t`` broadcast over [B, ...])."""
    t = _bcast(t, x)
    return t * x + (1 - t) * noise


def target_velocity(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Eq. 4: u_t = dx_t/dt = x − ε."""
    return x - noise


def one_step_estimate(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Eq. 7 (Direct Forcing): x̃₁ = x_t + (1 − t)·v_θ(x_t, t)."""
    return x_t + (1 - _bcast(t, x_t)) * velocity


DIT_TIMESTEPS = 1000.0  # the DiT's timestep = σ·1000 (diffusers' num_train_timesteps)


def sigma_of(t: torch.Tensor) -> torch.Tensor:
    """Paper time t → noise level σ = 1 − t."""
    return 1 - t


def velocity_of(flow_prediction: torch.Tensor) -> torch.Tensor:
    """The DiT's flow prediction ε − x → the paper's velocity x − ε."""
    return -flow_prediction


def _bcast(t, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim else t


# --- time shift ----------------------------------------------------------------------------
def resolution_mu(seq_len: int, x1: int = 256, y1: float = 0.5, x2: int = 4096, y2: float = 1.15, exp_max: float = 7.0) -> float:
    """FramePack's resolution-dependent shift: μ linear in the window's token count, e^μ ≤ ``exp_max``."""
    k = (y2 - y1) / (x2 - x1)
    return min(k * seq_len + (y1 - k * x1), math.log(exp_max))


def shift_sigmas(sigmas: np.ndarray | torch.Tensor, mu: float) -> np.ndarray | torch.Tensor:
    """σ' = e^μ / (e^μ + 1/σ − 1) (flux time shift; static shift s ⇔ μ = log s)."""
    return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))


def make_scheduler(sampler: str, steps: int, mu: float, device="cpu"):
    """A diffusers flow-matching scheduler with FramePack's shifted sigmas set for ``steps`` steps:
    ``euler`` (FlowMatchEulerDiscreteScheduler) or ``unipc`` (UniPCMultistepScheduler, bh2, order 2, as
    FramePack samples). Both step on the model output ε − x and use the same σ schedule."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:-1]
    if sampler == "euler":
        sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    elif sampler == "unipc":
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, use_dynamic_shifting=True,
                                        time_shift_type="exponential", solver_order=2, solver_type="bh2")
    else:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    sched.set_timesteps(sigmas=sigmas, mu=mu, device=device)
    return sched


def schedule_mu(shift: float | None, window_tokens: int) -> float:
    """μ for a static ``shift`` (μ = log shift), or FramePack's resolution-dependent one if None."""
    if shift is None:
        return resolution_mu(window_tokens)
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return math.log(shift)


def guided(pos: torch.Tensor, neg: torch.Tensor | None, cfg: float, rescale: float = 0.0) -> torch.Tensor:
    """Real classifier-free guidance: neg + cfg·(pos − neg), with optional std rescale (FramePack)."""
    if neg is None or cfg == 1.0:
        return pos
    out = neg + cfg * (pos - neg)
    if rescale > 0:
        dims = list(range(1, pos.ndim))
        out_r = out * (pos.std(dim=dims, keepdim=True) / out.std(dim=dims, keepdim=True))
        out = rescale * out_r + (1 - rescale) * out
    return out
