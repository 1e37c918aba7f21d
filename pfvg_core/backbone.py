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

from .checkpoint import CheckpointError

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


# --- devices, dtypes and storage -------------------------------------------------------------
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
STORAGE = ("auto", "compute", *FP8)  # auto: fp8 files stay fp8, others load in the compute dtype
OFFLOAD = ("none", "group")
# Keys of single files saved by other tools carry a prefix (ComfyUI's checkpoint layout).
_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available in this torch ({torch.__version__}); use --device cpu")
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Compute dtype: ``float32``/``fp32``, ``bfloat16``/``bf16``, ``float16``/``fp16`` (or a torch dtype)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"compute dtype must be one of float32, bfloat16, float16, got {dtype}")
        return dtype
    key = str(dtype).strip().lower().replace("torch.", "")
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[key]


def resolve_storage(storage: str | torch.dtype | None, file_dtype: torch.dtype | None = None) -> torch.dtype | None:
    """Storage dtype of the big matmul weights: None = the compute dtype; an fp8 dtype = layerwise casting.
    ``auto`` keeps an fp8 file's own fp8 type (``file_dtype``), otherwise the compute dtype."""
    if storage is None or storage == "compute":
        return None
    if isinstance(storage, torch.dtype):
        if storage not in FP8.values():
            raise ValueError(f"storage dtype must be one of {list(FP8)}, got {storage}")
        return storage
    if storage == "auto":
        return file_dtype if file_dtype in FP8.values() else None
    if storage not in FP8:
        raise ValueError(f"storage must be one of {STORAGE}, got {storage!r}")
    return FP8[storage]


ATTENTION_BACKENDS = ("native", "flash", "sage", "cudnn")  # diffusers' attention backends offered to users
# our name → diffusers' backend name; the packages each needs (diffusers' own minimum versions)
_DIFFUSERS_ATTENTION = {"native": "native", "flash": "flash", "sage": "sage", "cudnn": "_native_cudnn"}
ATTENTION_PACKAGES = {"flash": ("flash-attn", "2.6.3"), "sage": ("sageattention", "2.1.1")}


def attention_backend_unavailable(backend: str, device: torch.device | str) -> str | None:
    """Why ``backend`` cannot run on ``device`` (naming the package and version it needs), or None."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    if backend == "native":
        return None
    if torch.device(device).type != "cuda":
        return f"attention backend {backend!r} needs a CUDA GPU (the model is on {torch.device(device).type})"
    if backend in ATTENTION_PACKAGES:
        from diffusers.utils import (is_flash_attn_available, is_flash_attn_version, is_sageattention_available,
                                     is_sageattention_version)

        package, version = ATTENTION_PACKAGES[backend]
        available, at_least = ((is_flash_attn_available, is_flash_attn_version) if backend == "flash"
                               else (is_sageattention_available, is_sageattention_version))
        if not available() or not at_least(">=", version):
            return f"attention backend {backend!r} needs the {package} package, version ≥ {version} (diffusers' minimum)"
    return None


def set_attention_backend(model: DiT, backend: str = "native") -> None:
    """Choose the attention kernels through diffusers' attention dispatcher: ``native`` (torch SDPA,
    which picks its own kernel), ``cudnn`` (torch SDPA forced to cuDNN's fused attention), ``flash``
    (flash-attn) or ``sage`` (sageattention, 8-bit QK), when installed; ψ's gate never needs a mask
    at batch 1, so every backend applies (``semanticpack._GatedMemoryAttnProcessor``). diffusers also makes
    the backend its process-wide default (for processors with none set): choose ``native`` to go back."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {backend!r}")
    try:
        model.set_attention_backend(_DIFFUSERS_ATTENTION[backend])
    except (RuntimeError, ImportError) as e:
        raise ValueError(f"attention backend {backend!r} is not usable here: {e}".splitlines()[0]) from e


def execution_device(model: torch.nn.Module) -> torch.device:
    """Where the DiT computes, derived each time from where its weights are — never a cached copy, so it stays
    right whoever moves them (ComfyUI's ``ModelPatcher.load`` moving modules one by one, ``.to``, FSDP):

    - diffusers' group offload: its onload device (the weights rest on the offload device between blocks);
    - a training offloader (``offload.BlockOffload``, FSDP's CPU offload): the device it computes on, which it
      owns (``_pfvg_onload_device``);
    - otherwise the device of the weights. Weights spread over several devices (a partial load that left
      modules behind) are refused here, naming the devices: a step on them would fail or run on the wrong one."""
    onload = getattr(model, "_pfvg_onload_device", None)
    if onload is not None:
        return onload
    from diffusers.hooks.group_offloading import _get_group_onload_device, _is_group_offload_enabled

    if _is_group_offload_enabled(model):
        return torch.device(_get_group_onload_device(model))
    return weights_device(model, "the DiT")


def weights_device(module: torch.nn.Module, what: str = "the model") -> torch.device:
    """The one device holding every parameter and buffer of ``module``; a clear error when they are split."""
    devices = {t.device for t in module.parameters()} | {t.device for t in module.buffers()}
    if len(devices) == 1:
        return next(iter(devices))
    if not devices:
        return torch.device("cpu")
    names = ", ".join(sorted(str(d) for d in devices))
    raise RuntimeError(f"{what}'s weights are on several devices ({names}): the card had no room for all of them "
                       "(a partial load). Free memory on the card, or load the model with offload 'group' or fp8 storage")


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """``cuda`` and ``cuda:0`` name one card when the current card is 0; an index is compared only where both give one."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def placed_on(module: torch.nn.Module, device: torch.device | str) -> bool:
    """Every parameter and buffer of ``module`` is on ``device`` (a partial load leaves some behind)."""
    return all(same_device(t.device, device) for t in list(module.parameters()) + list(module.buffers()))


def compute_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the DiT computes in (under fp8 layerwise casting most weights are stored in fp8)."""
    dt = getattr(model, "_pfvg_compute_dtype", None)
    return dt if dt is not None else next(model.parameters()).dtype


