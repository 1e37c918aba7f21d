import torch
from torch.utils.flop_counter import FlopCounterMode

from pfvg_core.framepack import pack_history
from pfvg_core.model import PFVGModel
from pfvg_core.rope import time_indices
from pfvg_core.state import init_state, step


def _velocity(model, state, cond, x, psi=True):
    packed = pack_history(state.history, state.start_latent, state.config.schedule)
    idx = time_indices(state.config.rope, packed, state.next_index, state.config.window)
    tokens = model.semanticpack.context_tokens(state.psi) if (psi and model.semanticpack is not None) else None
    return model.predict_velocity(x, torch.tensor([0.3]), cond, packed, idx, tokens, state.psi_mask, guidance=6.0)


def _pair(seed=0):
    """The same DiT weights with and without a SemanticPack."""
    with_sp = PFVGModel.build("tiny", seed=seed)
    plain = PFVGModel.build("tiny", semanticpack=False, seed=seed)
    plain.dit.load_state_dict(with_sp.dit.state_dict())
    plain.text_encoder.load_state_dict(with_sp.text_encoder.state_dict())
    plain.image_encoder.load_state_dict(with_sp.image_encoder.state_dict())
    return with_sp, plain


def test_untrained_semanticpack_leaves_the_dit_output_exactly_unchanged(start_latent):
    with_sp, plain = _pair()
    assert not with_sp.semanticpack.gate_open
    cond = with_sp.conditioning("a blue circle", start_latent)
    s_sp = init_state(with_sp, start_latent, cond)
    s_plain = init_state(plain, start_latent, cond, config=s_sp.config.__class__(memory_mode="off"))
    x = torch.randn(1, 4, 9, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = _velocity(with_sp, s_sp, cond, x)
        b = _velocity(plain, s_plain, cond, x)
    assert s_sp.psi is not None and s_sp.psi.abs().sum() > 0  # ψ₀ is real, only the gate is closed
    assert torch.equal(a, b)


def test_open_gate_injects_psi_and_gradients_reach_semanticpack(start_latent):
    model, _ = _pair()
    cond = model.conditioning("a blue circle", start_latent)
    state = init_state(model, start_latent, cond)
    x = torch.randn(1, 4, 9, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        closed = _velocity(model, state, cond, x)
    model.semanticpack.open_gate(0.0)
    model.refresh_id()
    state = init_state(model, start_latent, cond)
    psi, mask = model.semanticpack.init_memory(cond.prompt_embeds, cond.image_embeds, cond.prompt_mask)
    state = state.replace(psi=psi, psi_mask=mask)  # ψ₀ with its graph
    opened = _velocity(model, state, cond, x)
    assert not torch.allclose(opened.detach(), closed, atol=1e-5)
    opened.square().mean().backward()
    sp = model.semanticpack
    for p in (sp.log_gate, sp.out_proj.weight, sp.text_proj.weight, sp.image_proj.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_psi_tokens_survive_batch1_truncation():
    """Tokens go before the text: at batch 1 diffusers keeps only the first mask.sum() context tokens."""
    model, _ = _pair()
    model.semanticpack.open_gate(0.0)
    seen = {}

    def record(mod, args):
        seen["ctx"] = args[1].shape[1]

    hook = model.dit.transformer_blocks[0].register_forward_pre_hook(record)
    start = torch.randn(1, 4, 1, 16, 16)
    cond = model.conditioning("abc", start)  # 3 real text tokens of 77
    state = init_state(model, start, cond)
    with torch.no_grad():
        _velocity(model, state, cond, torch.randn(1, 4, 9, 16, 16))
    hook.remove()
    n_img = cond.image_embeds.shape[1]
    # ψ₀'s padded prompt tokens are dropped at batch 1 (the same as −∞ logits, and no mask needed)
    assert state.memory_tokens == n_img + 77
    assert seen["ctx"] == n_img + (n_img + 3) + 3


def test_psi0_is_prompt_and_image_tokens_and_zero_option(start_latent, tiny_model):
    cond = tiny_model.conditioning("red", start_latent)
    sp = tiny_model.semanticpack
    psi, mask = sp.init_memory(cond.prompt_embeds, cond.image_embeds, cond.prompt_mask)
    assert psi.shape[1] == cond.prompt_embeds.shape[1] + cond.image_embeds.shape[1]
    assert mask.sum() == cond.prompt_mask.sum() + cond.image_embeds.shape[1]
    z, _ = sp.init_memory(cond.prompt_embeds, cond.image_embeds, cond.prompt_mask, zero=True)
    assert z.shape == psi.shape and z.abs().sum() == 0


def test_psi_update_cost_does_not_depend_on_how_many_segments_came_before(start_latent, tiny_model):
    cond = tiny_model.conditioning("red", start_latent)
    state = init_state(tiny_model, start_latent, cond)
    g = torch.Generator().manual_seed(0)
    seg = lambda: torch.randn(1, 4, 9, 16, 16, generator=g)  # noqa: E731
    flops = {}
    for n in range(1, 31):
        state = step(tiny_model, state, seg())
        if n in (1, 2, 30):
            with FlopCounterMode(display=False) as fc:
                tiny_model.semanticpack.update(state.psi, seg(), state.psi_mask)
            flops[n] = fc.get_total_flops()
    assert flops[1] > 0 and flops[1] == flops[2] == flops[30]
    assert state.memory_tokens == tiny_model.semanticpack.config.memory_tokens


def test_memorize_handles_sizes_that_do_not_fill_a_window(tiny_model):
    out = tiny_model.semanticpack.memorize(torch.randn(2, 4, 3, 10, 6))
    assert out.shape == (2, tiny_model.semanticpack.config.memory_tokens, tiny_model.semanticpack.config.dim)
    assert torch.isfinite(out).all()
