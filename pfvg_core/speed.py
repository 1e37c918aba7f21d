"""Sampling speed options on the packed DiT, both off by default, both diffusers' own machinery:

- **step cache**: First Block Cache (diffusers ``FirstBlockCacheConfig``; ParaAttention's dynamic
  caching after TeaCache, Liu et al. 2024): at each sampling step the first transformer block runs;
  when its residual changed by less than ``threshold`` (relative mean absolute difference) since the
  last full step, the other blocks are skipped and their cached residual is added. Threshold 0 never
  skips (the result equals no cache). The cache is reset at every new segment (a new FramePack
  context), so a segment still depends only on its memory state (docs/architecture.md §1), and the conditional and
  the negative (CFG) evaluations have separate caches.
- **compile**: ``torch.compile`` of the repeated transformer blocks (diffusers'
  ``compile_repeated_blocks``: regional compilation, short compile time).
- **fp8 compute** (``set_compute(model, "fp8")``): the matmuls of the transformer blocks' linear
  layers run on fp8 tensor cores (torchao's ``Float8DynamicActivationFloat8WeightConfig``: weights
  quantized once, activations quantized at run time, one scale per row). Unlike fp8 *storage*
  (``backbone.place_dit``: weights kept in fp8 and cast back to bf16 before a bf16 matmul) this halves
  the matmul cost as well as the weight memory. Needs a CUDA GPU of compute capability ≥ 8.9 (Ada,
  Hopper, Blackwell) and the ``torchao`` package (optional: ``pip install 'pfvg[fp8]'``).

``recommend_threshold`` picks the step cache threshold from a measured speed/error curve
(``bench f1``): the fastest threshold whose error to the uncached video stays within a bound.
"""
from __future__ import annotations

import importlib.util
import math

import torch

REPEATED_BLOCKS = ("HunyuanVideoTransformerBlock", "HunyuanVideoSingleTransformerBlock")
COMPILE_MODES = ("off", "blocks")


def set_step_cache(model, threshold: float | None) -> None:
    """First Block Cache on the model's DiT with ``threshold`` (None: off). Typical: 0.05–0.2."""
    from diffusers.hooks import FirstBlockCacheConfig

    dit = getattr(model, "dit", model)
    if threshold is not None and not (threshold >= 0 and threshold <= 10):
        raise ValueError(f"step cache threshold must be a number in [0, 10], got {threshold}")
    if dit.is_cache_enabled:
        dit.disable_cache()
    if threshold is not None:
        dit.enable_cache(FirstBlockCacheConfig(threshold=float(threshold)))
    dit._pfvg_cache_segment = None


def step_cache_threshold(model) -> float | None:
    dit = getattr(model, "dit", model)
    cfg = getattr(dit, "_cache_config", None)
    return getattr(cfg, "threshold", None) if cfg is not None else None


def cache_scope(dit, segment_key, name: str):
    """The diffusers cache context for one DiT evaluation: reset when ``segment_key`` (the segment's
    FramePack context object) changes, one cache per ``name`` (conditional / negative)."""
    if getattr(dit, "_pfvg_cache_segment", None) is not segment_key:
        dit._reset_stateful_cache()
        dit._pfvg_cache_segment = segment_key
    return dit.cache_context(name)


def compile_blocks(model, mode: str = "blocks", **compile_kwargs) -> None:
    """``torch.compile`` the DiT's transformer blocks in place (``mode='off'``: nothing). Keyword
    arguments go to ``torch.compile`` (e.g. ``backend``, ``dynamic``, ``mode``)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")
    if mode == "off":
        return
    dit = getattr(model, "dit", model)
    dit._repeated_blocks = REPEATED_BLOCKS
    dit.compile_repeated_blocks(**compile_kwargs)


def set_threads(n: int | None) -> int:
    """Intra-op CPU threads (``torch.set_num_threads``); None keeps the current setting."""
    if n is not None:
        if not isinstance(n, int) or n < 1 or n > 1024:
            raise ValueError(f"--threads must be a whole number in [1, 1024], got {n}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


# --- fp8 compute (torchao) -----------------------------------------------------------------------
# dtype: matmuls in the compute dtype (bf16); fp8: fp8 tensor cores (an error where there are none);
# auto: fp8 where the card and torchao allow it, else dtype (what a shared workflow can default to)
COMPUTE_MODES = ("dtype", "fp8", "auto")
FP8_MIN_CAPABILITY = (8, 9)  # fp8 tensor cores: Ada (8.9), Hopper (9.0), Blackwell (10.x, 12.x)
_BLOCK_LISTS = ("transformer_blocks", "single_transformer_blocks")


def fp8_compute_unavailable(device: torch.device | str) -> str | None:
    """Why fp8 compute cannot run on ``device`` (a sentence naming what is missing), or None when it can."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return (f"fp8 compute needs a CUDA GPU with fp8 tensor cores (compute capability ≥ 8.9: RTX 40xx, L4/L40, "
                f"H100/H200, Blackwell); the model is on {dev.type}")
    cc = torch.cuda.get_device_capability(dev)
    if tuple(cc) < FP8_MIN_CAPABILITY:
        return (f"fp8 compute needs fp8 tensor cores (compute capability ≥ 8.9); {torch.cuda.get_device_name(dev)} has "
                f"{cc[0]}.{cc[1]}: use storage fp8_e4m3fn (fp8 weights, bf16 matmuls) on this card instead")
    if importlib.util.find_spec("torchao") is None:
        return "fp8 compute needs the torchao package: pip install torchao (or pip install 'pfvg[fp8]')"
    return None


