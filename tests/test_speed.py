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
    from pfvg_core.tools.bench import bench_cache, bench_steps

    r = bench_cache(segments=1, thresholds=(0.0, 5.0), repeats=1)
    assert r["thresholds"]["0.0"]["pixel_mae"] == 0.0 and r["thresholds"]["0.0"]["latent_rel"] == 0.0
    assert r["thresholds"]["5.0"]["latent_rel"] > 0 and r["uncached_seconds"] > 0
    s = bench_steps(segments=1, seeds=(0,), unipc=(4, 12))
    assert set(s["table"]) == {"euler-12", "unipc-4", "unipc-12"}
    assert s["table"]["unipc-12"]["pixel_mae"] < s["table"]["unipc-4"]["pixel_mae"]  # more steps, closer to the reference
