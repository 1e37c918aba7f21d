"""The nodes with ComfyUI stubbed: training never overwrites a model unless asked, an
interrupt raised inside the step hook keeps the finished step, events go to the job's client with
its prompt id, the nodes use the engine's validation, and a seeded fuzz of every node input ends in
a clear error or a finite output."""
import math
import os
import random
import sys
import types

import pytest
import torch

from pfvg_core.model import PFVGModel
from pfvg_core.train import read_log
from test_nodes import N, _image, _loop, _memory, _model, _sample, _train, comfy_env  # noqa: F401  (fixture)


@pytest.fixture
def world(comfy_env):
    return N["PFVGWorldVideos"]().render("world", 2, 2.5, 8.0, 0)[0]


def test_training_refuses_an_existing_model_unless_asked(comfy_env, world):
    model = _model()
    folder = comfy_env.root / "models" / "pfvg" / "theirs"
    PFVGModel.build("tiny", seed=1).save(str(folder))
    before = (folder / "dit.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a model.*'resume'.*'overwrite'"):
        _train(model, world, "theirs", 1, 0, existing="refuse")
    with pytest.raises(ValueError, match="no training checkpoint to resume"):
        _train(model, world, "theirs", 1, 0, existing="resume")
    assert (folder / "dit.safetensors").read_bytes() == before  # untouched
    trained, path = _train(model, world, "theirs", 1, 0, existing="overwrite")
    assert PFVGModel.load(path).model_id == trained.model_id != PFVGModel.build("tiny", seed=1).model_id
    _train(model, world, "theirs", 1, 1, existing="resume")  # a run of ours: resumes
    assert [r["global_step"] for r in read_log(os.path.join(path, "run"))] == [1, 2]


def test_an_interrupt_raised_in_the_progress_hook_keeps_the_finished_step(comfy_env, world):
    """ComfyUI's progress-bar hook raises InterruptProcessingException inside the trainer's step hook."""
    mm, bars = comfy_env.mm, comfy_env.bars
    real = sys.modules["comfy.utils"].ProgressBar

    class HookedBar(real):
        def update_absolute(self, value, total=None, preview=None):
            super().update_absolute(value, total, preview)
            if value >= 3:
                raise mm.InterruptProcessingException()

    sys.modules["comfy.utils"].ProgressBar = HookedBar
    model = _model()
    with pytest.raises(mm.InterruptProcessingException):
        _train(model, world, "mine", 20, 0)  # save_every = 2: step 3 is not a periodic checkpoint
    run = comfy_env.root / "models" / "pfvg" / "mine" / "run"
    assert (run / "checkpoints" / "latest").read_text() == "step-00000003"
    assert [r["global_step"] for r in read_log(str(run))] == [1, 2, 3]
    sys.modules["comfy.utils"].ProgressBar = real
    calls = {"n": 0}
    mm.processing_interrupted = lambda: (calls.__setitem__("n", calls["n"] + 1) or calls["n"] > 2)
    with pytest.raises(mm.InterruptProcessingException):
        mm.flag["interrupt"] = True
        _train(model, world, "mine", 20, 0, existing="resume")  # resumes at 3, does 2 steps, cancelled
    assert [r["global_step"] for r in read_log(str(run))] == [1, 2, 3, 4, 5]  # no step logged twice
    assert (run / "checkpoints" / "latest").read_text() == "step-00000005"


@pytest.fixture
def server(monkeypatch):
    sent = []

    class PromptServer:
        instance = None

        def __init__(self):
            self.client_id, self.last_prompt_id = "client-a", "prompt-1"

        def send_sync(self, event, data, sid=None):
            sent.append((event, data, sid))

    PromptServer.instance = PromptServer()
    mod = types.ModuleType("server")
    mod.PromptServer = PromptServer
    monkeypatch.setitem(sys.modules, "server", mod)
    return types.SimpleNamespace(sent=sent, instance=PromptServer.instance)


def test_progress_events_go_to_the_jobs_client_with_its_prompt_id(comfy_env, server):
    model = _model()
    _loop(model, _memory(model), 3, 2, "x", 1)
    events = [(d, sid) for e, d, sid in server.sent if e == "pfvg.progress"]
    assert len(events) == 2 and all(sid == "client-a" and d["prompt_id"] == "prompt-1" for d, sid in events)
    server.sent.clear()
    server.instance.client_id = None  # a prompt queued without a client id: nobody to address, nothing broadcast
    _loop(model, _memory(model), 3, 1, "x", 1)
    assert not [e for e in server.sent if e[0] == "pfvg.progress"]


