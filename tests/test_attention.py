"""ψ into attention without the additive mask: the mask-free forms equal the
additive-mask form within float tolerance, no mask reaches the attention kernel at batch 1, and the
backend is chosen through diffusers' attention backends."""
import pytest
import torch
from diffusers.models import attention_dispatch as ad

from pfvg_core.backbone import set_attention_backend
from pfvg_core.framepack import pack_history
from pfvg_core.model import PFVGModel
from pfvg_core.rope import time_indices
from pfvg_core.semanticpack import gate_channels
from pfvg_core.state import init_state


def _setup(log_gate, seed=0):
    model = PFVGModel.build("tiny", seed=seed)
    model.semanticpack.open_gate(log_gate)
    model.refresh_id()
    start = torch.randn(1, 4, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    cond = model.conditioning("a red square", start)  # padded prompt: ψ₀ has padded tokens
    state = init_state(model, start, cond)
    packed = pack_history(state.history, state.start_latent, state.config.schedule)
    idx = time_indices("video", packed, state.next_index, state.config.window)
    x = torch.randn(1, 4, 9, 16, 16, generator=torch.Generator().manual_seed(6))
    return model, state, cond, packed, idx, x


def _velocity(model, state, cond, packed, idx, x, force_mask=False):
    model.injector.force_mask = force_mask
    try:
        with torch.no_grad():
            tokens = model.semanticpack.context_tokens(state.psi)
            return model.predict_velocity(x, torch.tensor([0.4]), cond, packed, idx, tokens, state.psi_mask, guidance=6.0)
    finally:
        model.injector.force_mask = False


class _Recorder:
    """Wraps the active diffusers backend and records the masks and head sizes it receives."""

    def __init__(self, monkeypatch):
        name, fn = ad._AttentionBackendRegistry.get_active_backend()
        self.calls = []

        def wrapped(**kw):
            self.calls.append((kw.get("attn_mask"), kw["query"].shape[-1]))
            return fn(**kw)

        monkeypatch.setitem(ad._AttentionBackendRegistry._backends, name, wrapped)


@pytest.mark.parametrize("log_gate", [0.0, -1.3, 0.7])
def test_mask_free_gate_equals_the_additive_mask_form(log_gate, monkeypatch):
    model, state, cond, packed, idx, x = _setup(log_gate)
    assert state.psi_mask is not None and not bool(state.psi_mask.all())  # padded ψ₀ tokens
    ref = _velocity(model, state, cond, packed, idx, x, force_mask=True)
    rec = _Recorder(monkeypatch)
    out = _velocity(model, state, cond, packed, idx, x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    blocks = len(model.dit.transformer_blocks) + len(model.dit.single_transformer_blocks)
    assert len(rec.calls) >= blocks
    assert all(mask is None for mask, _ in rec.calls)  # no mask: flash / sage kernels can run
    head = model.dit.config.attention_head_dim
    extra = head + gate_channels(x.device)  # g ≠ 1: the gate rides in extra head channels (8 on a GPU, 1 on the CPU)
    expected = {head} if log_gate == 0.0 else {head, extra}
    assert {d for _, d in rec.calls} <= expected and (extra in {d for _, d in rec.calls}) == (log_gate != 0.0)


def test_gate_still_matters_and_gradient_reaches_it_without_the_mask():
    model, state, cond, packed, idx, x = _setup(0.0)
    a = _velocity(model, state, cond, packed, idx, x)
    model.semanticpack.log_gate.data.fill_(-2.0)
    b = _velocity(model, state, cond, packed, idx, x)
    assert not torch.allclose(a, b, atol=1e-4)
    model.semanticpack.log_gate.data.fill_(0.0)
    tokens = model.semanticpack.context_tokens(state.psi)
    v = model.predict_velocity(x, torch.tensor([0.4]), cond, packed, idx, tokens, state.psi_mask, guidance=6.0)
    v.square().mean().backward()
    assert model.semanticpack.log_gate.grad is not None and model.semanticpack.log_gate.grad.abs() > 0


def test_attention_backend_choice_goes_through_diffusers(monkeypatch):
    model, state, cond, packed, idx, x = _setup(-0.5)
    ref = _velocity(model, state, cond, packed, idx, x)
    try:
        set_attention_backend(model.dit, "native")
        procs = [b.attn.processor for b in list(model.dit.transformer_blocks) + list(model.dit.single_transformer_blocks)]
        assert all(p._attention_backend == ad.AttentionBackendName.NATIVE for p in procs)
        assert torch.allclose(_velocity(model, state, cond, packed, idx, x), ref, atol=1e-6)
        with pytest.raises(ValueError, match="attention backend"):
            set_attention_backend(model.dit, "xformers2")
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            with pytest.raises(ValueError, match="'flash' is not usable"):
                set_attention_backend(model.dit, "flash")
    finally:
        model.dit.reset_attention_backend()


def test_attention_backend_availability_names_what_is_missing(monkeypatch):
    from pfvg_core.backbone import ATTENTION_BACKENDS, attention_backend_unavailable

    assert attention_backend_unavailable("native", "cpu") is None
    for name in ("flash", "sage", "cudnn"):
        assert "needs a CUDA GPU" in attention_backend_unavailable(name, "cpu")
    import diffusers.utils as du

    monkeypatch.setattr(du, "is_flash_attn_available", lambda: False)
    monkeypatch.setattr(du, "is_sageattention_available", lambda: True)
    monkeypatch.setattr(du, "is_sageattention_version", lambda op, v: False)  # PyPI's sageattention 1.0.6: too old
    assert "flash-attn package, version ≥ 2.6.3" in attention_backend_unavailable("flash", "cuda")
    assert "sageattention package, version ≥ 2.1.1" in attention_backend_unavailable("sage", "cuda")
    assert attention_backend_unavailable("cudnn", "cuda") is None  # torch's own kernel: no package
    with pytest.raises(ValueError, match="must be one of"):
        attention_backend_unavailable("xformers", "cpu")
    assert ATTENTION_BACKENDS[0] == "native"


def test_cudnn_backend_maps_to_diffusers_native_cudnn():
    model, *_ = _setup(-0.5)
    try:
        set_attention_backend(model.dit, "cudnn")
        procs = [b.attn.processor for b in model.dit.transformer_blocks]
        assert all(p._attention_backend == ad.AttentionBackendName._NATIVE_CUDNN for p in procs)
    finally:  # diffusers also makes the backend its process-wide default: set native back (reset does not)
        set_attention_backend(model.dit, "native")
        model.dit.reset_attention_backend()
    assert ad._AttentionBackendRegistry.get_active_backend()[0] == ad.AttentionBackendName.NATIVE


def test_sage_is_refused_before_the_first_step_when_a_trained_gate_needs_more_head_channels():
    """FramePack-F1's heads are 128 wide; a trained gate (g ≠ 1) adds 8 channels on a GPU: past SageAttention's 128."""
    import math

    from pfvg_core.backbone import CONFIGS
    from pfvg_core.model import PFVGModel
    from pfvg_core.semanticpack import gated_attention_problem

    wide = PFVGModel.build(dict(CONFIGS["tiny"], num_attention_heads=1, attention_head_dim=128, rope_axes_dim=(16, 56, 56)), seed=0)
    assert gated_attention_problem(wide, "sage") is None  # a closed gate: no ψ, the plain path
    with torch.no_grad():
        wide.semanticpack.log_gate.fill_(0.0)
    assert gated_attention_problem(wide, "sage") is None  # g = 1: the plain path of every backend
    with torch.no_grad():
        wide.semanticpack.log_gate.fill_(math.log(0.9))
    why = gated_attention_problem(wide, "sage")
    assert why is not None and "128 + 8 gate channels > 128" in why and "g = 0.900" in why
    assert gated_attention_problem(wide, "flash") is None and gated_attention_problem(wide, "native") is None
    narrow = PFVGModel.build("tiny", seed=0)
    with torch.no_grad():
        narrow.semanticpack.log_gate.fill_(math.log(0.9))
    assert gated_attention_problem(narrow, "sage") is None  # 16 + 8 fits


@pytest.mark.parametrize("log_gate", [-1.3, 0.7])
def test_padded_batch_keeps_the_fused_kernel_and_equals_the_additive_form(log_gate, monkeypatch):
    """Batch 2 with prompts of different lengths (the DiT passes a mask) and padded ψ tokens: the gate rides in
    the head channels and the padding is a boolean mask that needs no gradient, so SDPA keeps its fused kernel.
    Output and the gate's gradient equal the additive-mask form (log g in a float mask, which trains)."""
    model = PFVGModel.build("tiny", seed=0)
    model.semanticpack.open_gate(log_gate)
    model.refresh_id()
    start = torch.randn(2, 4, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    cond = model.conditioning(["a red square", "a blue circle moving left on a long sandy road"], start)
    state = init_state(model, start, cond)
    assert state.psi_mask is not None and not bool(state.psi_mask.all())
    packed = pack_history(state.history, state.start_latent, state.config.schedule)
    idx = time_indices("video", packed, state.next_index, state.config.window)
    x = torch.randn(2, 4, 9, 16, 16, generator=torch.Generator().manual_seed(6))

    def run(force_mask):
        model.injector.force_mask = force_mask
        model.semanticpack.log_gate.grad = None
        try:
            tokens = model.semanticpack.context_tokens(state.psi.detach())
            v = model.predict_velocity(x, torch.tensor([0.4, 0.7]), cond, packed, idx, tokens, state.psi_mask, guidance=6.0)
            v.square().mean().backward()
            return v.detach(), model.semanticpack.log_gate.grad.clone()
        finally:
            model.injector.force_mask = False

    ref, ref_grad = run(True)
    rec = _Recorder(monkeypatch)
    out, grad = run(False)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    assert torch.allclose(grad, ref_grad, atol=1e-5, rtol=1e-4), (grad, ref_grad)
    masks = [m for m, _ in rec.calls if m is not None]
    assert masks and all(m.dtype == torch.bool and not m.requires_grad for m in masks)
