"""LoRA in every published key layout on a tiny DiT: each layer changes by the low-rank update
s·(α/r)·B·A·x; strength 0 leaves the output unchanged; chained LoRAs add up."""
import pytest
import torch
from safetensors.torch import save_file

from pfvg_core.checkpoint import CheckpointError
from pfvg_core.lora import load_lora, lora_scope, parse_lora_arg, with_loras
from pfvg_core.model import PFVGModel

R = 2


@pytest.fixture(scope="module")
def model():
    return PFVGModel.build("tiny", seed=0)


def _pair(out, inp, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(R, inp, generator=g) * 0.3, torch.randn(out, R, generator=g) * 0.3


def _layer_out(model, name, x):
    return dict(model.dit.named_modules())[name](x)


def _check_delta(model, lora_path, expected: dict, strength=1.0):
    """expected: module name → ΔW [out, in] at strength 1."""
    lora = load_lora(str(lora_path), model.dit)
    assert set(lora.layers) == set(expected)
    x = torch.randn(3, 256)
    base = {n: _layer_out(model, n, x[:, : dict(model.dit.named_modules())[n].in_features]) for n in expected}
    with lora_scope(model.dit, ((lora, strength),)):
        for n, dw in expected.items():
            xi = x[:, : dw.shape[1]]
            got = _layer_out(model, n, xi) - base[n]
            torch.testing.assert_close(got, strength * xi @ dw.T, atol=1e-5, rtol=1e-4)
    for n in expected:  # outside the scope: exactly as before
        assert torch.equal(_layer_out(model, n, x[:, : expected[n].shape[1]]), base[n])
    return lora


def test_diffusers_layout(model, tmp_path):
    a, b = _pair(32, 32, 1)
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": a,
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": b}, tmp_path / "d.safetensors")
    lora = _check_delta(model, tmp_path / "d.safetensors", {"transformer_blocks.0.attn.to_q": b @ a}, strength=0.7)
    assert lora.layout == "diffusers"


def test_kohya_musubi_framepack_layout_with_alpha(model, tmp_path):
    a, b = _pair(64, 32, 2)  # single block proj_mlp: 32 → 64
    a2, b2 = _pair(32, 64, 3)  # ff.net.2: 64 → 32
    save_file({"lora_unet_single_transformer_blocks_0_proj_mlp.lora_down.weight": a,
               "lora_unet_single_transformer_blocks_0_proj_mlp.lora_up.weight": b,
               "lora_unet_single_transformer_blocks_0_proj_mlp.alpha": torch.tensor(1.0),
               "lora_unet_transformer_blocks_0_ff_net_2.lora_down.weight": a2,
               "lora_unet_transformer_blocks_0_ff_net_2.lora_up.weight": b2}, tmp_path / "k.safetensors")
    lora = _check_delta(model, tmp_path / "k.safetensors", {"single_transformer_blocks.0.proj_mlp": (1.0 / R) * b @ a,
                                                            "transformer_blocks.0.ff.net.2": b2 @ a2})
    assert lora.layout == "kohya"


def test_original_hunyuan_layout_comfyui_names(model, tmp_path):
    """ComfyUI's HunyuanVideo names: fused qkv (diffusers' converter splits it) and the single block's
    linear1 (q, k, v and the MLP in one matrix, split with this DiT's width)."""
    a, b = _pair(96, 32, 4)  # img_attn_qkv: 32 → 3·32
    a1, b1 = _pair(3 * 32 + 64, 32, 5)  # linear1: 32 → 3·32 + mlp 64
    save_file({"diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight": a,
               "diffusion_model.double_blocks.0.img_attn_qkv.lora_B.weight": b,
               "diffusion_model.single_blocks.0.linear1.lora_A.weight": a1,
               "diffusion_model.single_blocks.0.linear1.lora_B.weight": b1}, tmp_path / "o.safetensors")
    dw, dw1 = b @ a, b1 @ a1
    lora = _check_delta(model, tmp_path / "o.safetensors", {
        "transformer_blocks.0.attn.to_q": dw[:32], "transformer_blocks.0.attn.to_k": dw[32:64],
        "transformer_blocks.0.attn.to_v": dw[64:],
        "single_transformer_blocks.0.attn.to_q": dw1[:32], "single_transformer_blocks.0.attn.to_k": dw1[32:64],
        "single_transformer_blocks.0.attn.to_v": dw1[64:96], "single_transformer_blocks.0.proj_mlp": dw1[96:]})
    assert lora.layout == "hunyuan-original"


def test_original_hunyuan_layout_musubi_names(model, tmp_path):
    a, b = _pair(32, 32, 6)
    a2, b2 = _pair(32, 64, 7)
    save_file({"lora_unet_double_blocks_0_txt_attn_proj.lora_down.weight": a,
               "lora_unet_double_blocks_0_txt_attn_proj.lora_up.weight": b,
               "lora_unet_double_blocks_0_txt_attn_proj.alpha": torch.tensor(4.0),
               "lora_unet_double_blocks_0_img_mlp_fc2.lora_down.weight": a2,
               "lora_unet_double_blocks_0_img_mlp_fc2.lora_up.weight": b2}, tmp_path / "m.safetensors")
    _check_delta(model, tmp_path / "m.safetensors", {"transformer_blocks.0.attn.to_add_out": (4.0 / R) * b @ a,
                                                     "transformer_blocks.0.ff.net.2": b2 @ a2})


def _velocity(model):
    from pfvg_core.loop import segment_context
    from pfvg_core.state import init_state

    torch.manual_seed(0)
    start = torch.randn(1, 4, 1, 8, 8)
    cond = model.conditioning("a cat", start)
    state = init_state(model, start, cond, seed=0)
    ctx = segment_context(model, state)
    x = torch.randn(1, 4, 9, 8, 8)
    return model.predict_velocity(x, torch.full((1,), 0.5), cond, ctx.packed, ctx.indices, ctx.psi_tokens, ctx.psi_mask, 10.0)


def test_whole_dit_strength_zero_unchanged_and_chained_loras_add(tmp_path):
    model = PFVGModel.build("tiny", seed=0)
    a, b = _pair(32, 32, 8)
    a2, b2 = _pair(32, 32, 9)
    save_file({"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight": a,
               "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight": b}, tmp_path / "1.safetensors")
    save_file({"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight": a2,
               "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight": b2}, tmp_path / "2.safetensors")
    l1, l2 = load_lora(str(tmp_path / "1.safetensors"), model.dit), load_lora(str(tmp_path / "2.safetensors"), model.dit)
    base_id = model.model_id
    v0 = _velocity(model)
    assert with_loras(model, [(l1, 0.0)]) is model  # strength 0: the same model
    lm = with_loras(model, [(l1, 1.0), (l2, 0.5)])
    v12 = _velocity(lm)
    assert lm.model_id != base_id and model.model_id == base_id  # states made without the LoRAs are refused
    assert torch.equal(_velocity(model), v0)  # the base model (shared modules) is unchanged
    assert torch.equal(_velocity(with_loras(with_loras(model, [(l1, 1.0)]), [(l2, 0.5)])), v12)  # chained nodes
    # the same update merged into the weight: chained = the sum of the deltas
    lin = model.dit.single_transformer_blocks[0].attn.to_v
    w = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight += b @ a + 0.5 * (b2 @ a2)
    v_merged = _velocity(model)
    with torch.no_grad():
        lin.weight.copy_(w)
    assert not torch.allclose(v12, v0, atol=1e-4)
    torch.testing.assert_close(v12, v_merged, atol=1e-5, rtol=1e-4)


def test_clear_errors(model, tmp_path):
    a, b = _pair(32, 32, 10)
    save_file({"transformer.transformer_blocks.7.attn.to_q.lora_A.weight": a,
               "transformer.transformer_blocks.7.attn.to_q.lora_B.weight": b}, tmp_path / "deep.safetensors")
    with pytest.raises(CheckpointError, match=r"deep.safetensors.*match no linear layer.*transformer_blocks.7.attn.to_q"):
        load_lora(str(tmp_path / "deep.safetensors"), model.dit)
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": a,
               "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": torch.randn(48, R)}, tmp_path / "shape.safetensors")
    with pytest.raises(CheckpointError, match="does not fit the weight"):
        load_lora(str(tmp_path / "shape.safetensors"), model.dit)
    save_file({"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": a}, tmp_path / "half.safetensors")
    with pytest.raises(CheckpointError, match="both the down"):
        load_lora(str(tmp_path / "half.safetensors"), model.dit)
    save_file({"lora_unet_nothing_here.lora_down.weight": a, "lora_unet_nothing_here.lora_up.weight": b},
              tmp_path / "k.safetensors")
    with pytest.raises(CheckpointError, match="lora_unet_nothing_here"):
        load_lora(str(tmp_path / "k.safetensors"), model.dit)
    save_file({"transformer.transformer_blocks.0.attn.to_q.dora_scale": a}, tmp_path / "dora.safetensors")
    with pytest.raises(CheckpointError, match="DoRA"):
        load_lora(str(tmp_path / "dora.safetensors"), model.dit)
    (tmp_path / "x.pt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="safetensors"):
        load_lora(str(tmp_path / "x.pt"), model.dit)


def test_parse_lora_arg():
    assert parse_lora_arg("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_lora_arg("dir/a.safetensors:0.5") == ("dir/a.safetensors", 0.5)
    assert parse_lora_arg("C:/x/a.safetensors:-1") == ("C:/x/a.safetensors", -1.0)
    with pytest.raises(ValueError, match="strength"):
        parse_lora_arg("a.safetensors:nan")
