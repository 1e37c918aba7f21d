"""The F1 template's default speed settings from a measured ``python -m bench f1 --suite``.

``recommend_settings`` picks the fastest measured row within an error bound among the settings every card runs;
``example_workflows/make_workflows.py --speed-from SUITE.json`` writes its choice into the F1 template.
"""
from __future__ import annotations

import math

# Load Packed DiT's widgets a measured row sets (bench f1 --suite rows name them the same way)
WORKFLOW_SETTINGS = ("compute", "attention", "step_cache", "compile", "storage", "offload")


def _widget(row: dict) -> dict:
    """Load Packed DiT's widget values for a measured suite row (compile rows record their backend:
    ``blocks (inductor)``; storage rows the torch dtype name)."""
    storage = row.get("storage", "auto")
    return {"compute": row.get("compute", "dtype"), "attention": row.get("attention", "native"),
            "step_cache": float(row.get("step_cache") or 0.0),
            "compile": "blocks" if str(row.get("compile", "off")).startswith("blocks") else "off",
            "storage": {"float8_e4m3fn": "fp8_e4m3fn", "float8_e5m2": "fp8_e5m2"}.get(storage, storage),
            "offload": row.get("offload", "none")}


def _portable(row: dict) -> bool:
    """Runs on any CUDA card ComfyUI runs on: native attention (flash / sage / cudnn need packages or cards),
    no compile (needs Triton, missing on Windows installs); fp8 compute becomes ``auto`` (fp8 where it can run)."""
    return row.get("attention", "native") == "native" and not str(row.get("compile", "off")).startswith("blocks")


def recommend_settings(rows, error_bound: float = 0.05, max_peak_gb: float | None = None) -> dict:
    """The F1 workflow's default: the fastest measured row of ``bench f1 --suite`` whose error to the
    bf16 uncached video stays within ``error_bound`` (and whose peak GPU memory within ``max_peak_gb``) among
    the settings every user's card runs (``_portable``: native attention, no compile; fp8 compute as ``auto``).

    Rows that failed, were skipped, produced non-finite latents, ran with memory on (ψ costs the same in every
    setting) or timed a compilation (``first segment``) are not candidates. Returns {"widgets": Load Packed DiT
    values (compute, attention, step_cache 0 = off, compile, storage, offload), "row": the measured row,
    "fastest": the fastest row within the bound on the measuring card, portable or not, with its widgets};
    raises ValueError when no row qualifies (then the workflow keeps the plain bf16 settings)."""
    if not (isinstance(error_bound, (int, float)) and math.isfinite(error_bound) and error_bound >= 0):
        raise ValueError(f"error_bound must be a finite number ≥ 0, got {error_bound!r}")
    rows = list(rows)
    ok = []
    for r in rows:
        s, e = r.get("s_per_frame"), r.get("err_to_bf16")
        if "failed" in r or "skipped" in r or r.get("finite") is False or r.get("memory", "off") != "off":
            continue
        if "first segment" in str(r.get("name", "")) or r.get("name") == "diffusers":
            continue
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (s, e)) or e > error_bound:
            continue
        if max_peak_gb is not None and not (isinstance(r.get("peak_gb"), (int, float)) and r["peak_gb"] <= max_peak_gb):
            continue
        ok.append(r)
    portable = [r for r in ok if _portable(r)]
    if not portable:
        raise ValueError(f"no measured row keeps the error to bf16 within {error_bound}"
                         + (f" and the peak within {max_peak_gb} GB" if max_peak_gb is not None else "")
                         + f" with settings every card runs ({len(rows)} rows): keep the plain bf16 settings")
    best = min(portable, key=lambda r: r["s_per_frame"])
    widgets = _widget(best)
    if widgets["compute"] == "fp8":
        widgets["compute"] = "auto"  # fp8 on cards with fp8 tensor cores, the compute dtype elsewhere
    fastest = min(ok, key=lambda r: r["s_per_frame"])
    return {"widgets": widgets, "row": best, "error_bound": error_bound,
            "fastest": {"row": fastest, "widgets": _widget(fastest)}}
