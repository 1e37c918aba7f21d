"""Every speed option of the packed DiT in one call: ``python -m bench f1 --suite --out DIR``.

The ``hunyuan-f1`` transformer with random weights (12.9 B parameters), one F1 segment of ``window``
latent frames at ``width``×``height`` with ``steps`` Euler steps (distilled guidance 10, local RoPE,
memory off unless a row says otherwise), each row timed on the second segment of a state (past ψ₀):

==================  ============================================================================
row group           rows
==================  ============================================================================
(always)            ``bf16``: our loop, bf16, native SDPA, no cache: the reference video
``diffusers``       diffusers' ``HunyuanVideoFramepackPipeline`` on the same transformer: every
                    row's ``over_diffusers`` is its segment time ÷ this one
``cache``           First Block Cache thresholds (``speed.set_step_cache``; 0 equals no cache) beside
                    FramePack's TeaCache setting (rel. L1 0.15: a different indicator, so the 0.15 row is
                    only its nearest analogue); ``recommend_threshold`` picks the fastest within
                    ``error_bound``, used by the combined rows below
``attention``       the attention backends (``backbone.ATTENTION_BACKENDS``) that can run here, each
                    with the ψ check: a gated-ψ segment (SemanticPack gate g = e⁻¹, PFVG §3.1, the
                    form with extra head channels) compared with native SDPA
``fp8``             fp8 compute (``speed.set_compute``, torchao), alone, with the recommended cache,
                    with the fastest attention backend, then compiled (first segment = compile time)
``memory``          memory on (ψ of M tokens, gate open) ÷ memory off
``compile``         ``torch.compile`` of the bf16 blocks: first segment, steady state, with the cache
``storage``         fp8 storage with bf16 matmuls (layerwise casting), and with group offload
==================  ============================================================================

Each row: seconds per segment and per video frame, peak GPU memory (the row's model alone on the
GPU), ``err_to_bf16`` = ‖x − x_bf16‖ / ‖x_bf16‖ of the segment's latents to the bf16 uncached one
(same state, same noise; pixels would need the real VAE), and ``over_diffusers``. A row whose package
or hardware is missing is ``skipped`` with the reason; one that fails carries ``failed``; once
``budget_s`` is spent the remaining rows are ``skipped`` for the time budget, and what was measured
is still returned, printed and written to ``out_dir/bench_f1_suite.json`` (rewritten after each row).

On a CPU the same code runs at a tiny size (CI: ``tests/test_bench_f1.py``); its timings mean nothing.
"""
from __future__ import annotations

import dataclasses
import json
import gc
import math
import os
import time

import torch

from pfvg_core.backbone import ATTENTION_BACKENDS, attention_backend_unavailable, place_dit, resolve_device, \
    set_attention_backend
from pfvg_core.loop import SamplerOptions, sample_segment
from pfvg_core.model import Conditioning, PFVGModel
from pfvg_core.semanticpack import SemanticPack, SemanticPackConfig
from pfvg_core.speed import compile_blocks, fp8_compute_unavailable, recommend_threshold, set_compute, set_step_cache
from bench.settings import recommend_settings
from pfvg_core.state import MemoryConfig, init_state, step
from bench.f1 import TEMPORAL_FACTOR, bench_setup, _peak_gb, _reset_peak, _sync, _time, _tiny_reference_parts, diffusers_runner, \
    random_dit

GROUPS = ("diffusers", "cache", "attention", "fp8", "memory", "compile", "storage")  # in the order they run
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.0)  # 0 last: it equals no cache (tests/test_speed.py), so it only shows overhead
TEACACHE_REFERENCE = 0.15  # FramePack's TeaCache rel. L1 threshold (its default)
ERROR_BOUND = 0.05  # default bound on err_to_bf16 for the recommended threshold
RESULT_FILE = "bench_f1_suite.json"
NO_THRESHOLD = "no recommended step cache threshold (the cache group did not run, or no threshold kept the error within the bound)"


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """‖x − ref‖ / ‖ref‖ (float64)."""
    x, ref = x.double(), ref.double()
    return float((x - ref).norm() / ref.norm().clamp_min(1e-30))


