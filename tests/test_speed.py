"""Step cache (diffusers' First Block Cache) and block compilation: off by default, threshold 0 equals
no cache, a segment still depends only on its state, compiled blocks give the same result."""
import pytest
import torch

from pfvg_core.loop import SamplerOptions, generate_long_video, sample_segment
from pfvg_core.model import PFVGModel
from pfvg_core.speed import compile_blocks, set_step_cache, set_threads, step_cache_threshold


@pytest.fixture(scope="module")
def model():
    m = PFVGModel.build("tiny", seed=0)
    m.semanticpack.open_gate(-1.0)
    return m


def _video(model, n=3, cfg=1.0, **kw):
    torch.manual_seed(0)
    start = torch.randn(1, 4, 1, 8, 8)
    segs = list(generate_long_video(model, start, "a red ball", n, seed=1, negative_prompt="blur",
                                    options=SamplerOptions(steps=6, cfg=cfg), **kw))
    return torch.cat([s.latents for s in segs], 2), segs


def _block_calls(model):
    calls = []
    h = model.dit.single_transformer_blocks[0].attn.register_forward_hook(lambda *a: calls.append(1))
    return calls, h


def test_off_by_default_and_threshold_zero_equals_no_cache(model):
    assert step_cache_threshold(model) is None and not model.dit.is_cache_enabled
    ref, _ = _video(model, cfg=2.0)  # conditional and negative evaluations: separate caches
    set_step_cache(model, 0.0)
    try:
        assert step_cache_threshold(model) == 0.0
        got, _ = _video(model, cfg=2.0)
    finally:
        set_step_cache(model, None)
    assert torch.equal(got, ref)
    assert torch.equal(_video(model, cfg=2.0)[0], ref)  # off again: as before


def test_cache_skips_blocks_and_a_segment_still_depends_only_on_its_state(model):
    calls, h = _block_calls(model)
    ref, _ = _video(model)
    full = len(calls)
    set_step_cache(model, 5.0)  # a huge threshold: every step after a segment's first reuses the cache
    try:
        calls.clear()
        got, segs = _video(model)
        assert len(calls) == 3  # one full evaluation per segment (reset at each new segment)
        assert not torch.equal(got, ref)
        # segment 2 sampled on its own from the state after segment 1 equals the loop's segment 2
        cond = model.conditioning("a red ball", segs[0].state.start_latent)
        alone = sample_segment(model, segs[1].state, cond, options=SamplerOptions(steps=6))
        assert torch.equal(alone, segs[2].latents)
    finally:
        set_step_cache(model, None)
        h.remove()
    assert full == 3 * 6


def test_compiled_blocks_give_the_same_video():
    m = PFVGModel.build("tiny", seed=0)
    ref, _ = _video(m, n=1)
    compile_blocks(m, "blocks", backend="eager")  # dynamo capture only: fast on CPU; inductor in the benchmark
    assert torch.equal(_video(m, n=1)[0], ref)


def test_bad_options_are_named():
    m = PFVGModel.build("tiny", seed=0)
    with pytest.raises(ValueError, match="threshold"):
        set_step_cache(m, -1.0)
    with pytest.raises(ValueError, match="compile must be one of"):
        compile_blocks(m, "everything")
    compile_blocks(m, "off")
    assert not any("compiled" in type(b).__name__.lower() or getattr(b, "_compiled_call_impl", None)
                   for b in m.dit.transformer_blocks)
    with pytest.raises(ValueError, match="--threads"):
        set_threads(0)
    assert set_threads(None) == torch.get_num_threads()


