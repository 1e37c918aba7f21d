import torch

from pfvg_core.backbone import CONFIGS, build_dit, count_parameters, load_dit, save_dit
from pfvg_core.framepack import History, pack_history
from pfvg_core.rope import time_indices


def _dit_inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = cfg["in_channels"]
    hist = History(torch.randn(1, c, 19, 16, 16, generator=g), torch.arange(0, 19))
    packed = pack_history(hist, torch.randn(1, c, 1, 16, 16, generator=g))
    idx = time_indices("video", packed, 19, 3)
    return dict(
        hidden_states=torch.randn(1, c, 3, 16, 16, generator=g), timestep=torch.tensor([700.0]),
        encoder_hidden_states=torch.randn(1, 5, cfg["text_embed_dim"], generator=g),
        encoder_attention_mask=torch.ones(1, 5, dtype=torch.long),
        pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], generator=g),
        image_embeds=torch.randn(1, 4, cfg["image_proj_dim"], generator=g), guidance=torch.tensor([10000.0]),
        indices_latents=idx.latents, latents_clean=packed.clean.latents, indices_latents_clean=idx.clean,
        latents_history_2x=packed.history_2x.latents, indices_latents_history_2x=idx.history_2x,
        latents_history_4x=packed.history_4x.latents, indices_latents_history_4x=idx.history_4x, return_dict=False,
    )


def test_hunyuan_f1_config_on_meta_has_expected_size_and_keys():
    m = build_dit("hunyuan-f1", device="meta")
    n = count_parameters(m)
    assert 12.8e9 < n < 13.0e9, n  # FramePack-F1: ~12.9 B
    keys = set(m.state_dict())
    for k in ["x_embedder.proj.weight", "clean_x_embedder.proj.weight", "clean_x_embedder.proj_2x.weight",
              "clean_x_embedder.proj_4x.weight", "image_projection.up.weight", "image_projection.down.weight",
              "context_embedder.token_refiner.refiner_blocks.1.attn.to_q.weight",
              "transformer_blocks.19.attn.add_q_proj.weight", "single_transformer_blocks.39.proj_mlp.weight",
              "norm_out.linear.weight", "proj_out.weight", "time_text_embed.guidance_embedder.linear_1.weight"]:
        assert k in keys, k
    assert "transformer_blocks.20.attn.to_q.weight" not in keys
    assert "single_transformer_blocks.40.proj_mlp.weight" not in keys
    assert m.state_dict()["clean_x_embedder.proj_4x.weight"].shape == (3072, 16, 4, 8, 8)
    assert m.state_dict()["image_projection.up.weight"].shape == (3072 * 3, 1152)


def test_tiny_saved_and_reloaded_both_ways_gives_identical_outputs(tmp_path):
    m = build_dit("tiny", seed=3)
    inputs = _dit_inputs(CONFIGS["tiny"])
    with torch.no_grad():
        ref = m(**inputs)[0]
        # diffusers folder layout (as the published FramePack-F1 folders)
        m.save_pretrained(tmp_path / "folder", safe_serialization=True)
        a = load_dit(str(tmp_path / "folder"))(**inputs)[0]
        # single .safetensors with the same key names (config beside it, or given)
        save_dit(m, str(tmp_path / "single.safetensors"))
        b = load_dit(str(tmp_path / "single.safetensors"))(**inputs)[0]
        (tmp_path / "single.json").unlink()
        c = load_dit(str(tmp_path / "single.safetensors"), config="tiny")(**inputs)[0]
    assert torch.equal(ref, a) and torch.equal(ref, b) and torch.equal(ref, c)


def test_different_weights_give_different_outputs():
    inputs = _dit_inputs(CONFIGS["tiny"])
    with torch.no_grad():
        assert not torch.equal(build_dit("tiny", seed=1)(**inputs)[0], build_dit("tiny", seed=2)(**inputs)[0])