@pytest.mark.parametrize("kw, msg", [
    (dict(cfg=math.nan), "cfg: expected a finite number"),
    (dict(distilled_guidance=math.nan), "distilled_guidance: expected a finite number"),
    (dict(shift=math.inf), "shift: expected a finite number"),
    (dict(shift=math.nan), "shift: expected a finite number"),
    (dict(steps=0), "steps: expected an integer in [1, 1000]"),
    (dict(prompt_schedule="0: a cat\nabc: x"), "line 2 'abc: x' has no start time"),
])
def test_loop_node_uses_the_engines_validation(comfy_env, kw, msg):
    model = _model()
    args = dict(prompt_schedule="a cat", steps=1)
    args.update(kw)
    with pytest.raises(ValueError) as e:
        _loop(model, _memory(model), 3, 1, **args)
    assert msg in str(e.value)


def test_other_nodes_use_the_engines_validation(comfy_env):
    model = _model()
    loop = N["PFVGLongVideoLoop"]()
    base = dict(model=model, memory=_memory(model), seed=0, segments=0, prompt_schedule="x", steps=1, cfg=1.0,
                distilled_guidance=10.0, shift=0.0, sampler="euler")
    with pytest.raises(ValueError, match="seconds: expected a finite number"):
        loop.run(seconds=math.inf, **base)
    with pytest.raises(ValueError, match="fps: expected a finite number"):
        N["PFVGEncodePsi0"]().encode(model, window=4, schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on",
                                     fps=math.nan, prompt="x", image=_image())
    with pytest.raises(ValueError, match="learning_rate: expected a finite number"):
        _train(model, "world", "x", 1, 1, learning_rate=math.nan)
    with pytest.raises(ValueError, match="seconds: expected a finite number"):
        N["PFVGWorldVideos"]().render("w", 1, math.nan, 8.0, 0)
    with pytest.raises(ValueError, match="fps: expected a finite number"):
        N["PFVGEvaluateDrift"]().evaluate(torch.rand(4, 16, 16, 3), math.inf)


NUMBERS = [math.nan, math.inf, -math.inf, -1, 0, 0.5, 1, 2, 1e308, 2**70, -(2**70)]
TEXTS = ["", " ", "x" * 100_000, "abc: x", "0: a\n1: b", "a\n5: b", "\x00", "0: a\n0: b", "[3s] late", "f3k3", "td_f4k4f1k1"]


def _check(where, fn):
    try:
        out = fn()
    except ValueError as e:  # the clear error every bad input must end in
        text = str(e)
        clear = bool(text.strip()) and len(text) < 700
        assert clear, f"{where}: error of {len(text)} characters: {text[:200]}"
        return "error"
    for t in out if isinstance(out, tuple) else (out,):
        t = t.get("samples") if isinstance(t, dict) else t
        if torch.is_tensor(t) and t.is_floating_point():
            finite = bool(torch.isfinite(t).all())
            assert finite, f"{where}: non-finite output"
    return "ok"


def test_fuzz_node_inputs(comfy_env):
    """Seeded: each widget of the sampling nodes gets random bad values (as ComfyUI's API passes them:
    NaN and out-of-range numbers included)."""
    rng = random.Random(int(os.environ.get("PFVG_FUZZ_SEED", "1515")))  # CI: fixed; set it to explore
    model = _model()
    memory = _memory(model)
    loop = dict(seed=0, seconds=0.5, segments=1, prompt_schedule="x", steps=1, cfg=1.0, distilled_guidance=10.0,
                shift=0.0, sampler="euler")
    encode = dict(window=2, schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on", fps=8.0, prompt="x")
    outcomes = []
    for name in loop:
        pool = TEXTS if isinstance(loop[name], str) else NUMBERS
        for value in rng.sample(pool, 4):
            args = {**loop, name: value}
            outcomes.append(_check(f"loop {name}={str(value)[:30]!r}", lambda: N["PFVGLongVideoLoop"]().run(model=model, memory=memory, **args)))
            if name not in ("seconds", "segments", "prompt_schedule"):
                sargs = {k: v for k, v in args.items() if k not in ("seconds", "segments", "prompt_schedule")}
                outcomes.append(_check(f"sampler {name}", lambda: N["PFVGSegmentSampler"]().sample(model=model, memory=memory, prompt="x", **sargs)))
    for name in encode:
        pool = TEXTS if isinstance(encode[name], str) else NUMBERS
        for value in rng.sample(pool, 4):
            args = {**encode, name: value}
            outcomes.append(_check(f"encode {name}={str(value)[:30]!r}", lambda: N["PFVGEncodePsi0"]().encode(model, image=_image(), **args)))
    for value in rng.sample(NUMBERS, 4):
        outcomes.append(_check(f"evaluate fps={value}", lambda: N["PFVGEvaluateDrift"]().evaluate(torch.rand(4, 16, 16, 3), value)))
    assert outcomes.count("error") > 10 and outcomes.count("ok") > 5
