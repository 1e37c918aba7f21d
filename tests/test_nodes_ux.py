"""ComfyUI conventions (without ComfyUI): model folders through add_model_folder_path (extra_model_paths.yaml
folders listed), a LoRA node, an extend-video node, cache/compile on the loader, a tooltip on every input,
a help page per node, English locale files up to date, [tool.comfy] filled in."""
import json
import os
import sys
import types

import pytest
import torch
from safetensors.torch import save_file

import nodes as N_pkg
from nodes import comfy_io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = N_pkg.NODE_CLASS_MAPPINGS


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """A fake folder_paths with ComfyUI's add_model_folder_path semantics and an extra (yaml) pfvg folder."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(tmp_path / "models")
    extra = str(tmp_path / "extra_pfvg")
    loras = tmp_path / "models" / "loras"
    loras.mkdir(parents=True)
    fp.folder_names_and_paths = {"pfvg": ([extra], set()), "loras": ([str(loras)], {".safetensors"})}  # as the yaml left it

    def add_model_folder_path(name, path, is_default=False):
        paths, _ = fp.folder_names_and_paths.setdefault(name, ([], set()))
        if path in paths:
            paths.remove(path)
        paths.insert(0, path) if is_default else paths.append(path)

    fp.add_model_folder_path = add_model_folder_path
    fp.get_filename_list = lambda name: sorted(os.listdir(loras)) if name == "loras" else []
    fp.get_full_path_or_raise = lambda name, f: str(loras / f)
    fp.get_input_directory = lambda: str(tmp_path / "input")
    monkeypatch.setitem(sys.modules, "folder_paths", fp)
    return types.SimpleNamespace(fp=fp, extra=extra, loras=loras, root=tmp_path)


def test_model_folders_registered_and_every_configured_folder_listed(comfy):
    from pfvg_core.model import PFVGModel

    comfy_io.register_folders()
    comfy_io.register_folders()  # idempotent
    default = os.path.join(comfy.fp.models_dir, "pfvg")
    assert comfy.fp.folder_names_and_paths["pfvg"][0] == [default, comfy.extra]
    assert comfy_io.models_root() == default  # trained models go to models/pfvg
    PFVGModel.build("tiny").save(os.path.join(comfy.extra, "from_yaml"))
    assert "from_yaml" in comfy_io.list_models()
    assert N["PFVGLoadPackedDiT"]().load("from_yaml", "float32", "(none)")[0].latent_channels == 4
    with pytest.raises(ValueError, match="not found in the pfvg model folders"):
        comfy_io.find_model_path("nope")


def test_lora_node_leaves_the_input_model_unchanged(comfy):
    base = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    lin = base.dit.transformer_blocks[0].attn.to_q
    g = torch.Generator().manual_seed(0)
    save_file({"lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight": torch.randn(2, lin.in_features, generator=g),
               "lora_unet_transformer_blocks_0_attn_to_q.lora_up.weight": torch.randn(lin.out_features, 2, generator=g)},
              comfy.loras / "style.safetensors")
    (comfy.loras / "notes.txt").write_text("x")
    it = N["PFVGLoadLoRA"].INPUT_TYPES()["required"]
    assert it["lora_name"][0] == ["style.safetensors"]
    (m,) = N["PFVGLoadLoRA"]().apply(base, "style.safetensors", 0.8)
    assert m is not base and m.dit is base.dit and m.model_id != base.model_id and not base.loras
    assert m.loras[0][1] == 0.8
    (m2,) = N["PFVGLoadLoRA"]().apply(m, "style.safetensors", 0.5)  # chained
    assert [s for _, s in m2.loras] == [0.8, 0.5]
    with pytest.raises(ValueError, match="not found"):
        N["PFVGLoadLoRA"]().apply(base, "missing.safetensors", 1.0)


def test_loader_cache_and_compile_options(comfy):
    from pfvg_core.speed import step_cache_threshold

    m = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)", step_cache=0.1, compile="off")[0]
    assert step_cache_threshold(m) == pytest.approx(0.1)
    m = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    assert step_cache_threshold(m) is None  # off by default


def test_extend_video_node_gives_a_state_that_continues_the_video(comfy):
    model = N["PFVGLoadPackedDiT"]().load(comfy_io.EMBEDDED, "float32", "(none)")[0]
    frames = torch.rand(9, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    (state,) = N["PFVGExtendVideo"]().extend(model, fps=8.0, images=frames, prompt="a red ball", window=4,
                                             schedule="td_f16k4f2k2f1k1", rope="video", memory_mode="on")
    assert state.segment == 2 and state.next_index == 9 and state.fps == 8.0
    first = (frames[:1] * 255).round() / 255  # the node reads 8-bit frames
    with torch.no_grad():
        assert torch.allclose(state.start_latent, model.codec.encode(first.permute(3, 0, 1, 2)[None] * 2 - 1), atol=1e-5)
    (lat, images, last, fps) = N["PFVGLongVideoLoop"]().run(model, state, seed=0, seconds=1.0, segments=1,
                                                       prompt_schedule="0: a red ball", steps=2, cfg=1.0,
                                                       distilled_guidance=10.0, shift=2.0, sampler="unipc")
    assert lat["samples"].shape[2] == 4 and last.next_index == 13 and fps == 8.0  # the fps output: the video's rate
    with pytest.raises(ValueError, match="IMAGE frames or a video LATENT"):
        N["PFVGExtendVideo"]().extend(model, fps=8.0, prompt="x", window=4, schedule="td_f16k4f2k2f1k1", rope="video",
                                      memory_mode="on")


def test_every_input_has_a_tooltip_and_every_node_a_help_page():
    for key, cls in N.items():
        it = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, entry in it.get(section, {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                assert opts.get("tooltip"), f"{key}.{name} has no tooltip"
        page = os.path.join(ROOT, "web", "docs", f"{key}.md")
        assert os.path.isfile(page), f"no help page web/docs/{key}.md"
        text = open(page, encoding="utf-8").read()
        assert text.startswith("# ") and N_pkg.NODE_DISPLAY_NAME_MAPPINGS[key].split(" (")[0] in text


def test_locales_are_up_to_date():
    sys.path.insert(0, os.path.join(ROOT, "locales"))
    try:
        import make_locales
    finally:
        sys.path.pop(0)
    for name, text in make_locales.render().items():
        with open(os.path.join(ROOT, "locales", "en", name), encoding="utf-8") as f:
            assert f.read() == text, f"locales/en/{name} is stale: run python locales/make_locales.py"
    for name, text in make_locales.render_docs().items():  # help pages: Inputs/Outputs from the declarations
        with open(os.path.join(ROOT, "web", "docs", name), encoding="utf-8") as f:
            assert f.read() == text, f"web/docs/{name} is stale: run python locales/make_locales.py"
    defs = json.loads(make_locales.render()["nodeDefs.json"])
    assert set(defs) == set(N) and defs["PFVGLoadLoRA"]["inputs"]["lora_name"]["name"] == "lora name"


def test_pyproject_comfy_section_has_icon_repository_and_ships_docs_and_locales():
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        cfg = tomllib.load(f)
    comfy = cfg["tool"]["comfy"]
    repo = cfg["project"]["urls"]["Repository"]
    assert repo.startswith("https://github.com/") and comfy["Icon"].startswith("https://")
    assert os.path.isfile(os.path.join(ROOT, "web", "icon.png"))
    assert {"locales", "web"} <= set(comfy["includes"])
    js = open(os.path.join(ROOT, "web", "pfvg.js"), encoding="utf-8").read()
    assert '"PFVGEvaluateDrift"' in js and "message?.text" in js  # the report shown on the node
    assert json.load(open(os.path.join(ROOT, "locales", "en", "main.json")))["nodeCategories"]["PFVG"] == "PFVG"