class Suite:
    """Rows measured against one reference, under one time budget; the JSON is rewritten after each row."""

    def __init__(self, result: dict, dev: torch.device, steps: int, frames: int, budget_s: float, out_dir: str | None,
                 log=None):
        self.result, self.dev, self.steps, self.frames = result, dev, steps, frames
        self.budget_s, self.out_dir, self.log = float(budget_s), out_dir, log
        self.t0 = time.monotonic()
        self.ref: torch.Tensor | None = None  # bf16 uncached segment latents
        self.ref_s: float | None = None
        self.diffusers_s: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def estimate(self, segments: float = 1.0, extra_s: float = 0.0) -> float:
        return segments * (self.ref_s or self.diffusers_s or 0.0) + extra_s

    def over_budget(self, row: dict, need_s: float) -> bool:
        """Marks ``row`` skipped when the rest of the budget is shorter than ``need_s``."""
        if self.elapsed + need_s > self.budget_s:
            row["skipped"] = (f"time budget: {self.elapsed:.0f} s of {self.budget_s:.0f} s spent, "
                              f"this row needs ≈ {need_s:.0f} s")
            self.add(row)
            return True
        return False

    def over_budget_all(self, names: list[str], base: dict, need_s: float) -> bool:
        """``over_budget`` for a group of rows that share one set-up: each is marked skipped."""
        if self.elapsed + need_s <= self.budget_s:
            return False
        for name in names:
            self.over_budget({"name": name, **base}, need_s)
        return True

    def add(self, row: dict) -> dict:
        if "segment_s" in row:
            row["s_per_frame"] = round(row["segment_s"] / self.frames, 4)
            if self.diffusers_s:
                row["over_diffusers"] = round(row["segment_s"] / self.diffusers_s, 4)
            if self.ref_s and row.get("name") != "bf16":
                row["over_bf16"] = round(row["segment_s"] / self.ref_s, 4)
        self.result["rows"].append(row)
        self.result["elapsed_s"] = round(self.elapsed, 1)
        self.flush()
        return row

    def flush(self) -> None:
        if self.out_dir:
            from pfvg_core.atomic import write_json

            os.makedirs(self.out_dir, exist_ok=True)
            write_json(os.path.join(self.out_dir, RESULT_FILE), self.result, indent=1)
        if self.log:
            self.log(self.result)

    def segment(self, model, state, cond, steps: int | None = None) -> tuple[float, torch.Tensor]:
        """Time one segment (sampling + the state update, as the loop does); its latents on the CPU."""
        opts = SamplerOptions(steps=steps or self.steps, distilled_guidance=10.0)
        out = {}

        def run():
            out["x"] = sample_segment(model, state, cond, options=opts)
            step(model, state, out["x"])

        secs = _time(run, self.dev)
        return secs, out["x"].float().cpu()

    def measure(self, name: str, model, state, cond, need: float = 1.0, warm: bool = False, required: bool = False,
                **settings) -> dict | None:
        """One row: ``model`` sampling ``state``'s segment; ``need`` = its expected cost in reference segments
        (``required``: run whatever the budget says: the reference)."""
        row = {"name": name, **settings}
        if not required and self.over_budget(row, self.estimate(need + (0.1 if warm else 0.0))):
            return None
        try:
            if warm:  # one 1-step segment first: kernels chosen, a recompile (compiled blocks + cache) absorbed
                row["warm_s"] = round(self.segment(model, state, cond, steps=1)[0], 3)
            resident = _reset_peak(self.dev)
            secs, x = self.segment(model, state, cond)
            row.update(segment_s=round(secs, 3), peak_gb=_peak_gb(self.dev), resident_gb=resident,
                       finite=bool(torch.isfinite(x).all()))
            row["err_to_bf16"] = 0.0 if self.ref is None else round(rel_err(x, self.ref), 5)
            if self.ref is None:
                self.ref, self.ref_s = x, secs
        except Exception as e:  # keep the other rows; say what failed
            row["failed"] = f"{type(e).__name__}: {e}"[:400]
        return self.add(row)


