"""The packed DiT backbone: FramePack-F1 on HunyuanVideo (FramePack §3, PFVG §4.1).

We use diffusers' ``HunyuanVideoFramepackTransformer3DModel`` as it is; this module only names
configurations and loads weights from local files (a diffusers folder, or one ``.safetensors``
file with the same key names).
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from diffusers import HunyuanVideoFramepackTransformer3DModel

from .checkpoint import CheckpointError, load_state_dict_checked

# Named configurations. ``hunyuan-f1`` is the published FramePack-F1 transformer (~12.9 B params).
CONFIGS: dict[str, dict[str, Any]] = {
    "hunyuan-f1": dict(
        in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
        num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0,
        patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
        text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
        rope_axes_dim=(16, 56, 56), has_image_proj=True, image_proj_dim=1152,
        has_clean_x_embedder=True,
    ),
    # Tests: same architecture, every dimension tiny.
    "tiny": dict(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16,
        num_layers=1, num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0,
        patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
        text_embed_dim=32, pooled_projection_dim=16, rope_theta=256.0,
        rope_axes_dim=(4, 6, 6), has_image_proj=True, image_proj_dim=16,
        has_clean_x_embedder=True,
    ),
    # The embedded default model (trained on the procedural world, shipped in the package).
    "embedded": dict(
        in_channels=4, out_channels=4, num_attention_heads=4, attention_head_dim=32,
        num_layers=2, num_single_layers=2, num_refiner_layers=1, mlp_ratio=4.0,
        patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
        text_embed_dim=64, pooled_projection_dim=32, rope_theta=256.0,
        rope_axes_dim=(8, 12, 12), has_image_proj=True, image_proj_dim=64,
        has_clean_x_embedder=True,
    ),
    # Benchmarks on CPU: a few blocks, wider.
    "small": dict(
        in_channels=8, out_channels=8, num_attention_heads=4, attention_head_dim=32,
        num_layers=2, num_single_layers=2, num_refiner_layers=1, mlp_ratio=4.0,
        patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
        text_embed_dim=64, pooled_projection_dim=32, rope_theta=256.0,
        rope_axes_dim=(8, 12, 12), has_image_proj=True, image_proj_dim=32,
        has_clean_x_embedder=True,
    ),
}

DiT = HunyuanVideoFramepackTransformer3DModel


def dit_config(name_or_config: str | dict[str, Any]) -> dict[str, Any]:
    """Resolve a config name (``tiny``, ``small``, ``hunyuan-f1``) or pass a dict through, checked."""
    if isinstance(name_or_config, str):
        if name_or_config not in CONFIGS:
            raise ValueError(f"unknown DiT config {name_or_config!r}; expected one of {sorted(CONFIGS)}")
        cfg = dict(CONFIGS[name_or_config])
    else:
        cfg = {k: v for k, v in dict(name_or_config).items() if not k.startswith("_")}
    if not cfg.get("has_clean_x_embedder") or not cfg.get("has_image_proj"):
        raise ValueError("the packed DiT needs has_clean_x_embedder=True and has_image_proj=True (FramePack-F1 layout)")
    heads_dim = cfg["attention_head_dim"]
    if sum(cfg["rope_axes_dim"]) != heads_dim:
        raise ValueError(f"rope_axes_dim {cfg['rope_axes_dim']} must sum to attention_head_dim {heads_dim}")
    cfg["rope_axes_dim"] = tuple(cfg["rope_axes_dim"])
    return cfg


def build_dit(config: str | dict[str, Any], device: str | torch.device = "cpu", dtype=torch.float32, seed: int | None = 0) -> DiT:
    """Build a randomly initialised packed DiT (``device='meta'`` builds the shape only)."""
    cfg = dit_config(config)
    if str(device) == "meta":
        with torch.device("meta"):
            return DiT.from_config(cfg)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DiT.from_config(cfg)
    else:
        model = DiT.from_config(cfg)
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    return model.to(device=device).eval()


def load_dit(path: str, config: str | dict[str, Any] | None = None, dtype=torch.float32, device="cpu") -> DiT:
    """Load a packed DiT from local weights.

    - a diffusers folder (``config.json`` + ``diffusion_pytorch_model*.safetensors``, the layout of the
      published FramePack-F1 folders): ``from_pretrained``;
    - a single ``.safetensors`` file with the same key names: ``from_config`` + strict ``load_state_dict``
      (``config`` names the architecture; default ``hunyuan-f1``).
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or folder (expected a diffusers folder or a .safetensors file)")
    if os.path.isdir(path):
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"{path}: not a diffusers model folder (no config.json)")
        try:
            model = DiT.from_pretrained(path, torch_dtype=dtype, use_safetensors=True, local_files_only=True)
        except Exception as e:  # diffusers raises many kinds; name the folder
            raise CheckpointError(f"{path}: could not load the packed DiT: {e}") from e
        return model.to(device).eval()
    if not path.endswith(".safetensors"):
        raise CheckpointError(f"{path}: expected a .safetensors file (pickled checkpoints are not loaded)")
    cfg = dit_config(config or _config_beside(path) or "hunyuan-f1")
    with torch.device("meta"):
        model = DiT.from_config(cfg)
    state = load_state_dict_checked(path, model, what="packed DiT", dtype=dtype)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def _config_beside(path: str) -> dict | None:
    """A ``<name>.json`` next to ``<name>.safetensors`` holds its config, if present."""
    side = path[: -len(".safetensors")] + ".json"
    if os.path.isfile(side):
        with open(side) as f:
            data = json.load(f)
        return data.get("dit", data)
    return None


def save_dit(model: DiT, path: str) -> None:
    """Save as a single ``.safetensors`` file plus ``<name>.json`` with the config."""
    from .checkpoint import save_safetensors_atomic

    save_safetensors_atomic({k: v for k, v in model.state_dict().items()}, path)
    from .atomic import write_json

    write_json(path[: -len(".safetensors")] + ".json", {"dit": _plain_config(model)}, indent=1)


def _plain_config(model: DiT) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.config).items() if not k.startswith("_")}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