def test_cache_and_steps_benchmarks_report_their_figures():
    """The benchmarks' structure and their correctness anchors (not their timings)."""
    from bench.engine import bench_cache, bench_steps

    r = bench_cache(segments=1, thresholds=(0.0, 5.0), repeats=1)
    assert r["thresholds"]["0.0"]["pixel_mae"] == 0.0 and r["thresholds"]["0.0"]["latent_rel"] == 0.0
    assert r["thresholds"]["5.0"]["latent_rel"] > 0 and r["uncached_seconds"] > 0
    s = bench_steps(segments=1, seeds=(0,), unipc=(4, 12))
    assert set(s["table"]) == {"euler-12", "unipc-4", "unipc-12"}
    assert s["table"]["unipc-12"]["pixel_mae"] < s["table"]["unipc-4"]["pixel_mae"]  # more steps, closer to the reference


# --- fp8 compute (torchao) and the step cache recommendation ----------------------------------------
from pfvg_core.speed import (COMPUTE_MODES, compute_mode, fp8_compute_unavailable, fp8_linear_names,  # noqa: E402
                             recommend_threshold, set_compute)


def test_fp8_compute_is_refused_with_a_reason_where_it_cannot_run():
    m = PFVGModel.build("tiny", seed=0)
    why = fp8_compute_unavailable("cpu")
    assert "compute capability ≥ 8.9" in why and "cpu" in why
    with pytest.raises(ValueError, match="fp8 tensor cores"):
        set_compute(m, "fp8")
    with pytest.raises(ValueError, match="compute must be one of"):
        set_compute(m, "int4")
    assert set_compute(m, "dtype") == 0 and compute_mode(m) == "dtype" and COMPUTE_MODES == ("dtype", "fp8", "auto")
    assert set_compute(m, "auto") == 0 and compute_mode(m) == "dtype"  # auto: no fp8 here, no error either


def test_fp8_compute_reports_a_missing_torchao(monkeypatch):
    import importlib.util

    import pfvg_core.speed as speed

    monkeypatch.setattr(speed.torch.cuda, "get_device_capability", lambda dev=None: (9, 0))
    real = importlib.util.find_spec
    monkeypatch.setattr(speed.importlib.util, "find_spec", lambda n, *a: None if n == "torchao" else real(n, *a))
    assert "torchao package" in fp8_compute_unavailable("cuda")
    monkeypatch.setattr(speed.torch.cuda, "get_device_capability", lambda dev=None: (8, 6))
    monkeypatch.setattr(speed.torch.cuda, "get_device_name", lambda dev=None: "RTX 3090")
    assert "RTX 3090 has 8.6" in fp8_compute_unavailable("cuda")


def test_fp8_layers_are_the_block_matmuls_only():
    m = PFVGModel.build("small", seed=0)
    names = fp8_linear_names(m.dit)
    assert names and all(n.split(".")[0] in ("transformer_blocks", "single_transformer_blocks") for n in names)
    assert not any(".norm" in n for n in names)  # AdaLN modulation stays in the compute dtype
    assert {"transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.add_k_proj", "transformer_blocks.0.ff.net.2",
            "single_transformer_blocks.0.proj_mlp", "single_transformer_blocks.0.proj_out"} <= set(names)


def _emulate_fp8_on_cpu(monkeypatch):
    """torchao refuses fp8 quantization without fp8 tensor cores; on the CPU its matmul falls back to an
    emulation, so the wiring (which layers, ψ path, error vs bf16) is testable here."""
    pytest.importorskip("torchao")
    import torchao.float8.inference as inference
    import torchao.quantization.quant_api as quant_api

    import pfvg_core.speed as speed

    for mod in (inference, quant_api):
        if not hasattr(mod, "_check_hardware_support"):
            pytest.skip("this torchao has no _check_hardware_support to bypass on a CPU")
        monkeypatch.setattr(mod, "_check_hardware_support", lambda *a, **k: None)
    monkeypatch.setattr(speed, "fp8_compute_unavailable", lambda dev: None)


