"""ψ's memory horizon: ψ₀'s trace and the carry of Squeeze, on a tiny model."""
import pytest
import torch

from pfvg_core.model import PFVGModel
from research import memory_horizon


def test_first_update_trace_is_the_carry_and_a_model_that_ignores_psi_has_none():
    model = PFVGModel.build("tiny", seed=0)
    lat = torch.randn(2, 4, 1 + 3 * 2, 16, 16, generator=torch.Generator().manual_seed(1))
    res = memory_horizon.horizon(model, lat, ["a red square", "a blue circle"], updates=3, window=2)
    assert len(res["psi0_trace"]) == len(res["carry"]) == 3
    # after one update on and zero differ only by ψ₀: the trace is exactly what ψ₀ carries into ψ₁
    assert res["psi0_trace"][0]["median"] == pytest.approx(res["carry"][0]["median"], rel=1e-5)
    assert res["carry"][1]["median"] > 0
    # Squeeze made blind to ψ: nothing carries, ψ₀ leaves no trace
    blind = memory_horizon.horizon(_blind(model), lat, ["a red square", "a blue circle"], updates=2, window=2)
    assert all(c["max"] < 1e-6 for c in blind["carry"]) and all(t["max"] < 1e-6 for t in blind["psi0_trace"])
    with pytest.raises(ValueError, match="latent frames"):
        memory_horizon.horizon(model, lat[:, :, :3], ["a", "b"], updates=3, window=2)


def _blind(model):
    """The same model with Squeeze replaced by a function of the memorized segment only."""
    sp = model.semanticpack
    sp.squeeze = lambda psi, memorized, psi_mask=None: memorized  # noqa: E731 - ψₙ₊₁ = Memorize(xⁿ)
    return model
