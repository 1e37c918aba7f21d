"""The pack as a native ComfyUI citizen, tested with stand-ins for ComfyUI's modules (CI has no
ComfyUI): a first run that needs no upload, inputs brought to the model's size, one source of truth for
inputs, the CPU thread rule, and the model held by ComfyUI's memory manager."""
import importlib
import os
import sys
import types

import numpy as np
import pytest
import torch

import nodes
from nodes import comfy_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = nodes.NODE_CLASS_MAPPINGS


def _fake_folder_paths(monkeypatch, tmp_path):
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    fp.folder_names_and_paths = {}
    fp.get_input_directory = lambda: str(tmp_path / "input")
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return fp


# --- a first run that works --------------------------------------------------------------------
def test_demo_start_image_is_copied_into_a_fresh_input_folder_once(tmp_path, monkeypatch):
    _fake_folder_paths(monkeypatch, tmp_path)
    written = comfy_io.install_demo_inputs()
    dst = tmp_path / "input" / "pfvg_start.png"
    assert written == [str(dst)]
    assert dst.read_bytes() == open(os.path.join(ROOT, "demo", "start.png"), "rb").read()
    assert [p.name for p in (tmp_path / "input").iterdir()] == ["pfvg_start.png"]  # no temporary file left
    dst.write_bytes(b"the user's own image")  # never replaced
    assert comfy_io.install_demo_inputs() == []
    assert dst.read_bytes() == b"the user's own image"


def test_demo_inputs_install_is_a_no_op_without_comfyui(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "folder_paths", None)  # import folder_paths → ImportError
    monkeypatch.chdir(tmp_path)
    assert comfy_io.install_demo_inputs() == [] and not (tmp_path / "input").exists()


def test_every_template_image_is_a_demo_input():
    sys.path.insert(0, os.path.join(ROOT, "example_workflows"))
    mw = importlib.import_module("make_workflows")
    for name, build in mw.WORKFLOWS.items():
        for node in build().api().values():
            if node["class_type"] == "LoadImage":
                assert node["inputs"]["image"] in comfy_io.DEMO_INPUTS, name


# --- inputs at the model's size ------------------------------------------------------------------
def test_framepack_buckets_match_framepack_at_640_and_scale_to_multiples_of_16():
    from pfvg_core.sizing import nearest_bucket

    assert nearest_bucket(768, 768) == (640, 608)  # FramePack's find_nearest_bucket: ties go to the later bucket
    assert nearest_bucket(720, 1280) == (480, 832) and nearest_bucket(1280, 720) == (832, 480)
    for res in (320, 640, 960, 1280):
        for h, w in ((720, 1280), (1080, 1080), (1200, 500)):
            bh, bw = nearest_bucket(h, w, res)
            assert bh % 16 == 0 and bw % 16 == 0
            assert abs(bh * bw - res * res) / (res * res) < 0.1  # about resolution² pixels
    assert nearest_bucket(720, 1280, 960) == (720, 1248)


def test_one_size_rule_for_cli_and_nodes_crop_keeps_the_aspect():
    from pfvg_core.sizing import fit_frame, model_size

    meta = {"resolution": [64, 48]}
    assert model_size(meta, 4, 1000, 3000) == (64, 48)  # a codec model: its native size whatever comes in
    assert model_size({}, 4, 10, 10) == (64, 64)
    assert model_size({}, None, 720, 1280) == (832, 480)  # FramePack-F1: the bucket, (W, H)
    # a wide image with a red centre: crop keeps the centre square red, stretch squeezes the white sides in
    frame = np.full((40, 120, 3), 255, np.uint8)
    frame[:, 40:80] = (255, 0, 0)
    cropped, stretched = fit_frame(frame, (32, 32), "crop"), fit_frame(frame, (32, 32), "stretch")
    assert cropped.shape == stretched.shape == (32, 32, 3)
    assert cropped[:, :, 1].max() < 30  # all red
    assert stretched[:, 0, 1].min() > 200  # white border kept
    with pytest.raises(ValueError, match="fit"):
        fit_frame(frame, (32, 32), "zoom")


