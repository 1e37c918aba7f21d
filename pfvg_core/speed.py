"""Sampling speed options on the packed DiT, both off by default, both diffusers' own machinery:

- **step cache**: First Block Cache (diffusers ``FirstBlockCacheConfig``; ParaAttention's dynamic
  caching after TeaCache, Liu et al. 2024): at each sampling step the first transformer block runs;
  when its residual changed by less than ``threshold`` (relative mean absolute difference) since the
  last full step, the other blocks are skipped and their cached residual is added. Threshold 0 never
  skips (the result equals no cache). The cache is reset at every new segment (a new FramePack
  context), so a segment still depends only on its memory state (DESIGN §1), and the conditional and
  the negative (CFG) evaluations have separate caches.
- **compile**: ``torch.compile`` of the repeated transformer blocks (diffusers'
  ``compile_repeated_blocks``: regional compilation, short compile time).
"""
from __future__ import annotations

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