def place_dit(model: DiT, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, storage: torch.dtype | None = None,
              offload: str = "none", offload_device: str | torch.device = "cpu") -> DiT:
    """Put a DiT on its device with diffusers' own memory options:

    - ``storage`` fp8 (e4m3fn / e5m2): weights stored in fp8 and cast to ``dtype`` layer by layer
      (``enable_layerwise_casting``; norms and embedders stay in ``dtype``);
    - ``offload='group'``: weights stay on ``offload_device`` (the CPU) and each transformer block is moved
      to ``device`` just before it runs (``enable_group_offload``, block level, with a CUDA stream for prefetch).
    Records the compute dtype (``compute_dtype``); the execution device is read from the weights and the offload
    hooks (``execution_device``), so whoever moves the model later keeps it right."""
    dev = resolve_device(device)
    dtype = dtype or compute_dtype(model)
    if offload not in OFFLOAD:
        raise ValueError(f"offload must be one of {OFFLOAD}, got {offload!r}")
    if storage is not None and not getattr(model, "_pfvg_storage", None):
        model.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
    model._pfvg_storage = storage
    model._pfvg_compute_dtype = dtype
    if offload == "group" and dev.type != "cpu":
        import importlib.util

        if importlib.util.find_spec("accelerate") is None:
            raise ValueError("offload='group' needs the accelerate package (diffusers' group offload moves inputs with it): "
                             "pip install accelerate")
        off = torch.device(offload_device)
        model.to(off)
        model.enable_group_offload(onload_device=dev, offload_device=off, offload_type="block_level",
                                   num_blocks_per_group=1, use_stream=dev.type == "cuda")
    else:
        model.to(dev)
    return model.eval()


def load_dit(path: str, config: str | dict[str, Any] | None = None, dtype=torch.float32, device="cpu",
             storage: str | torch.dtype | None = "auto", offload: str = "none", offload_device="cpu") -> DiT:
    """Load a packed DiT from local weights, straight to ``device`` in its final dtypes.

    - a diffusers folder (``config.json`` + ``diffusion_pytorch_model*.safetensors``, the layout of the
      published FramePack-F1 folders): ``from_pretrained``;
    - a single ``.safetensors`` file with the same key names (a ``model.diffusion_model.`` prefix is
      removed): the architecture is built on the meta device and every tensor is read on its own
      (``safe_open``) onto ``device`` and cast there, so the file is never held twice in memory
      (``config`` names the architecture; default ``hunyuan-f1``). A file of fp8 weights (as published
      for FramePack-F1) loads as it is: fp8 storage, ``dtype`` compute.
    ``storage`` (``auto``, ``compute``, ``fp8_e4m3fn``, ``fp8_e5m2``) and ``offload`` (``none``, ``group``): see
    ``place_dit``."""
    dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
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
        return place_dit(model, dev, dtype, resolve_storage(storage), offload, offload_device)
    if not path.endswith(".safetensors"):
        raise CheckpointError(f"{path}: expected a .safetensors file (pickled checkpoints are not loaded)")
    cfg = dit_config(config or _config_beside(path) or "hunyuan-f1")
    with torch.device("meta"):
        model = DiT.from_config(cfg)
    torch.nn.Module.to(model, dtype)  # (diffusers' .to warns about fp32 modules; this class has none)
    store = resolve_storage(storage, _file_weight_dtype(path))
    if store is not None:  # marks which modules store fp8, so that each tensor is read straight to its dtype
        model.enable_layerwise_casting(storage_dtype=store, compute_dtype=dtype)
        model._pfvg_storage = store
    # Group offload keeps the weights on the offload device: read them there.
    target = torch.device(offload_device) if offload == "group" else dev
    state = read_state_dict_to(path, model, "packed DiT", target, prefixes=_PREFIXES)
    model.load_state_dict(state, strict=True, assign=True)
    del state
    return place_dit(model, dev, dtype, store, offload, offload_device)


def _file_weight_dtype(path: str) -> torch.dtype | None:
    """The fp8 type of a file's matmul weights if it stores any in fp8, else None (header only)."""
    from .checkpoint import safetensors_dtypes

    fp8 = [dt for name, (dt, shape) in safetensors_dtypes(path).items() if dt in FP8.values() and len(shape) == 2]
    return max(set(fp8), key=fp8.count) if fp8 else None


def read_state_dict_to(path: str, model: torch.nn.Module, what: str, device: torch.device,
                       prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Read a safetensors file tensor by tensor onto ``device``, each cast to the dtype of the
    ``model``'s tensor of that name (the model may live on the meta device); keys checked first."""
    from .checkpoint import check_keys, open_safetensors

    with open_safetensors(path, what, device) as f:
        names = list(f.keys())
        rename = {_strip(n, prefixes): n for n in names}
        expected = model.state_dict()
        check_keys(path, {k: tuple(f.get_slice(n).get_shape()) for k, n in rename.items()}, expected, what)
        out = {}
        for key, name in rename.items():
            t = f.get_tensor(name)
            want = expected[key].dtype
            if t.is_floating_point() and t.dtype != want:
                if t.dtype in FP8.values() and want not in FP8.values():
                    t = t.to(torch.float32)  # fp8 → fp16 overflows nothing, but go through fp32 to be exact
                t = t.to(want)
            out[key] = t
    return out


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    for p in prefixes:
        if name.startswith(p):
            return name[len(p):]
    return name


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