def fp8_linear_names(dit) -> list[str]:
    """The linear layers that fp8 compute quantizes: those inside the transformer blocks (attention
    projections, MLPs; they hold ≈ 99 % of the DiT's matmul FLOPs), except the AdaLN modulation linears
    (``norm*``: one row per sample, nothing to gain) and any whose sizes are not multiples of 16 (fp8
    matmul kernels need that). Embedders, the token refiner, the output projection and the SemanticPack
    (ψ, PFVG §3.1) keep the compute dtype."""
    names = []
    for name, mod in dit.named_modules():
        if not isinstance(mod, torch.nn.Linear) or name.split(".", 1)[0] not in _BLOCK_LISTS:
            continue
        if any(part.startswith("norm") for part in name.split(".")):
            continue
        if mod.in_features % 16 or mod.out_features % 16:
            continue
        names.append(name)
    return names


def _drop_layerwise_casting(mod: torch.nn.Module) -> None:
    """Remove diffusers' layerwise-casting hook (fp8 storage) from one module, leaving its weights in
    their storage dtype (diffusers refuses to un-cast, to avoid a silent precision loss: here the
    fp8 → bf16 cast is exact and the weights are quantized again at once)."""
    registry = getattr(mod, "_diffusers_hook", None)
    hook = registry.get_hook("layerwise_casting") if registry is not None else None
    if hook is not None:
        hook.deinitalize_hook = lambda m: m  # (sic: diffusers' spelling)
        registry.remove_hook("layerwise_casting", recurse=False)


def set_compute(model, compute: str = "dtype") -> int:
    """``compute='fp8'``: quantize the DiT's block linears for fp8 matmuls in place (see module
    docstring; ``fp8_linear_names``); ``'dtype'``: nothing; ``'auto'``: fp8 where it can run (a card with fp8
    tensor cores, torchao installed, no group offload), else nothing. Returns the number of layers quantized.

    Works on a DiT with compute-dtype weights or fp8-stored weights (storage fp8_e4m3fn, or an fp8 file):
    each layer is converted on its own, so the GPU never holds more than one extra bf16 layer. Not with
    group offload (torchao's fp8 weights are not moved by diffusers' offload hooks). Irreversible: load
    the model again to go back."""
    if compute not in COMPUTE_MODES:
        raise ValueError(f"compute must be one of {COMPUTE_MODES}, got {compute!r}")
    if compute == "dtype":
        return 0
    from .backbone import compute_dtype, execution_device

    dit = getattr(model, "dit", model)
    if getattr(dit, "_pfvg_compute", None) == "fp8":
        return 0
    dev = execution_device(dit)
    why = fp8_compute_unavailable(dev)
    offloaded = any(p.device.type != dev.type for p in dit.parameters())
    if compute == "auto" and (why is not None or offloaded):
        return 0  # matmuls stay in the compute dtype here
    if why is not None:
        raise ValueError(why)
    if offloaded:
        raise ValueError("fp8 compute cannot be combined with offload='group' (weights resting on the CPU); "
                         "use storage fp8_e4m3fn with offload group, or fp8 compute without offload")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    dtype = compute_dtype(dit)
    modules = dict(dit.named_modules())
    names = fp8_linear_names(dit)
    for name in names:
        mod = modules[name]
        _drop_layerwise_casting(mod)
        mod.to(dtype=dtype)  # fp8-stored weights back to the compute dtype, one layer at a time
        quantize_(mod, config)
    dit._pfvg_compute = "fp8"
    return len(names)


def compute_mode(model) -> str:
    return getattr(getattr(model, "dit", model), "_pfvg_compute", None) or "dtype"


# --- choosing the step cache threshold -------------------------------------------------------------
def recommend_threshold(curve, error_bound: float) -> dict:
    """The fastest point of a measured step cache curve whose error stays within ``error_bound``.

    ``curve``: rows ``{"threshold": float, "s_per_frame": float, "error": float}`` (error: relative
    error of the video to the uncached one, same seed); rows without a finite time or error (skipped,
    failed) are ignored. Ties in time go to the smaller threshold. Returns the chosen row, or raises
    ValueError when no row is within the bound (then leave the cache off)."""
    if not (isinstance(error_bound, (int, float)) and math.isfinite(error_bound) and error_bound >= 0):
        raise ValueError(f"error_bound must be a finite number ≥ 0, got {error_bound!r}")
    curve = list(curve)
    ok = []
    for row in curve:
        t, e, thr = row.get("s_per_frame"), row.get("error"), row.get("threshold")
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (t, e, thr)) and e <= error_bound:
            ok.append(row)
    if not ok:
        raise ValueError(f"no measured step cache threshold keeps the error within {error_bound} "
                         f"({len(curve)} points): leave the step cache off")
    return min(ok, key=lambda r: (r["s_per_frame"], r["threshold"]))
