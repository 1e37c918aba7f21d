import pytest
import torch

from pfvg_core.framepack import Schedule
from pfvg_core.loop import (Cancelled, PromptSchedule, SamplerOptions, generate_long_video, sample_segment,
                            segments_for_seconds)
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryConfig, StateMismatch, init_state, step

FAST = SamplerOptions(steps=2)


def _video(model, start, n=3, **kw):
    return torch.cat([r.latents for r in generate_long_video(model, start, "a red ball", n, options=kw.pop("options", FAST), **kw)], 2)


def test_same_seed_same_video_other_seed_other_video(tiny_model, start_latent):
    a = _video(tiny_model, start_latent, seed=5)
    b = _video(tiny_model, start_latent, seed=5)
    c = _video(tiny_model, start_latent, seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_step_returns_a_new_state_and_never_mutates_its_input(tiny_model, start_latent):
    cond = tiny_model.conditioning("x", start_latent)
    s0 = init_state(tiny_model, start_latent, cond)
    s1 = step(tiny_model, s0, sample_segment(tiny_model, s0, cond, options=FAST))
    snap = {k: v.clone() for k, v in [("h", s1.history.frames), ("i", s1.history.indices), ("p", s1.psi), ("s", s1.start_latent)]}
    s2 = step(tiny_model, s1, sample_segment(tiny_model, s1, cond, options=FAST))
    assert s2 is not s1 and s2.segment == s1.segment + 1 == 2
    assert torch.equal(s1.history.frames, snap["h"]) and torch.equal(s1.history.indices, snap["i"])
    assert torch.equal(s1.psi, snap["p"]) and torch.equal(s1.start_latent, snap["s"])
    assert s2.next_index == 1 + 2 * 9
    with pytest.raises(Exception):
        s1.segment = 7  # frozen


def test_sampling_twice_from_one_state_gives_the_same_segment(tiny_model, start_latent):
    """Chaining nodes = the loop: a state fully determines the next segment."""
    cond = tiny_model.conditioning("a red ball", start_latent)
    s = init_state(tiny_model, start_latent, cond, seed=3)
    assert torch.equal(sample_segment(tiny_model, s, cond, options=FAST), sample_segment(tiny_model, s, cond, options=FAST))
    loop = _video(tiny_model, start_latent, n=2, seed=3)
    unrolled = []
    for _ in range(2):
        x = sample_segment(tiny_model, s, cond, options=FAST)
        unrolled.append(x)
        s = step(tiny_model, s, x)
    assert torch.equal(loop, torch.cat(unrolled, 2))


def test_state_from_another_model_is_refused(tiny_model, start_latent):
    other = PFVGModel.build("tiny", seed=1)
    cond = other.conditioning("x", start_latent)
    s = init_state(other, start_latent, cond)
    with pytest.raises(StateMismatch, match="made by model"):
        sample_segment(tiny_model, s, tiny_model.conditioning("x", start_latent), options=FAST)
    with pytest.raises(StateMismatch):
        step(tiny_model, s, torch.zeros(1, 4, 9, 16, 16))


def test_progress_and_cancel_are_called_every_sampling_step(tiny_model, start_latent):
    events, checks = [], []
    list(generate_long_video(tiny_model, start_latent, "x", 3, options=SamplerOptions(steps=4),
                             on_step=events.append, cancel=lambda: checks.append(1) and False))
    assert len(events) == 12 and len(checks) >= 12
    assert [(e.segment, e.step) for e in events[:5]] == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 6

    with pytest.raises(Cancelled, match="segment 1, step 3"):
        list(generate_long_video(tiny_model, start_latent, "x", 5, options=SamplerOptions(steps=4), cancel=cancel))


def test_history_and_memory_stay_bounded(tiny_model, start_latent):
    sizes = []
    for r in generate_long_video(tiny_model, start_latent, "x", 6, options=SamplerOptions(steps=1)):
        sizes.append((r.state.history.frames.shape[2], r.state.memory_tokens))
    assert sizes[-1] == sizes[-2] == (19, tiny_model.semanticpack.config.memory_tokens)


@pytest.mark.parametrize("config", [MemoryConfig(memory_mode="off"), MemoryConfig(memory_mode="zero"), MemoryConfig(rope="local"),
                                    MemoryConfig(window=4, schedule=Schedule.parse("tc_f8k4f2k2f1k1"))])
def test_memory_modes_and_layouts_run(fresh_model, start_latent, config):
    fresh_model.semanticpack.open_gate(0.0)
    fresh_model.refresh_id()
    out = list(generate_long_video(fresh_model, start_latent, "x", 3, config=config, options=FAST))
    assert out[-1].latents.shape == (1, 4, config.window, 16, 16) and torch.isfinite(out[-1].latents).all()
    if config.memory_mode == "off":
        assert out[-1].state.psi is None


def test_zero_psi0_changes_the_video_when_memory_is_trained(fresh_model, start_latent):
    fresh_model.semanticpack.open_gate(0.0)
    fresh_model.refresh_id()
    a = _video(fresh_model, start_latent, n=1, config=MemoryConfig(memory_mode="on"))
    b = _video(fresh_model, start_latent, n=1, config=MemoryConfig(memory_mode="zero"))
    assert not torch.allclose(a, b)


def test_cfg_with_negative_prompt_changes_the_result(tiny_model, start_latent):
    a = _video(tiny_model, start_latent, n=1, options=SamplerOptions(steps=2, cfg=1.0), negative_prompt="blur")
    b = _video(tiny_model, start_latent, n=1, options=SamplerOptions(steps=2, cfg=4.0), negative_prompt="blur")
    assert not torch.allclose(a, b)


def test_prompt_schedule_gives_each_segment_its_prompt(tiny_model, start_latent):
    sched = PromptSchedule.parse("0: a cat\n[2.5s] a dog\n5: a bird")
    assert [sched.prompt_at(t) for t in (0, 2.4, 2.5, 4.9, 5, 60)] == ["a cat", "a cat", "a dog", "a dog", "a bird", "a bird"]
    # window 9 at 4 fps: segment n starts at 9n/4 s → 0, 2.25, 4.5, 6.75
    got = [r.prompt for r in generate_long_video(tiny_model, start_latent, sched, 4, fps=4.0, options=SamplerOptions(steps=1))]
    assert got == ["a cat", "a cat", "a dog", "a bird"]
    with pytest.raises(ValueError, match="not after"):
        PromptSchedule.parse("0: x\n5: a\n2: b")
    with pytest.raises(ValueError, match="empty"):
        PromptSchedule.parse("\n  \n")


def test_bad_inputs_are_named(tiny_model, start_latent):
    with pytest.raises(ValueError, match="seconds"):
        segments_for_seconds(0, 8, 9)
    assert segments_for_seconds(60, 8, 9) == 54
    with pytest.raises(ValueError, match="start_latent"):
        init_state(tiny_model, torch.zeros(1, 4, 16, 16), None)
    with pytest.raises(ValueError, match="channels"):
        init_state(tiny_model, torch.zeros(1, 3, 1, 16, 16), None)
    with pytest.raises(ValueError, match="steps"):
        SamplerOptions(steps=0)
    with pytest.raises(ValueError, match="rope"):
        MemoryConfig(rope="abs")
    cond = tiny_model.conditioning("x", start_latent)
    s = init_state(tiny_model, start_latent, cond)
    with pytest.raises(ValueError, match="segment shape"):
        step(tiny_model, s, torch.zeros(1, 4, 9, 8, 8))


def test_bundles_saved_with_older_option_names_still_load(tmp_path):
    """SemanticPack's ``window`` (tokens per Memorize window) is now ``memorize_window``; old bundles load."""
    import json

    model = PFVGModel.build("tiny", semanticpack={"memorize_window": 32}, seed=2)
    model.save(str(tmp_path))
    cfg = json.load(open(tmp_path / "pfvg.json"))
    cfg["semanticpack"]["window"] = cfg["semanticpack"].pop("memorize_window")
    json.dump(cfg, open(tmp_path / "pfvg.json", "w"))
    loaded = PFVGModel.load(str(tmp_path))
    assert loaded.semanticpack.config.memorize_window == 32
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_operations_long_video_collects_the_loop_and_picks_one_prompt_source(tiny_model, start_latent):
    """operations.long_video = the loop's segments concatenated + its last state; loop_prompt's sources and error."""
    from pfvg_core import operations as ops

    cond = tiny_model.conditioning("a red ball", start_latent)
    state = init_state(tiny_model, start_latent, cond, seed=3, config=MemoryConfig(window=3), fps=8)
    opts = SamplerOptions(steps=2)
    prompt, fixed = ops.loop_prompt(tiny_model, state, schedule_text="0: a red ball\n[1s] a blue ball")
    assert isinstance(prompt, PromptSchedule) and fixed is None
    latents, last = ops.long_video(tiny_model, state, 3, prompt, seed=3, options=opts)
    ref = list(generate_long_video(tiny_model, state, prompt, 3, seed=3, options=opts))
    assert torch.equal(latents, torch.cat([r.latents for r in ref], dim=2)) and last.segment == ref[-1].state.segment == 3
    tokens = cond.prompt_embeds
    _, fixed = ops.loop_prompt(tiny_model, state, schedule_text="0: ignored", features=(tokens, cond.pooled))
    assert fixed is not None and torch.equal(fixed.prompt_embeds.float(), tokens.float())
    with pytest.raises(ValueError, match="prompt schedule"):
        ops.loop_prompt(tiny_model, state, schedule_text="  ")