@pytest.mark.parametrize("storage", [None, torch.float8_e4m3fn])
def test_fp8_compute_quantizes_the_blocks_and_keeps_the_psi_path(monkeypatch, storage):
    _emulate_fp8_on_cpu(monkeypatch)
    from pfvg_core.backbone import place_dit

    m = PFVGModel.build("small", seed=0, dtype=torch.bfloat16)
    place_dit(m.dit, "cpu", torch.bfloat16, storage)
    m.semanticpack.to(torch.bfloat16).open_gate(-1.0)  # g ≠ 1: the gated ψ attention (extra head channels)
    ref_on, ref_off = _f8_video(m, "on"), _f8_video(m, "off")
    n = set_compute(m, "fp8")
    assert n == len(fp8_linear_names(m.dit)) and compute_mode(m) == "fp8"
    mods = dict(m.dit.named_modules())
    assert all(type(mods[k].weight).__name__ == "Float8Tensor" for k in fp8_linear_names(m.dit))
    assert type(m.dit.transformer_blocks[0].norm1.linear.weight).__name__ != "Float8Tensor"
    assert set_compute(m, "fp8") == 0  # once only
    on, off = _f8_video(m, "on"), _f8_video(m, "off")
    for got, ref in ((on, ref_on), (off, ref_off)):
        rel = float((got - ref).norm() / ref.norm())
        assert torch.isfinite(got).all() and 0 < rel < 0.25, rel
    assert float((on - off).norm() / off.norm()) > 1e-3  # ψ still changes the video


def _f8_video(m, mode):
    from pfvg_core.state import MemoryConfig

    torch.manual_seed(0)
    start = torch.randn(1, 8, 1, 8, 8)
    segs = list(generate_long_video(m, start, "a red ball", 2, seed=1, config=MemoryConfig(window=3, memory_mode=mode),
                                    options=SamplerOptions(steps=3)))
    return torch.cat([s.latents for s in segs], 2).float()


def test_recommend_threshold_picks_the_fastest_within_the_bound():
    curve = [{"threshold": 0.0, "s_per_frame": 0.60, "error": 0.0},
             {"threshold": 0.05, "s_per_frame": 0.50, "error": 0.01},
             {"threshold": 0.1, "s_per_frame": 0.40, "error": 0.03},
             {"threshold": 0.15, "s_per_frame": 0.35, "error": 0.06},
             {"threshold": 0.2, "skipped": "time budget spent"},
             {"threshold": 0.3, "s_per_frame": 0.30, "error": float("nan")}]
    assert recommend_threshold(curve, 0.05)["threshold"] == 0.1
    assert recommend_threshold(curve, 0.06)["threshold"] == 0.15
    assert recommend_threshold(curve, 0.0)["threshold"] == 0.0
    # a non-monotone curve: a larger threshold that is slower (noise) is not preferred
    bumpy = [{"threshold": 0.1, "s_per_frame": 0.40, "error": 0.02}, {"threshold": 0.2, "s_per_frame": 0.41, "error": 0.03}]
    assert recommend_threshold(bumpy, 1.0)["threshold"] == 0.1
    with pytest.raises(ValueError, match="leave the step cache off"):
        recommend_threshold(curve[1:], 0.001)
    with pytest.raises(ValueError, match="error_bound"):
        recommend_threshold(curve, -1)