@dataclasses.dataclass
class Parts:
    """What every row shares: conditioning, the start latent and the memory states past ψ₀."""

    cond: Conditioning
    start: torch.Tensor
    state_off: object = None
    state_on: object = None
    model_id: str | None = None


def build_model(cfg: dict, dev: torch.device, dtype: torch.dtype, storage=None, offload: str = "none") -> PFVGModel:
    """Random DiT (seed 0: the same weights in every phase) + SemanticPack (seed 0) as one model."""
    dit = random_dit(cfg, dev, dtype)
    place_dit(dit, dev, dtype, storage, offload)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sp = SemanticPack(SemanticPackConfig.for_dit(cfg))
    sp = sp.to(dev, dtype)
    sp.open_gate(0.0)
    return PFVGModel(dit, sp).eval()


def _adopt(model: PFVGModel, parts: Parts) -> PFVGModel:
    """Same seeded weights as the reference model: its states apply (the id is set before any quantization)."""
    if parts.model_id is not None:
        model._id = parts.model_id
    return model


def _free() -> None:
    """Return the memory of models the caller has dropped (``del`` first)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()  # compiled blocks of a freed model hold their graphs


def bench_f1_suite(config: str = "hunyuan-f1", layers: tuple[int, int] | None = None, width: int = 640, height: int = 480,
                   steps: int = 25, device="auto", dtype=None, groups=GROUPS, thresholds=THRESHOLDS,
                   error_bound: float = ERROR_BOUND, budget_s: float = 330.0, compile_backend: str | None = None,
                   out_dir: str | None = None, window: int = 9, log=None) -> dict:
    """Run the rows of ``groups`` (module docstring) and return the result (also written to ``out_dir``)."""
    dev, dtype, cfg = bench_setup(config, layers, width, height, device, dtype)
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        raise ValueError(f"unknown row groups {bad}; expected some of {list(GROUPS)}")
    for t in thresholds:
        if not (isinstance(t, (int, float)) and 0 <= t <= 10):
            raise ValueError(f"step cache thresholds must be numbers in [0, 10], got {t!r}")
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s >= 0):
        raise ValueError(f"budget_s must be a finite number of seconds ≥ 0, got {budget_s!r}")
    compile_backend = compile_backend or ("inductor" if dev.type == "cuda" else "eager")
    frames = window * TEMPORAL_FACTOR
    result = {"suite": "f1", "config": config, "layers": [cfg["num_layers"], cfg["num_single_layers"]], "size": [width, height],
              "steps": steps, "window": window, "frames_per_segment": frames, "device": str(dev),
              "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "compute_dtype": str(dtype).replace("torch.", ""), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "versions": _versions(), "groups": list(groups), "thresholds": list(thresholds), "error_bound": error_bound,
              "budget_s": budget_s, "compile_backend": compile_backend, "rows": []}
    suite = Suite(result, dev, steps, frames, budget_s, out_dir, log)

    # --- phase A: the bf16 model (reference, diffusers, cache sweep, attention + ψ check) -------------------
    model = build_model(cfg, dev, dtype)
    g = torch.Generator().manual_seed(0)
    prompt = torch.randn(1, 256, cfg["text_embed_dim"], generator=g)
    pooled = torch.randn(1, cfg["pooled_projection_dim"], generator=g)
    vae, siglip, processor = _tiny_reference_parts(cfg["in_channels"], cfg["image_proj_dim"], dev, dtype)
    with torch.no_grad():
        image_embeds = siglip(pixel_values=torch.rand(1, 3, 384, 384, generator=g).to(dev, dtype)).last_hidden_state
        start = vae.encode(torch.rand(1, 3, 1, height, width, generator=g).to(dev) * 2 - 1).latent_dist.mode()
    cond = Conditioning(prompt, torch.ones(1, prompt.shape[1], dtype=torch.bool), pooled, image_embeds)
    parts = Parts(cond, (start * vae.config.scaling_factor).float().cpu(), model_id=model.model_id)
    warm = SamplerOptions(steps=1, distilled_guidance=10.0)
    for memory in ("off", "on"):
        state = init_state(model, parts.start, cond, 0, MemoryConfig(window=window, rope="local", memory_mode=memory))
        state = step(model, state, sample_segment(model, state, cond, options=warm))  # past ψ₀; also the warm-up
        setattr(parts, f"state_{memory}", state)

    if "diffusers" in groups:
        _diffusers_row(suite, model, vae, siglip, processor, prompt, pooled, width, height, window, dtype)
    del vae, siglip, processor
    ref = suite.measure("bf16", model, parts.state_off, cond, required=True, compute="dtype", attention="native", step_cache=None,
                        compile="off", memory="off")
    if ref is None or "failed" in ref:
        result["stopped"] = "the bf16 reference row did not run: nothing to compare with"
        suite.flush()
        return result

    if "cache" in groups:
        for t in thresholds:
            set_step_cache(model, t)
            try:
                row = suite.measure(f"bf16 + cache {t:g}", model, parts.state_off, cond, need=0.9, compute="dtype",
                                    attention="native", step_cache=t, compile="off", memory="off")
                if row is not None and t == TEACACHE_REFERENCE:
                    row["teacache_reference"] = "FramePack's TeaCache setting (rel. L1 0.15): its nearest analogue here"
            finally:
                set_step_cache(model, None)
        result["recommended_step_cache"] = _recommend(result["rows"], error_bound)
    rec = result.get("recommended_step_cache", {}).get("threshold")

    best_attention = "native"
    if "attention" in groups:
        best_attention = _attention_rows(suite, model, parts, cond)
    result["fastest_attention"] = best_attention

    del model
    _free()

    # --- phase B: fp8 compute ------------------------------------------------------------------------------
    if "fp8" in groups:
        why = fp8_compute_unavailable(dev)
        names = ["fp8", "fp8 + cache"] + ([f"fp8 + {best_attention}"] if best_attention != "native" else []) + [
            "fp8 + compile (first segment)", "fp8 + compile", "fp8 + compile + cache"]
        if why is not None:
            for n in names:
                suite.add({"name": n, "compute": "fp8", "skipped": why})
        else:
            _fp8_rows(suite, cfg, dev, dtype, parts, cond, rec, best_attention, compile_backend)

    # --- phase C: the bf16 model again: memory on (ψ, eager), then its blocks compiled -----------------------
    if "memory" in groups or "compile" in groups:
        _memory_and_compile_rows(suite, cfg, dev, dtype, parts, cond, rec, compile_backend, groups)

    # --- phase D: fp8 storage (bf16 matmuls), with and without group offload ------------------------------
    if "storage" in groups:
        for name, offload in (("fp8 storage", "none"), ("fp8 storage + offload", "group")):
            row = {"name": name, "storage": "float8_e4m3fn", "offload": offload, "compute": "dtype"}
            if offload == "group" and dev.type != "cuda":
                suite.add({**row, "skipped": "group offload needs a CUDA device"})
                continue
            if suite.over_budget(row, suite.estimate(1.6, 10)):
                continue
            m = None
            try:
                m = _adopt(build_model(cfg, dev, dtype, torch.float8_e4m3fn, offload), parts)
                suite.measure(name, m, parts.state_off, cond, warm=True, **{k: v for k, v in row.items() if k != "name"})
            except Exception as e:
                suite.add({**row, "failed": f"{type(e).__name__}: {e}"[:400]})
            del m
            _free()
    result["elapsed_s"] = round(suite.elapsed, 1)
    result["stopped_early"] = any("time budget" in str(r.get("skipped", "")) for r in result["rows"])
    try:  # the F1 template's default (example_workflows/make_workflows.py --speed-from this file)
        result["recommended_settings"] = recommend_settings(result["rows"], error_bound)
    except ValueError as e:
        result["recommended_settings"] = {"none": str(e)}
    suite.flush()
    return result


def _diffusers_row(suite: Suite, model, vae, siglip, processor, prompt, pooled, width, height, window, dtype) -> None:
    row = {"name": "diffusers", "pipeline": "HunyuanVideoFramepackPipeline (F1 vanilla)", "compute": "dtype",
           "attention": "native"}
    if suite.over_budget(row, 0.0):
        return
    dev = suite.dev
    try:
        pipe, run_pipe = diffusers_runner(model.dit, vae, siglip, processor, prompt, pooled, dev, dtype, width, height, window)
        run_pipe(1)  # warm-up
        resident = _reset_peak(dev)
        secs = _time(lambda: run_pipe(suite.steps), dev)
        suite.diffusers_s = secs
        row.update(segment_s=round(secs, 3), peak_gb=_peak_gb(dev), resident_gb=resident, err_to_bf16=None,
                   note="its own sampler and noise: no error to our video")
    except Exception as e:
        row["failed"] = f"{type(e).__name__}: {e}"[:400]
    suite.add(row)


def _recommend(rows: list[dict], error_bound: float) -> dict:
    curve = [{"threshold": 0.0 if r["step_cache"] is None else r["step_cache"], "s_per_frame": r.get("s_per_frame"),
              "error": r.get("err_to_bf16"), "name": r["name"]}
             for r in rows if r.get("compute") == "dtype" and r.get("attention") == "native" and r.get("compile") == "off"
             and r.get("memory") == "off" and "step_cache" in r]
    try:
        best = recommend_threshold(curve, error_bound)
    except ValueError as e:
        return {"threshold": None, "reason": str(e), "error_bound": error_bound}
    return {"threshold": best["threshold"], "s_per_frame": best["s_per_frame"], "err_to_bf16": best["error"],
            "error_bound": error_bound, "row": best["name"]}


def _psi_check(suite: Suite, model: PFVGModel, parts: Parts, cond, steps: int) -> tuple[dict, torch.Tensor | None]:
    """A segment with ψ gated at g = e⁻¹ (the gate in extra head channels: the backend sees d + 8)."""
    try:
        model.semanticpack.open_gate(-1.0)
        _, x = suite.segment(model, parts.state_on, cond, steps=steps)
        return {"steps": steps, "finite": bool(torch.isfinite(x).all())}, x
    except Exception as e:
        return {"steps": steps, "failed": f"{type(e).__name__}: {e}"[:300]}, None
    finally:
        model.semanticpack.open_gate(0.0)


def _attention_rows(suite: Suite, model: PFVGModel, parts: Parts, cond) -> str:
    """Each attention backend that can run here: timed, and the gated ψ path compared with native SDPA.
    Returns the fastest backend whose ψ check passed (native when none beats it)."""
    steps = min(3, suite.steps)
    psi_ref = None
    best, best_s = "native", suite.ref_s
    for backend in ATTENTION_BACKENDS:  # native first: the ψ reference
        row = {"name": f"bf16 + attention {backend}", "compute": "dtype", "attention": backend, "step_cache": None,
               "compile": "off", "memory": "off"}
        why = attention_backend_unavailable(backend, suite.dev)
        if why is not None:
            suite.add({**row, "skipped": why})
            continue
        if suite.over_budget(row, suite.estimate(0.2 if backend == "native" else 1.3)):
            continue
        try:
            set_attention_backend(model.dit, backend)
        except ValueError as e:
            suite.add({**row, "skipped": str(e)})
            continue
        try:
            check, psi = _psi_check(suite, model, parts, cond, steps)
            if backend == "native":
                psi_ref = psi
                check["rel_diff_to_native"] = 0.0 if psi is not None else None
                suite.add({**row, "segment_s": round(suite.ref_s, 3), "err_to_bf16": 0.0, "psi_check": check,
                           "note": "time of the bf16 row"})
                continue
            check["rel_diff_to_native"] = round(rel_err(psi, psi_ref), 5) if psi is not None and psi_ref is not None else None
            r = suite.measure(row["name"], model, parts.state_off, cond, warm=True,
                              **{k: v for k, v in row.items() if k != "name"})
            if r is not None:
                r["psi_check"] = check
                suite.flush()
                if r.get("segment_s", math.inf) < best_s and check.get("finite"):
                    best, best_s = backend, r["segment_s"]
        finally:
            set_attention_backend(model.dit, "native")
    return best


def _fp8_rows(suite: Suite, cfg, dev, dtype, parts: Parts, cond, rec, attention: str, compile_backend: str) -> None:
    base = {"compute": "fp8", "attention": "native", "step_cache": None, "compile": "off", "memory": "off"}
    names = ["fp8", "fp8 + cache"] + ([f"fp8 + {attention}"] if attention != "native" else []) + [
        "fp8 + compile (first segment)", "fp8 + compile", "fp8 + compile + cache"]
    if suite.over_budget_all(names, base, suite.estimate(1.5, 15)):
        return
    model = None
    try:
        model = _adopt(build_model(cfg, dev, dtype), parts)
        t = time.perf_counter()
        n = set_compute(model, "fp8")
        _sync(dev)
        quantize_s = time.perf_counter() - t
    except Exception as e:
        suite.add({"name": "fp8", **base, "failed": f"{type(e).__name__}: {e}"[:400]})
        del model
        _free()
        return
    row = suite.measure("fp8", model, parts.state_off, cond, warm=True, **base)
    if row is not None:
        row.update(fp8_layers=n, quantize_s=round(quantize_s, 2))
    if rec is not None:
        set_step_cache(model, rec)
        try:
            suite.measure("fp8 + cache", model, parts.state_off, cond, need=0.8, **{**base, "step_cache": rec})
        finally:
            set_step_cache(model, None)
    else:
        suite.add({"name": "fp8 + cache", **base, "skipped": NO_THRESHOLD})
    try:
        if attention != "native":
            set_attention_backend(model.dit, attention)
            suite.measure(f"fp8 + {attention}", model, parts.state_off, cond, warm=True, **{**base, "attention": attention})
        _compiled(suite, model, parts, cond, rec, compile_backend, "fp8", {**base, "attention": attention})
    finally:  # diffusers keeps the last backend as its process-wide default: native for the rows after these
        set_attention_backend(model.dit, "native")
    del model
    _free()


def _memory_and_compile_rows(suite: Suite, cfg, dev, dtype, parts: Parts, cond, rec, compile_backend: str, groups) -> None:
    base = {"compute": "dtype", "attention": "native", "step_cache": None, "compile": "off", "memory": "off"}
    names = (["bf16 + memory on"] if "memory" in groups else []) + (
        ["bf16 + compile (first segment)", "bf16 + compile", "bf16 + compile + cache"] if "compile" in groups else [])
    if suite.over_budget_all(names, base, suite.estimate(1.2 if "memory" in groups else 2.5, 10 if "memory" in groups else 30)):
        return
    model = _adopt(build_model(cfg, dev, dtype), parts)
    if "memory" in groups:  # ψ of M tokens with the gate open (PFVG §3.1) ÷ memory off
        row = suite.measure("bf16 + memory on", model, parts.state_on, cond, warm=True, **{**base, "memory": "on"})
        if row is not None and "segment_s" in row:
            row["on_over_off"] = round(row["segment_s"] / suite.ref_s, 4)
    if "compile" in groups:
        _compiled(suite, model, parts, cond, rec, compile_backend, "bf16", base)
    del model
    _free()


def _compiled(suite: Suite, model, parts: Parts, cond, rec, backend: str, label: str, base: dict) -> None:
    """Compile the blocks; first segment (compile included), steady state, steady state with the cache."""
    base = {**base, "compile": f"blocks ({backend})"}
    first_row = {"name": f"{label} + compile (first segment)", **base}
    if suite.over_budget_all([first_row["name"], f"{label} + compile", f"{label} + compile + cache"], base,
                             suite.estimate(2.2, 30)):
        return
    try:
        compile_blocks(model, "blocks", backend=backend)
    except Exception as e:
        suite.add({**first_row, "failed": f"{type(e).__name__}: {e}"[:400]})
        return
    first = suite.measure(first_row["name"], model, parts.state_off, cond, need=0.0, **base)
    steady = suite.measure(f"{label} + compile", model, parts.state_off, cond, **base)
    if first is not None and steady is not None and "segment_s" in first and "segment_s" in steady:
        first["compile_s"] = round(first["segment_s"] - steady["segment_s"], 2)
        suite.flush()
    if rec is not None:
        set_step_cache(model, rec)
        try:
            suite.measure(f"{label} + compile + cache", model, parts.state_off, cond, need=1.5, warm=True,
                          **{**base, "step_cache": rec})
        finally:
            set_step_cache(model, None)
    else:
        suite.add({"name": f"{label} + compile + cache", **base, "skipped": NO_THRESHOLD})


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("diffusers", "torchao", "flash-attn", "sageattention", "triton"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def format_table(result: dict) -> str:
    """The rows as a fixed-width text table (the JSON has every field)."""
    head = f"{'row':34} {'s/frame':>8} {'segment s':>9} {'÷ diffusers':>11} {'peak GiB':>8} {'err to bf16':>11}  note"
    lines = [f"{result['gpu'] or result['device']}, {result['size'][0]}×{result['size'][1]}, {result['steps']} steps, "
             f"window {result['window']}; {result['elapsed_s']} s of {result['budget_s']} s", head]
    for r in result["rows"]:
        def f(k, fmt):
            v = r.get(k)
            return format(v, fmt) if isinstance(v, (int, float)) else "-"
        note = r.get("skipped") or r.get("failed") or ""
        if "compile_s" in r:
            note = f"compile {r['compile_s']} s"
        if "psi_check" in r:
            note += f" ψ check: finite {r['psi_check']['finite']}, rel diff {r['psi_check']['rel_diff_to_native']}"
        lines.append(f"{r['name'][:34]:34} {f('s_per_frame', '.4f'):>8} {f('segment_s', '.2f'):>9} {f('over_diffusers', '.3f'):>11} "
                     f"{f('peak_gb', '.2f'):>8} {f('err_to_bf16', '.4f'):>11}  {note[:120]}")
    rec = result.get("recommended_step_cache")
    if rec:
        lines.append(f"recommended step cache (err ≤ {rec['error_bound']}): {rec.get('threshold')} {rec.get('reason', '')}")
    return "\n".join(lines)


def _numbers(name: str, text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as e:
        raise ValueError(f"{name}: expected comma-separated numbers, got {text!r}") from e


def run_suite(a) -> dict:
    """The CLI's ``bench f1 --suite`` (options of ``bench.f1.add_f1_options``)."""
    dev = resolve_device(a.device)
    cpu = dev.type != "cuda"
    layers = tuple(a.layers) if a.layers else ((1, 1) if cpu else None)

    def log(rec):
        if a.log:
            with open(a.log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    groups = tuple(x.strip() for x in a.groups.split(",")) if a.groups else GROUPS
    thresholds = _numbers("--thresholds", a.thresholds) if a.thresholds else THRESHOLDS
    return bench_f1_suite(a.config or "hunyuan-f1", layers, a.width or (128 if cpu else 640), a.height or (96 if cpu else 480),
                          a.steps or (2 if cpu else 25), dev, groups=groups, thresholds=thresholds,
                          error_bound=ERROR_BOUND if a.error_bound is None else a.error_bound,
                          budget_s=a.budget_s if a.budget_s is not None else (1e9 if cpu else 330.0),
                          compile_backend=a.compile_backend, out_dir=a.out, log=log)
