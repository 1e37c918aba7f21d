"""Gradient checkpointing that keeps ψ (gradients equal with and without it; saved
activations bounded), trainable weights in fp32 over a bf16 / fp8 frozen base, whole-net stages skipped for a
full-size DiT in one process."""
from __future__ import annotations

import pytest
import torch

from pfvg_core.framepack import Schedule
from pfvg_core.loop import segment_context, velocity
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryConfig, init_state
from pfvg_core.train import TrainConfig, _skip_whole_net_stages, paper_stages, select_parameters, trainable_in_fp32

def _model(layers: int = 1, single: int = 1, seed: int = 0) -> PFVGModel:
    from pfvg_core.backbone import CONFIGS

    cfg = dict(CONFIGS["tiny"], num_layers=layers, num_single_layers=single)
    m = PFVGModel.build(cfg, seed=seed)
    m.semanticpack.open_gate(-0.5)  # g ≠ 1: the gated path (extra head channels) must survive the recomputation
    return m


def _loss(model: PFVGModel, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(1, 4, 1, 8, 8, generator=g)
    cond = model.conditioning("a red ball", start)
    state = init_state(model, start, cond, config=MemoryConfig(window=3, schedule=Schedule.parse("td_f16k4f2k2f1k1")), grad=True)
    ctx = segment_context(model, state)
    x = torch.randn(1, 4, 3, 8, 8, generator=g)
    t = torch.tensor([0.4])
    return velocity(model, ctx, x, t, cond, 10.0).square().mean()


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("params", ["last-layers+semanticpack", "all"])
def test_gradients_equal_with_and_without_checkpointing(params):
    ref, ck = _model(), _model()
    ck.set_gradient_checkpointing(True)
    assert ck.dit.gradient_checkpointing and not ref.dit.gradient_checkpointing
    for m in (ref, ck):
        m.train()
        select_parameters(m, params)
        _loss(m).backward()
    a, b = _grads(ref), _grads(ck)
    assert set(a) == set(b) and any(k.startswith("semanticpack.") for k in a)
    assert "semanticpack.log_gate" in a and a["semanticpack.log_gate"].abs() > 0  # the gate's gradient flows through ψ
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


def test_checkpointing_without_the_restored_state_would_differ():
    """The fix matters: diffusers' plain checkpoint recomputes after ``inject`` exited (ungated path) and fails."""
    m = _model()
    m.train()
    select_parameters(m, "last-layers+semanticpack")
    m.dit.enable_gradient_checkpointing()  # diffusers' default function, no ψ state restored
    with pytest.raises(Exception, match="[Rr]ecomputed|metadata|checkpoint"):
        _loss(m).backward()


def _saved_bytes(model) -> int:
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _loss(model)
    loss.backward()
    return total[0]


def test_saved_activations_stay_bounded_with_checkpointing():
    """With checkpointing a block keeps only its inputs until the backward pass: saved bytes grow by far less per
    block than without it, and a 6-block DiT saves less than a 2-block one does without checkpointing."""
    sizes = {}
    for blocks in (1, 3):
        for on in (False, True):
            m = _model(layers=blocks, single=blocks)
            m.train()
            select_parameters(m, "last-layers+semanticpack")
            m.set_gradient_checkpointing(on)
            sizes[blocks, on] = _saved_bytes(m)
    per_block_plain = (sizes[3, False] - sizes[1, False]) / 4
    per_block_ckpt = (sizes[3, True] - sizes[1, True]) / 4
    assert per_block_ckpt < 0.25 * per_block_plain
    assert sizes[3, True] < sizes[1, False]


def test_trainable_weights_fp32_over_a_bf16_base_and_one_step_runs():
    m = _model().to(torch.bfloat16)
    m.train()
    params = select_parameters(m, "last-layers+semanticpack")
    trainable_in_fp32(m, params)
    assert all(p.dtype == torch.float32 for p in params)
    frozen = [p for p in m.dit.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    m.set_gradient_checkpointing(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(m)
    loss.backward()
    assert torch.isfinite(loss)
    got = [p for p in params if p.grad is not None]
    assert m.dit.proj_out.weight.grad is not None and m.semanticpack.log_gate.grad is not None
    assert all(p.grad.dtype == torch.float32 for p in got)  # (Memorize/Squeeze get theirs once ψ is updated)


def test_trainable_layer_leaves_fp8_layerwise_casting():
    from pfvg_core.backbone import place_dit

    m = _model()
    place_dit(m.dit, "cpu", torch.float32, torch.float8_e4m3fn)
    q = m.dit.transformer_blocks[0].attn.to_q
    assert q.weight.dtype == torch.float8_e4m3fn and m.dit.proj_out.weight.dtype == torch.float32  # diffusers keeps proj_out
    select_parameters(m, "last-layers+semanticpack")
    q.weight.requires_grad_(True)
    trainable_in_fp32(m, [q.weight])
    assert q.weight.dtype == torch.float32
    m.train()
    _loss(m).backward()  # the casting hook would have stored to_q back in fp8 after the forward
    assert q.weight.dtype == torch.float32 and q.weight.grad is not None
    assert m.dit.transformer_blocks[0].attn.to_k.weight.dtype == torch.float8_e4m3fn  # the frozen base stays fp8


def test_whole_net_stages_are_skipped_for_a_full_size_dit_in_one_process(capsys):
    cfg = TrainConfig(stages=paper_stages(3, 2))
    with pytest.warns(UserWarning, match="206 GB"):
        out = _skip_whole_net_stages(cfg, full_size=True, world=1)
    assert [s.name for s in out.stages] == ["stage2-direct"] and "torchrun" in capsys.readouterr().out
    assert _skip_whole_net_stages(cfg, full_size=False, world=1).stages == cfg.stages  # small models: as configured
    assert _skip_whole_net_stages(cfg, full_size=True, world=8).stages == cfg.stages  # several processes: run it
    on = TrainConfig(stages=paper_stages(3, 2), whole_net_stages="on")
    assert _skip_whole_net_stages(on, full_size=True, world=1).stages == on.stages
    with pytest.raises(ValueError, match="no other stage"):
        _skip_whole_net_stages(TrainConfig(stages=paper_stages(3, 2)[:1]), full_size=True, world=1)


def test_memory_plans_set_the_options():
    c80 = TrainConfig(plan="80gb")
    assert (c80.base_dtype, c80.base_storage, c80.offload, c80.gradient_checkpointing) == ("bfloat16", "compute", "none", "on")
    c24 = TrainConfig(plan="24gb")
    assert (c24.base_storage, c24.offload) == ("fp8_e4m3fn", "group")
    with pytest.raises(ValueError, match="plan must be one of"):
        TrainConfig(plan="12gb")
    with pytest.raises(ValueError, match="base_storage must be one of"):
        TrainConfig(base_storage="int4")
    with pytest.raises(ValueError, match="plan '24gb' sets gradient_checkpointing"):
        TrainConfig(plan="24gb", gradient_checkpointing="off")


def test_block_offload_keeps_a_block_until_its_backward_and_gradients_are_unchanged():
    """The 24 GB plan's block offload (offload.py): a block is brought in for its forward and sent out after it,
    brought in again by its recomputation and sent out only once its backward is over; the gradients are the same."""
    from pfvg_core.offload import BlockOffload

    ref, off = _model(layers=2, single=1), _model(layers=2, single=1)
    for m in (ref, off):
        m.train()
        select_parameters(m, "last-layers+semanticpack")
        m.set_gradient_checkpointing(True)
    bo = BlockOffload(off.dit, torch.device("cpu"))
    _loss(ref).backward()
    _loss(off).backward()
    a, b = _grads(ref), _grads(off)
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    n = len(bo.blocks)
    fwd, bwd = bo.events[: 2 * n], bo.events[2 * n:]
    assert fwd == [e for i in range(n) for e in (("on", i), ("off", i))]  # forward: one block in at a time
    # backward, last block first: its recomputation brings it in, and it leaves only after its backward
    assert [e for e in bwd if e[0] == "on"] == [("on", i) for i in reversed(range(n))]
    for i in range(n):
        assert bwd.index(("on", i)) < bwd.index(("off", i))
    on, most = set(), 0  # at most two blocks on the device at once (one finishing its backward, the next recomputed)
    for kind, i in bo.events:
        (on.add if kind == "on" else on.discard)(i)
        most = max(most, len(on))
    assert most <= 2 and not on
    assert not bo._keep  # nothing left on the device
    m = _model()
    select_parameters(m, "all")
    with pytest.raises(ValueError, match="frozen blocks only"):
        BlockOffload(m.dit, torch.device("cpu")).check_frozen()