def test_recommend_settings_takes_the_fastest_portable_row_within_the_bound_and_names_widgets():
    from pfvg_core.backbone import ATTENTION_BACKENDS, OFFLOAD, STORAGE
    from bench.settings import recommend_settings
    from pfvg_core.speed import COMPILE_MODES

    rows = [{"name": "diffusers", "s_per_frame": 0.1, "err_to_bf16": 0.0},
            {"name": "bf16", "compute": "dtype", "attention": "native", "step_cache": None, "compile": "off", "memory": "off",
             "s_per_frame": 0.59, "err_to_bf16": 0.0, "peak_gb": 25.6},
            {"name": "fp8 + compile (first segment)", "compute": "fp8", "compile": "blocks (inductor)", "s_per_frame": 0.01,
             "err_to_bf16": 0.01},
            {"name": "fp8 + compile + cache", "compute": "fp8", "attention": "native", "step_cache": 0.1,
             "compile": "blocks (inductor)", "memory": "off", "s_per_frame": 0.2, "err_to_bf16": 0.09, "peak_gb": 16.0},
            {"name": "fp8 + compile", "compute": "fp8", "attention": "native", "step_cache": None, "compile": "blocks (inductor)",
             "memory": "off", "s_per_frame": 0.30, "err_to_bf16": 0.02, "peak_gb": 16.0},
            {"name": "fp8", "compute": "fp8", "attention": "native", "step_cache": None, "compile": "off",
             "memory": "off", "s_per_frame": 0.33, "err_to_bf16": 0.02, "peak_gb": 16.0},
            {"name": "fp8 + cache", "compute": "fp8", "attention": "native", "step_cache": 0.1, "compile": "off",
             "memory": "off", "s_per_frame": 0.25, "err_to_bf16": 0.09, "peak_gb": 16.0},
            {"name": "bf16 + memory on", "memory": "on", "s_per_frame": 0.2, "err_to_bf16": 0.0},
            {"name": "fp8 storage", "storage": "float8_e4m3fn", "offload": "none", "compute": "dtype", "s_per_frame": 0.3,
             "err_to_bf16": float("nan")},
            {"name": "sage", "attention": "sage", "skipped": "not installed"},
            {"name": "fp8 + flash", "compute": "fp8", "attention": "flash", "step_cache": None, "compile": "off",
             "memory": "off", "s_per_frame": 0.31, "err_to_bf16": 0.0},
            {"name": "flash", "attention": "flash", "failed": "boom", "s_per_frame": 0.01, "err_to_bf16": 0.0}]
    rec = recommend_settings(rows, 0.05)
    assert rec["row"]["name"] == "fp8"  # the compiled and the flash rows are faster but not on every card
    assert rec["widgets"] == {"compute": "auto", "attention": "native", "step_cache": 0.0, "compile": "off",
                              "storage": "auto", "offload": "none"}
    assert rec["fastest"]["row"]["name"] == "fp8 + compile" and rec["fastest"]["widgets"]["compile"] == "blocks"
    loose = recommend_settings(rows, 0.1)
    assert loose["widgets"]["step_cache"] == 0.1 and loose["fastest"]["widgets"]["step_cache"] == 0.1
    for w in (rec["widgets"], rec["fastest"]["widgets"], loose["widgets"]):  # values Load Packed DiT accepts
        assert w["compute"] in COMPUTE_MODES and w["attention"] in ATTENTION_BACKENDS and w["compile"] in COMPILE_MODES
        assert w["storage"] in STORAGE and w["offload"] in OFFLOAD
    with pytest.raises(ValueError, match="peak within 8"):
        recommend_settings(rows, 0.05, max_peak_gb=8)
    with pytest.raises(ValueError, match="error_bound"):
        recommend_settings(rows, float("inf"))


def test_compiled_blocks_recompile_once_when_psi_changes_size_then_never():
    """ψ₀ (prompt ⊕ image features) and ψ after Squeeze (the memory tokens) have different token counts, and the packed
    context fills over the first segments: the compiled blocks trace again at segment 1, then reuse their graphs."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from pfvg_core.loop import SamplerOptions, generate_long_video
    from pfvg_core.model import resolve_model
    from pfvg_core.speed import compile_blocks
    from pfvg_core.state import MemoryConfig

    torch._dynamo.reset()
    counters.clear()
    m = resolve_model("default")
    compile_blocks(m, "blocks", backend="eager")  # dynamo's tracing and guards, without a compiler
    start = torch.randn(1, m.latent_channels, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    graphs = [counters["stats"]["unique_graphs"] for _ in generate_long_video(
        m, start, "a ball", 5, seed=0, config=MemoryConfig(window=4), options=SamplerOptions(steps=2))]
    torch._dynamo.reset()
    assert graphs[1] > graphs[0] > 0 and graphs[2:] == [graphs[1]] * 3, graphs
