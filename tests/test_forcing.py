import torch

from pfvg_core import flow
from pfvg_core.forcing import DirectForcing, StudentForcing, TeacherForcing, make_strategy, sample_t
from pfvg_core.loop import segment_context, velocity
from pfvg_core.state import MemoryConfig, init_state


def _setup(model):
    start = torch.randn(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = model.conditioning("a ball", start)
    state = init_state(model, start, cond, config=MemoryConfig(window=4))
    clip = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    return cond, segment_context(model, state), clip


def test_direct_forcing_history_is_the_one_step_estimate_without_gradient(tiny_model):
    cond, ctx, clip = _setup(tiny_model)
    got = DirectForcing().history(tiny_model, ctx, clip, cond, torch.Generator().manual_seed(7), 10.0, "uniform", 1.0)
    # the same draws by hand: t, then ε, then x̃ = x_t + (1 − t)·v_θ(x_t, t)  (eq. 7)
    g = torch.Generator().manual_seed(7)
    t = sample_t(1, g, "uniform", 1.0)
    eps = torch.randn(clip.shape, generator=g)
    x_t = t * clip + (1 - t) * eps
    with torch.no_grad():
        v = velocity(tiny_model, ctx, x_t, t, cond, 10.0)
    assert torch.equal(got, x_t + (1 - t) * v)
    assert not got.requires_grad
    # no gradient flows through it into the model
    for p in tiny_model.parameters():
        assert p.grad is None


def test_teacher_is_ground_truth_and_student_runs_k_steps(tiny_model):
    cond, ctx, clip = _setup(tiny_model)
    assert TeacherForcing().history(tiny_model, ctx, clip, cond, torch.Generator(), 10.0) is clip
    calls = []
    h = tiny_model.dit.register_forward_hook(lambda *a: calls.append(1))
    StudentForcing(k=5).history(tiny_model, ctx, clip, cond, torch.Generator().manual_seed(0), 10.0)
    DirectForcing().history(tiny_model, ctx, clip, cond, torch.Generator().manual_seed(0), 10.0)
    h.remove()
    assert len(calls) == 6  # 5 for Student Forcing, 1 for Direct Forcing
    assert make_strategy("student", 3).k == 3


def test_sample_t_distribution_and_shift():
    g = torch.Generator().manual_seed(0)
    t = sample_t(20000, g, "uniform", 1.0)
    assert 0 < t.min() and t.max() < 1 and abs(float(t.mean()) - 0.5) < 0.01
    t3 = sample_t(20000, torch.Generator().manual_seed(0), "uniform", 3.0)
    assert float(t3.mean()) < 0.4  # shift > 1 moves training towards noise, as in sampling
    assert torch.allclose(1 - t3, torch.as_tensor(flow.shift_sigmas(1 - t, torch.log(torch.tensor(3.0)).item())), atol=1e-5)


def test_direct_forcing_reuses_the_loss_forward(tiny_model):
    cond, ctx, clip = _setup(tiny_model)
    x_t, t, v = torch.randn_like(clip), torch.tensor([0.4]), torch.randn_like(clip)
    calls = []
    h = tiny_model.dit.register_forward_hook(lambda *a: calls.append(1))
    got = DirectForcing().history(tiny_model, ctx, clip, cond, torch.Generator(), 10.0, forward=(x_t, t, v))
    h.remove()
    assert calls == [] and torch.allclose(got, x_t + 0.6 * v)