@pytest.fixture(scope="module")
def model():
    return N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]


MEMORY = dict(window=4, schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on", fps=8.0)


def test_encode_brings_a_large_image_to_the_native_size_like_the_cli(model, tmp_path):
    from PIL import Image

    from pfvg_core.video_io import load_image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.png")
    image = torch.from_numpy(arr.astype(np.float32) / 255)[None]
    state = N["PFVGEncodePsi0"]().encode(model, image=image, prompt="a ball", **MEMORY)[0]
    f = model.codec.factor
    assert state.start_latent.shape[-2:] == (64 // f, 64 // f)
    cli = load_image(str(tmp_path / "big.png"), size=(64, 64), multiple=f)  # the CLI's path to the same pixels
    with torch.no_grad():
        want = model.codec.encode(cli)
    assert torch.allclose(state.start_latent, want, atol=2e-2)


def test_extend_video_brings_frames_to_the_native_size(model):
    frames = torch.rand(9, 240, 320, 3, generator=torch.Generator().manual_seed(0))
    state = N["PFVGExtendVideo"]().extend(model, images=frames, prompt="x", **MEMORY)[0]
    assert state.start_latent.shape[-2:] == (16, 16) and state.history.frames.shape[-2:] == (16, 16)


def test_f1_image_path_needs_a_vae_and_uses_the_bucket(model, monkeypatch):
    """A model without a codec (FramePack-F1) takes the image through ComfyUI's VAE at the bucket size."""
    from types import SimpleNamespace

    seen = []

    class VAE:
        def encode(self, pixels):
            seen.append(tuple(pixels.shape))
            return torch.zeros(1, 16, 1, pixels.shape[1] // 8, pixels.shape[2] // 8)

    f1 = SimpleNamespace(codec=None, meta={}, latent_scale=0.5)
    image = torch.rand(1, 720, 1280, 3)
    resized = comfy_io.fit_image(f1, image, "crop", 640)
    assert tuple(resized.shape) == (1, 480, 832, 3)
    lat = comfy_io.vae_encode(f1, VAE(), resized)
    assert seen == [(1, 480, 832, 3)] and lat.shape == (1, 16, 1, 60, 104)
    with pytest.raises(ValueError, match="connect its VAE"):
        comfy_io.vae_encode(f1, None, resized)


# --- one source of truth for inputs -----------------------------------------------------------------
OWN_RANGES = ("PFVGWorldVideos", "PFVGDirectForcingTrain")  # training data and TrainOptions: ranges of their own


def test_widget_ranges_are_the_validation_ranges():
    from pfvg_core.loop import SamplerOptions
    from pfvg_core.operations import TrainOptions
    from pfvg_core.options import inputs, limits
    from pfvg_core.state import MemoryConfig
    from pfvg_core.validate import SAMPLING

    for cls in (SamplerOptions, MemoryConfig, TrainOptions):
        specs = inputs(cls)
        for name, limit in limits(cls).items():
            assert (specs[name]["min"], specs[name]["max"]) == (limit.lo, limit.hi), f"{cls.__name__}.{name}"
    for name in ("steps", "cfg", "distilled_guidance", "window"):  # the engine's table, the widget's range
        spec = inputs(SamplerOptions).get(name) or inputs(MemoryConfig)[name]
        assert (spec["min"], spec["max"]) == (SAMPLING[name].lo, SAMPLING[name].hi), name
    for key, cls in N.items():
        it = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in it.get(section, {}).items():
                if entry[0] in ("INT", "FLOAT") and name in SAMPLING and key not in OWN_RANGES:
                    lim = SAMPLING[name]
                    # 0 as "automatic": shift's resolution-dependent default, the loop's segments from seconds
                    lo = 0 if name in ("shift", "segments") else lim.lo
                    assert (entry[1]["min"], entry[1]["max"]) == (lo, lim.hi), f"{key}.{name}"


def test_every_number_input_refuses_non_finite_values_naming_the_input(model):
    """Each INT/FLOAT input of each node, given NaN or inf, fails before any work with its own range."""
    from nodes.common import number_inputs

    checked = 0
    for key, cls in N.items():
        for name, (kind, limit) in number_inputs(cls).items():
            for bad in (float("nan"), float("inf")):
                with pytest.raises(ValueError, match=rf"^{name}: expected .* in \[") as e:
                    getattr(cls(), cls.FUNCTION)(**{name: bad})  # other inputs missing: the check comes first
                assert str(bad) in str(e.value)
            checked += 1
    assert checked >= 20
    with pytest.raises(ValueError, match=r"step_cache: expected a finite number in \[0, 1\], got nan"):
        N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)", step_cache=float("nan"))


def test_schedule_error_says_what_is_expected_once():
    from pfvg_core.state import MemoryConfig

    for text in ("xyz", "td_f16k4f2", ""):
        with pytest.raises(ValueError) as e:
            MemoryConfig(window=4, schedule=text)
        assert str(e.value).count("expected") == 1, str(e.value)


def test_help_pages_list_every_input_with_its_tooltip():
    for key, cls in N.items():
        text = open(os.path.join(ROOT, "web", "docs", f"{key}.md"), encoding="utf-8").read()
        it = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in it.get(section, {}).items():
                line = next((ln for ln in text.splitlines() if ln.startswith(f"- **{name}**")), None)
                assert line is not None, f"{key}.md does not list {name}"
                assert line.endswith(entry[1]["tooltip"]), f"{key}.md: {name}'s tooltip"
                if entry[0] in ("INT", "FLOAT"):
                    assert "in [" in line
        for name in cls.RETURN_NAMES:
            assert f"- **{name}** (" in text, f"{key}.md does not list the output {name}"


# --- the CPU thread rule --------------------------------------------------------------------------
def test_cpu_thread_rule_is_the_clis_unless_the_user_set_one():
    from pfvg_core.cli import build_parser

    generate = next(a for a in build_parser()._subparsers._group_actions[0].choices["generate"]._actions
                    if a.dest == "threads")
    assert comfy_io.DEFAULT_CPU_THREADS == generate.default == 1  # the same rule as the CLI
    assert comfy_io.cpu_threads_wanted({}) == 1
    assert comfy_io.cpu_threads_wanted({"PFVG_THREADS": "3"}) == 3
    assert comfy_io.cpu_threads_wanted({"OMP_NUM_THREADS": "8"}) is None  # torch read it: left alone
    with pytest.raises(ValueError, match="PFVG_THREADS: expected an integer"):
        comfy_io.cpu_threads_wanted({"PFVG_THREADS": "many"})


def test_cpu_threads_are_set_while_the_pack_computes_and_restored_after(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setenv("PFVG_THREADS", "2")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with comfy_io.cpu_threads(torch.device("cpu")):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with comfy_io.cpu_threads(torch.device("cuda")):  # not a CPU run: untouched
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- the model in ComfyUI's memory manager ----------------------------------------------------------
@pytest.fixture
def comfy_mm(tmp_path, monkeypatch):
    """ComfyUI's ModelPatcher and loader as they move weights (tests/fake_card.py), with the CPU as both devices."""
    from fake_card import install_comfy

    _fake_folder_paths(monkeypatch, tmp_path)
    return install_comfy(monkeypatch, card=torch.device("cpu"))


def test_loader_returns_a_model_patcher_and_every_run_asks_comfy_to_load_it(comfy_mm):
    from pfvg_core.model import PFVGModel

    patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    assert isinstance(patcher, comfy_mm.ModelPatcher) and isinstance(patcher.model.pfvg, PFVGModel)
    assert isinstance(patcher.model, torch.nn.Module)  # ComfyUI sizes and moves it as a module
    weights = sum(p.numel() for p in patcher.model.pfvg.parameters())
    assert weights > 0 and weights == sum(p.numel() for p in patcher.model.parameters())
    assert comfy_mm.calls == []  # loading the file is not running it: nothing asked of the memory manager
    state = N["PFVGEncodePsi0"]().encode(patcher, image=torch.rand(1, 64, 64, 3), prompt="a ball", **MEMORY)[0]
    lat, images, last, fps = N["PFVGLongVideoLoop"]().run(patcher, state, seed=0, seconds=1.0, segments=1,
                                                         prompt_schedule="a ball", steps=1, cfg=1.0,
                                                         distilled_guidance=10.0, shift=2.0, sampler="unipc")
    loads = [c for c in comfy_mm.calls if c[0] == "load_models_gpu"]
    assert len(loads) == 2 and all(c[1] == [patcher] for c in loads)  # before Encode ψ₀ and before the loop
    assert not any(c[0] == "free_memory" for c in comfy_mm.calls)  # no unload_all / manual eviction
    assert images.shape[0] == 5 and fps == 8.0


def test_lora_view_is_a_clone_of_the_patcher_sharing_weights(comfy_mm):
    patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    base = comfy_io.unwrap(patcher)
    view = base  # a stand-in view: with_view must not care what the view holds
    clone = comfy_io.with_view(patcher, view)
    assert clone is not patcher and clone.parent is patcher and clone.model is patcher.model
    assert comfy_io.unwrap(clone) is view and comfy_io.unwrap(patcher) is base
    with pytest.raises(ValueError, match="model: expected a PFVG model"):
        comfy_io.unwrap("not a model")


def test_the_demo_image_ships_with_the_pack():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        includes = tomllib.load(f)["tool"]["comfy"]["includes"]
    for src in comfy_io.DEMO_INPUTS.values():
        assert os.path.isfile(src) and os.path.relpath(src, ROOT).split(os.sep)[0] in includes


def test_fp8_compute_waits_until_comfyui_has_placed_the_model(comfy_mm, monkeypatch):
    """Load Packed DiT's compute fp8 needs the model on its GPU; ComfyUI keeps it on the offload device until a node
    runs, so the loader checks the card and load_for_run applies fp8 (then compile) after load_models_gpu."""
    import pfvg_core.speed as speed

    applied = []
    monkeypatch.setattr(speed, "fp8_compute_unavailable", lambda device: None)  # as on an fp8 card
    monkeypatch.setattr(speed, "set_compute", lambda model, compute: applied.append(("compute", compute, len(comfy_mm.calls))))
    monkeypatch.setattr(speed, "compile_blocks", lambda model, mode: applied.append(("compile", mode, len(comfy_mm.calls))))
    patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)", compute="fp8", compile="blocks")[0]
    assert applied == []  # nothing at load time: the model is not where it computes yet
    comfy_io.load_for_run(patcher)
    assert applied == [("compute", "fp8", 1), ("compile", "blocks", 1)]  # after the first load, in that order
    comfy_io.load_for_run(patcher)
    assert len(applied) == 2  # once
    monkeypatch.setattr(speed, "fp8_compute_unavailable", lambda device: "no fp8 tensor cores on this card")
    with pytest.raises(ValueError, match="compute fp8: no fp8 tensor cores"):
        N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)", compute="fp8")
    # auto (the F1 template's default when a measurement chose fp8): the same card loads, fp8 deferred to set_compute
    patcher = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)", compute="auto")[0]
    comfy_io.load_for_run(patcher)
    assert applied[-2:] == [("compute", "auto", len(comfy_mm.calls)), ("compile", "off", len(comfy_mm.calls))]
