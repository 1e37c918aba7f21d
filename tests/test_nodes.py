import os
import sys
import types

import pytest
import torch

import nodes
from nodes import comfy_io
from pfvg_core.model import PFVGModel
from pfvg_core.state import MemoryState

N = nodes.NODE_CLASS_MAPPINGS


@pytest.fixture
def comfy_env(tmp_path, monkeypatch):
    """Fake ComfyUI helper modules: folder_paths, comfy.utils.ProgressBar, comfy.model_management."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.folder_names_and_paths = {}
    fp.get_input_directory = lambda: str(tmp_path / "input")
    fp.get_output_directory = lambda: str(tmp_path / "output")
    dm = tmp_path / "diffusion_models"
    fp.get_filename_list = lambda name: sorted(os.listdir(dm)) if name == "diffusion_models" and dm.exists() else []
    fp.get_full_path = lambda name, f: str(dm / f)
    os.makedirs(tmp_path / "input")
    bars = []

    class ProgressBar:
        def __init__(self, total):
            self.total, self.calls = total, []
            bars.append(self)

        def update_absolute(self, value, total=None, preview=None):
            self.calls.append((value, total, preview))

    cu = types.ModuleType("comfy.utils")
    cu.ProgressBar = ProgressBar
    mm = types.ModuleType("comfy.model_management")
    mm.flag = {"interrupt": False}

    class InterruptProcessingException(Exception):
        pass

    mm.InterruptProcessingException = InterruptProcessingException
    mm.processing_interrupted = lambda: mm.flag["interrupt"]

    def throw():
        if mm.flag["interrupt"]:
            raise InterruptProcessingException()

    mm.throw_exception_if_processing_interrupted = throw
    mm.calls = []  # ComfyUI's memory management as the loader uses it
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.free_memory = lambda size, device: mm.calls.append(("free_memory", size, str(device)))
    mm.soft_empty_cache = lambda: mm.calls.append(("soft_empty_cache",))
    pkg = types.ModuleType("comfy")
    pkg.utils, pkg.model_management = cu, mm
    for name, mod in {"folder_paths": fp, "comfy": pkg, "comfy.utils": cu, "comfy.model_management": mm}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(root=tmp_path, bars=bars, mm=mm)


def _image(h=64, w=64):
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, h, w, 3, generator=g)


def _model():
    return N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]


MEMORY = dict(window=4, schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on", fps=8.0)
SAMPLING = dict(cfg=1.0, distilled_guidance=10.0, shift=0.0, sampler="euler")


def _encode(model, **kw):
    return N["PFVGEncodePsi0"]().encode(model, **{**MEMORY, **kw})


def _memory(model, window=4, prompt="a red ball"):
    return _encode(model, window=window, prompt=prompt, image=_image())[0]


def _sample(model, memory, seed, steps, **kw):
    return N["PFVGSegmentSampler"]().sample(model=model, memory=memory, seed=seed, steps=steps, **{**SAMPLING, **kw})


def _loop(model, memory, seed, segments, prompt_schedule, steps, **kw):
    return N["PFVGLongVideoLoop"]().run(model=model, memory=memory, seed=seed, seconds=10.0, segments=segments,
                                        prompt_schedule=prompt_schedule, steps=steps, **{**SAMPLING, **kw})


def _train(model, dataset, output_name, stage1_steps, stage2_steps, learning_rate=1e-3, **kw):
    return N["PFVGDirectForcingTrain"]().train(model=model, dataset=dataset, output_name=output_name, stage1_steps=stage1_steps,
                                               stage2_steps=stage2_steps, learning_rate=learning_rate,
                                               **{**dict(stage2_params="last-layers+semanticpack", window=4, fps=8.0, seed=0,
                                                         existing="resume"), **kw})


def _check_input_types(spec):
    assert set(spec) <= {"required", "optional", "hidden"} and "required" in spec
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, name
            kind = entry[0]
            assert isinstance(kind, (str, list)), name
            opts = entry[1] if len(entry) > 1 else {}
            if kind in ("INT", "FLOAT"):
                assert "min" in opts and "max" in opts and "default" in opts, f"{name} needs min/max/default"
                assert opts["min"] <= opts["default"] <= opts["max"], name
            if isinstance(kind, list):
                assert opts.get("default", kind[0]) in kind, name


def test_every_node_declares_valid_inputs_and_outputs():
    assert len(N) >= 8 and set(N) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    for key, cls in N.items():
        _check_input_types(cls.INPUT_TYPES())
        assert cls.CATEGORY == "PFVG" and hasattr(cls, cls.FUNCTION)
        assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES), key


def _check_outputs(cls, result):
    if isinstance(result, dict):
        result = result["result"]
    assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES)
    for kind, value in zip(cls.RETURN_TYPES, result):
        if kind == "PFVG_MODEL":
            assert isinstance(value, PFVGModel)
        elif kind == "PFVG_MEMORY":
            assert isinstance(value, MemoryState)
        elif kind == "LATENT":
            assert isinstance(value, dict) and value["samples"].ndim == 5
        elif kind == "IMAGE":
            assert torch.is_tensor(value) and value.ndim == 4 and value.shape[-1] == 3 and 0 <= value.min() and value.max() <= 1
        elif kind == "STRING":
            assert isinstance(value, str)
        elif kind == "FLOAT":
            assert isinstance(value, float) and value > 0
        else:
            raise AssertionError(f"unchecked output type {kind}")


def test_each_node_returns_what_it_declares(comfy_env):
    model = _model()
    _check_outputs(N["PFVGLoadPackedDiT"], (model,))
    mem = _memory(model)
    _check_outputs(N["PFVGEncodePsi0"], (mem,))
    seg = _sample(model, mem, 3, 2, prompt="a red ball")
    _check_outputs(N["PFVGSegmentSampler"], seg)
    step = N["PFVGMemoryPackStep"]().step(model, mem, seg[0])
    _check_outputs(N["PFVGMemoryPackStep"], step)
    out = _loop(model, mem, 3, 2, "0: a red ball", 2)
    _check_outputs(N["PFVGLongVideoLoop"], out)
    assert out[1].shape[0] == 1 + 2 * 4  # the start frame + 2 segments of 4 frames
    dec = N["PFVGDecodeLatents"]().decode(model, out[0], mem)
    _check_outputs(N["PFVGDecodeLatents"], dec)
    assert torch.equal(dec[0], out[1])
    ev = N["PFVGEvaluateDrift"]().evaluate(out[1], 8.0)
    _check_outputs(N["PFVGEvaluateDrift"], ev)
    assert "delta_drift_sharpness" in ev["result"][0]
    w = N["PFVGWorldVideos"]().render("w", 1, 2.0, 8.0, 0)
    _check_outputs(N["PFVGWorldVideos"], w)
    assert sorted(os.listdir(comfy_env.root / "input" / "w")) == ["world_00000.txt", "world_00000.webp"]


@pytest.mark.parametrize("sampler", ["euler", "unipc"])
def test_unrolled_graph_equals_the_loop(comfy_env, sampler):
    model = _model()
    mem = _memory(model)
    loop_latents, loop_mem, = _loop(model, mem, 7, 3, "a red ball", 3, sampler=sampler)[0::2]
    m, chunks = mem, []
    for _ in range(3):
        seg = _sample(model, m, 7, 3, sampler=sampler, prompt="a red ball")[0]
        chunks.append(seg["samples"])
        m = N["PFVGMemoryPackStep"]().step(model, m, seg)[0]
    assert torch.equal(loop_latents["samples"], torch.cat(chunks, 2))
    assert torch.equal(loop_mem.psi, m.psi)


def test_nodes_never_mutate_their_inputs(comfy_env):
    model = _model()
    mem = _memory(model)
    snap = (mem.history.frames.clone(), mem.psi.clone(), mem.segment)
    seg = _sample(model, mem, 3, 2, prompt="x")[0]
    seg_snap = seg["samples"].clone()
    N["PFVGMemoryPackStep"]().step(model, mem, seg)
    _loop(model, mem, 3, 1, "x", 1)
    assert torch.equal(mem.history.frames, snap[0]) and torch.equal(mem.psi, snap[1]) and mem.segment == snap[2]
    assert torch.equal(seg["samples"], seg_snap)


def test_sampler_widget_offers_the_core_samplers(comfy_env):
    from pfvg_core import flow

    assert N["PFVGSegmentSampler"].INPUT_TYPES()["required"]["sampler"][0] == list(flow.SAMPLERS)
    model = _model()
    mem = _memory(model)
    euler, unipc = (_sample(model, mem, 3, 3, sampler=s, prompt="a")[0]["samples"]
                    for s in ("euler", "unipc"))
    assert not torch.equal(euler, unipc)  # a second-order step changes the result


def test_memory_from_another_model_is_refused(comfy_env):
    model, other = _model(), PFVGModel.build("tiny", seed=9)
    mem = _memory(other)
    with pytest.raises(ValueError, match="made by model"):
        _sample(model, mem, 3, 2, prompt="x")


def test_one_progress_bar_over_the_whole_video_with_previews_and_interrupt(comfy_env):
    model = _model()
    mem = _memory(model)
    _loop(model, mem, 3, 3, "x", 2)
    assert len(comfy_env.bars) == 1
    bar = comfy_env.bars[0]
    assert bar.total == 6 and [v for v, _, _ in bar.calls if v is not None][-1] == 6
    values = [v for v, _, _ in bar.calls]
    assert values == sorted(values)  # never reset per segment
    assert sum(p is not None for _, _, p in bar.calls) == 6  # a preview per sampling step (of its denoised estimate)
    calls = {"n": 0}

    def interrupted():
        calls["n"] += 1
        return calls["n"] > 3

    comfy_env.mm.processing_interrupted = interrupted
    comfy_env.mm.flag["interrupt"] = True
    with pytest.raises(comfy_env.mm.InterruptProcessingException):
        _loop(model, mem, 3, 50, "x", 2)
    assert calls["n"] == 4  # stopped at the first sampling step after the interrupt


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "", "C:\\\\x"])
def test_paths_typed_into_nodes_stay_inside_comfy_folders(tmp_path, name):
    with pytest.raises(ValueError):
        comfy_io.safe_join(str(tmp_path), name)


def test_links_out_of_the_folder_are_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="through a link"):
        comfy_io.safe_join(str(tmp_path / "root"), "link/secret")
    assert comfy_io.safe_join(str(tmp_path / "root"), "sub/ok") == str(tmp_path / "root" / "sub" / "ok")


def test_bad_inputs_give_clear_errors(comfy_env):
    model = _model()
    # an odd-sized image is brought to the model's size (pfvg_core.sizing), not refused
    assert _encode(model, prompt="x", image=_image(61, 64))[0].start_latent.shape[-2:] == (16, 16)
    with pytest.raises(ValueError, match=r"fps: expected a finite number in \[0.1, 240\], got nan"):
        _encode(model, prompt="x", image=_image(), fps=float("nan"))
    with pytest.raises(ValueError, match="start image"):
        _encode(model, prompt="x")
    with pytest.raises(ValueError, match="schedule"):
        _encode(model, schedule="f3k3", prompt="x", image=_image())
    with pytest.raises(ValueError, match="memory"):
        N["PFVGMemoryPackStep"]().step(model, "not a state", {"samples": torch.zeros(1, 4, 4, 8, 8)})
    with pytest.raises(ValueError, match="leads outside|'..'"):
        _train(model, "../x", "out", 1, 1, 1e-4, stage2_params="last-layers")
    with pytest.raises(ValueError, match="dataset folder not found"):
        _train(model, "missing", "out", 1, 1, 1e-4, stage2_params="last-layers")
    with pytest.raises(ValueError, match="conditioning"):
        mem = _memory(model)
        _sample(model, mem, 3, 2, conditioning=[[torch.zeros(1, 3, 7), {}]])


def test_direct_forcing_train_node_saves_into_models_and_resumes(comfy_env):
    model = _model()
    ds = N["PFVGWorldVideos"]().render("world", 2, 2.5, 8.0, 0)[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # as ComfyUI runs nodes
        model = _model()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        trained, path = _train(model, ds, "mine", 1, 1)
    assert path == str(comfy_env.root / "models" / "pfvg" / "mine") and os.path.isfile(os.path.join(path, "pfvg.json"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input model is untouched
    assert trained.model_id != model.model_id
    loaded = N["PFVGLoadPackedDiT"]().load("mine", "float32", "(none)")[0]
    assert loaded.model_id == PFVGModel.load(path).model_id
    assert "mine" in N["PFVGLoadPackedDiT"].INPUT_TYPES()["required"]["model_name"][0]
    # run again with more steps: resumes from the finished run's checkpoint
    _train(model, ds, "mine", 1, 2)
    from pfvg_core.train import read_log

    assert [r["global_step"] for r in read_log(os.path.join(path, "run"))] == [1, 2, 3]


def test_pack_entry_imports_without_comfyui():
    import importlib.util

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("pfvg_pack", os.path.join(root, "__init__.py"), submodule_search_locations=[root])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pfvg_pack"] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("pfvg_pack", None)
    assert set(mod.NODE_CLASS_MAPPINGS) == set(N) and mod.WEB_DIRECTORY == "./web"


def test_framepack_dit_from_comfy_diffusion_models_folder(comfy_env):
    from pfvg_core.backbone import build_dit, save_dit

    os.makedirs(comfy_env.root / "diffusion_models")
    save_dit(build_dit("tiny", seed=4), str(comfy_env.root / "diffusion_models" / "f1_tiny.safetensors"))
    names = N["PFVGLoadPackedDiT"].INPUT_TYPES()["required"]["model_name"][0]
    assert "diffusion_models/f1_tiny.safetensors" in names
    model = N["PFVGLoadPackedDiT"]().load("diffusion_models/f1_tiny.safetensors", "float32", "(none)")[0]
    assert model.semanticpack is not None and not model.semanticpack.gate_open  # exactly FramePack-F1
    with pytest.raises(ValueError, match="not found"):
        N["PFVGLoadPackedDiT"]().load("diffusion_models/none.safetensors", "float32", "(none)")


def test_a_widget_is_declared_once_and_reaches_the_engine_as_one_value():
    from dataclasses import dataclass

    from nodes import common as c
    from pfvg_core.loop import SamplerOptions
    from pfvg_core.operations import TrainOptions
    from pfvg_core.framepack import Schedule
    from pfvg_core.options import option
    from pfvg_core.state import MemoryConfig

    @dataclass(frozen=True)
    class Opts:
        n: int = option(3, "count", min=1, max=9)
        x: float = option(0.5, "x", min=0.0, max=1.0, step=0.1)
        mode: str = option("a", "mode", choices=("a", "b"))
        on: bool = option(True, "on")
        internal: int = 7  # not an input

    assert c.widgets(Opts) == {"n": ("INT", {"default": 3, "tooltip": "count", "min": 1, "max": 9}),
                               "x": ("FLOAT", {"default": 0.5, "tooltip": "x", "min": 0.0, "max": 1.0, "step": 0.1}),
                               "mode": (["a", "b"], {"default": "a", "tooltip": "mode"}),
                               "on": ("BOOLEAN", {"default": True, "tooltip": "on"})}
    assert c.options(Opts, {"n": 4, "x": 0.1, "mode": "b", "on": False, "seed": 3}) == Opts(4, 0.1, "b", False)
    # the nodes' widgets are exactly the engine's declared options
    for key, cls in [("PFVGSegmentSampler", SamplerOptions), ("PFVGLongVideoLoop", SamplerOptions),
                     ("PFVGEncodePsi0", MemoryConfig), ("PFVGDirectForcingTrain", TrainOptions)]:
        required = N[key].INPUT_TYPES()["required"]
        assert {k: required[k] for k in c.widgets(cls)} == c.widgets(cls), key
    # widget values become engine values: shift 0 = resolution-dependent, schedule text is parsed
    assert c.options(SamplerOptions, {"steps": 3, "shift": 0.0}).shift is None
    assert c.options(MemoryConfig, {"schedule": "tc_f8k4f2k2f1k1"}).schedule == Schedule.parse("tc_f8k4f2k2f1k1")
