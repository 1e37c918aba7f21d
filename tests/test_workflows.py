import glob
import json
import os
import sys

import pytest
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
WF = os.path.join(os.path.dirname(HERE), "example_workflows")
sys.path.insert(0, WF)

import make_workflows as mw  # noqa: E402
import nodes  # noqa: E402

OURS = nodes.NODE_CLASS_MAPPINGS
NEEDS_USER_WEIGHTS = {"pfvg_framepack_f1_long_video"}  # names model files a user must have


def _api_files():
    return sorted(glob.glob(os.path.join(WF, "api", "*.json")))


def _ui_files():
    return sorted(glob.glob(os.path.join(WF, "*.json")))


def _name(ui_file):
    """The workflow name of a UI file (named by its title)."""
    title = os.path.basename(ui_file)[:-5]
    return next(n for n, t in mw.TITLES.items() if t == title)


def test_every_workflow_exists_in_both_formats_and_is_up_to_date():
    names = {os.path.basename(p) for p in _api_files()}
    assert names == {f"{n}.json" for n in mw.WORKFLOWS}
    assert {os.path.basename(p) for p in _ui_files()} == {f"{t}.json" for t in mw.TITLES.values()}
    for name, build in mw.WORKFLOWS.items():
        g = build()
        assert json.load(open(os.path.join(WF, "api", f"{name}.json"))) == json.loads(json.dumps(g.api())), name
        assert json.load(open(mw.ui_path(name), encoding="utf-8")) == json.loads(json.dumps(g.ui())), name


@pytest.mark.parametrize("name", sorted(mw.WORKFLOWS))
def test_template_has_a_title_a_thumbnail_a_note_and_a_readable_view(name):
    """What ComfyUI's template browser shows of a custom node pack's template (frontend 1.27): the file name as
    title and description, <name>.jpg as thumbnail; the view the template opens at comes from extra.ds."""
    from PIL import ImageStat

    title = mw.TITLES[name]
    assert "_" not in title and "-" not in title  # the browser turns these into spaces in the description
    thumb = Image.open(mw.ui_path(name, "jpg")).convert("RGB")
    assert thumb.size == (2 * mw.THUMB, 2 * mw.THUMB)
    assert max(ImageStat.Stat(thumb).stddev) > 10  # a picture, not a blank
    ui = json.load(open(mw.ui_path(name), encoding="utf-8"))
    assert ui["extra"]["ds"]["scale"] >= 0.8  # ComfyUI draws node text at this zoom
    ox, oy = ui["extra"]["ds"]["offset"]
    first = min(ui["nodes"], key=lambda n: n["pos"][0] + n["pos"][1])
    assert 0 <= (first["pos"][0] + ox) * 0.8 < 200 and 0 <= (first["pos"][1] + oy) * 0.8 < 200  # in sight on opening
    (note,) = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
    assert note["widgets_values"][0].startswith(f"## {title}")
    assert not mw.TEMPLATES[name][2].startswith(title.split(" · ", 1)[1][:20])  # the note says more than the title


def test_template_files_sort_in_the_order_a_newcomer_opens_them():
    titles = list(mw.TITLES.values())
    assert [t[:5] for t in titles] == [f"{i:02d} · " for i in range(1, len(titles) + 1)]
    assert sorted(titles) == titles and titles[0].startswith("01 · Long video")
    assert len({t.split(" · ", 1)[1] for t in titles}) == len(titles)
    for t in titles:
        assert len(f"{t}.json".encode()) <= 255 and not set(t) & set('<>:"/\\|?*')  # a file name on every system


# What ComfyUI adds around a node's body (graph px): the title bar and the node badges above it, and after a run
# the output's preview below it: a 64 × 64 image or video scaled to the node's width (a square, with a label or the
# player's controls), Evaluate Drift's text report.
TITLE_AND_BADGES = 30 + 20
PREVIEW = {"LoadImage": lambda w: w + 20, "PreviewImage": lambda w: w + 20, "SaveVideo": lambda w: w + 40,
           "PFVGEvaluateDrift": lambda w: 200}


def _drawn(node):
    """(x0, y0, x1, y1) of everything drawn for a node after a run: title, badges, body, preview."""
    (x, y), (w, h) = node["pos"], node["size"]
    below = PREVIEW.get(node["type"], lambda w: 0)(w)
    return x, y - TITLE_AND_BADGES, x + w, y + h + below


@pytest.mark.parametrize("name", sorted(mw.WORKFLOWS))
def test_no_node_title_badge_or_preview_is_drawn_over_another_node(name):
    ui = json.load(open(mw.ui_path(name), encoding="utf-8"))
    boxes = [(n["type"], _drawn(n)) for n in ui["nodes"]]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (name, ta, a, tb, b)


def test_the_evaluate_template_keeps_room_for_its_report_plot_and_video():
    """Generate-then-evaluate (the layout that had Evaluate Drift's report over Create Video and the plot under
    Save Video): each output node has its preview's room free below it."""
    ui = json.load(open(mw.ui_path("pfvg_generate_and_evaluate"), encoding="utf-8"))
    by = {n["type"]: n for n in ui["nodes"]}
    for above, below in (("PFVGEvaluateDrift", "CreateVideo"), ("PreviewImage", "SaveVideo")):
        a, b = by[above], by[below]
        assert a["pos"][0] == b["pos"][0]  # one column: the lower node starts below the upper one's preview
        assert b["pos"][1] - TITLE_AND_BADGES >= a["pos"][1] + a["size"][1] + PREVIEW[above](a["size"][0])


def _input_spec(class_type):
    if class_type in OURS:
        it = OURS[class_type].INPUT_TYPES()
        return it.get("required", {}), it.get("optional", {})
    links, widgets, _ = mw.CORE[class_type]
    return {n: (t,) for n, t in links if n != "audio"} | {n: ("*",) for n, _ in widgets if n != "upload"}, {"audio": ("AUDIO",)}


def _outputs(class_type):
    return list(OURS[class_type].RETURN_TYPES) if class_type in OURS else [t for _, t in mw.CORE[class_type][2]]


@pytest.mark.parametrize("path", _api_files(), ids=os.path.basename)
def test_api_workflow_uses_existing_nodes_with_valid_inputs_and_links(path):
    wf = json.load(open(path))
    name = os.path.basename(path)[:-5]
    for nid, node in wf.items():
        ct = node["class_type"]
        assert ct in OURS or ct in mw.CORE, f"{nid}: unknown node {ct}"
        required, optional = _input_spec(ct)
        for key in required:
            assert key in node["inputs"], f"{nid} {ct}: missing input {key}"
        for key, value in node["inputs"].items():
            assert key in required or key in optional, f"{nid} {ct}: unknown input {key}"
            entry = required.get(key) or optional.get(key)
            if isinstance(value, list):  # a link
                src, slot = value
                assert src in wf, f"{nid}.{key}: link to missing node {src}"
                out_type = _outputs(wf[src]["class_type"])[slot]
                want = entry[0]
                assert want in ("*", out_type) or (want in ("STRING",) and out_type == "STRING"), f"{nid}.{key}: {out_type} → {want}"
                continue
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if isinstance(kind, list):
                if not (name in NEEDS_USER_WEIGHTS and key == "model_name"):
                    assert value in kind, f"{nid}.{key}: {value!r} not in {kind}"
            elif kind in ("INT", "FLOAT"):
                assert opts["min"] <= value <= opts["max"], f"{nid}.{key}: {value} out of range"
            elif kind == "STRING":
                assert isinstance(value, str)


@pytest.mark.parametrize("path", _ui_files(), ids=lambda p: _name(p))
def test_ui_workflow_links_are_consistent(path):
    wf = json.load(open(path))
    by_id = {n["id"]: n for n in wf["nodes"]}
    assert wf["last_node_id"] == max(by_id) and wf["last_link_id"] == max(link[0] for link in wf["links"])
    for lid, src, slot, dst, dslot, kind in wf["links"]:
        assert by_id[src]["type"] in OURS or by_id[src]["type"] in mw.CORE
        assert lid in by_id[src]["outputs"][slot]["links"] and by_id[dst]["inputs"][dslot]["link"] == lid
        assert by_id[src]["outputs"][slot]["type"] == kind
    for n in wf["nodes"]:
        _, widgets, _ = mw.spec(n["type"])
        assert len(n["widgets_values"]) == len(widgets) + sum(c for _, _, c in widgets), n["type"]


# --- run the API workflows with our nodes and stand-ins for the core nodes ----------------------
run_api = mw.run_local  # the generator's executor (it renders the thumbnails with it too)


@pytest.fixture
def env(tmp_path, monkeypatch):
    from nodes import comfy_io

    (tmp_path / "input").mkdir()
    Image.open(os.path.join(os.path.dirname(HERE), "demo", "start.png")).save(tmp_path / "input" / "pfvg_start.png")
    monkeypatch.setattr(comfy_io, "input_root", lambda: str(tmp_path / "input"))
    monkeypatch.setattr(comfy_io, "models_root", lambda: str(tmp_path / "models"))
    return str(tmp_path / "input")


def _load(name):
    return json.load(open(os.path.join(WF, "api", f"{name}.json")))


def test_long_video_workflow_makes_60_seconds_and_unrolled_equals_loop(env):
    (video,) = run_api(_load("pfvg_long_video_embedded"), env)
    # the loop's fps output feeds Create Video: the video plays 60 s (one segment of rounding at most)
    assert video["fps"] == 8.0 and 60 * 8 + 1 <= video["images"].shape[0] <= 60 * 8 + 1 + 16
    (unrolled,) = run_api(_load("pfvg_unrolled_segments"), env)
    wf = _load("pfvg_long_video_embedded")
    loop_id = next(k for k, v in wf.items() if v["class_type"] == "PFVGLongVideoLoop")
    wf[loop_id]["inputs"].update(segments=3, prompt_schedule=mw.WORLD)
    (three,) = run_api(wf, env)
    # Sampler → Step chained = the loop (latents are bit-identical, see test_nodes; decoding per segment vs
    # all at once may differ in the last bits of the convolution)
    assert unrolled["images"].shape == three["images"].shape
    assert torch.allclose(unrolled["images"], three["images"], atol=1e-5)


@pytest.mark.parametrize("name", ["pfvg_story_prompt_schedule", "pfvg_generate_and_evaluate", "pfvg_direct_forcing_training"])
def test_other_workflows_run_to_the_end(env, name):
    wf = _load(name)
    for node in wf.values():  # keep CI fast: shorter videos
        if node["class_type"] == "PFVGLongVideoLoop":
            node["inputs"]["seconds"] = min(node["inputs"]["seconds"], 12.0)
    (video,) = run_api(wf, env)
    assert video["images"].ndim == 4 and video["images"].shape[0] > 8


def test_web_extension_listens_to_the_event_the_nodes_send():
    import re

    js = open(os.path.join(os.path.dirname(HERE), "web", "pfvg.js")).read()
    from nodes import comfy_io

    py = open(comfy_io.__file__).read()
    assert "send_sync(PROGRESS_EVENT" in py
    assert f'"{comfy_io.PROGRESS_EVENT}"' in js and "registerExtension" in js and '"PFVGLongVideoLoop"' in js
    for key in ("segment", "segments", "seconds", "memory_tokens"):
        assert f"d.{key}" in js and f'"{key}"' in py


def test_headless_client_is_stdlib_only():
    import ast

    tree = ast.parse(open(os.path.join(WF, "run_api.py")).read())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods


def test_templates_are_served_no_folder_shadows_workflows():
    """ComfyUI's custom-node manager serves the first of these folders it finds under one URL prefix
    (/api/workflow_templates/<pack>) and lists the .json files of all of them: only example_workflows/ may exist."""
    root = os.path.dirname(HERE)
    served = ["example_workflows", "example", "examples", "workflow", "workflows"]  # ComfyUI's order (app/custom_node_manager.py)
    present = [d for d in served if os.path.isdir(os.path.join(root, d))]
    assert present == ["example_workflows"], present
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(root, "example_workflows", "*.json")))
    assert names == sorted(mw.TITLES.values())  # the template list is exactly our workflows, by title


def test_a_measured_suite_sets_the_f1_template_speed_widgets(tmp_path, monkeypatch):
    """``make_workflows.py --speed-from`` puts the fastest setting within the error bound into the F1
    template's Load Packed DiT; without a measurement the template keeps the plain settings."""
    monkeypatch.setattr(mw, "SPEED_FILE", str(tmp_path / "f1_speed.json"))
    loader = lambda g: next(n for n in g.api().values() if n["class_type"] == "PFVGLoadPackedDiT")  # noqa: E731
    plain = loader(mw.framepack_f1())["inputs"]
    assert plain["compute"] == "dtype" and plain["step_cache"] == 0.0 and plain["compile"] == "off"
    suite = {"device": "cuda", "rows": [
        {"name": "bf16", "compute": "dtype", "attention": "native", "step_cache": None, "compile": "off", "memory": "off",
         "s_per_frame": 0.59, "err_to_bf16": 0.0},
        {"name": "fp8 + cache", "compute": "fp8", "attention": "native", "step_cache": 0.1, "compile": "off", "memory": "off",
         "s_per_frame": 0.28, "err_to_bf16": 0.03}]}
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    rec = mw.write_speed_file(str(tmp_path / "suite.json"))
    assert rec["row"]["name"] == "fp8 + cache" and rec["measured"] == {"device": "cuda"}
    tuned = loader(mw.framepack_f1())["inputs"]
    assert tuned["compute"] == "auto" and tuned["step_cache"] == 0.1 and tuned["attention"] == "native"
    assert {k: v for k, v in tuned.items() if k not in rec["widgets"]} == {k: v for k, v in plain.items() if k not in rec["widgets"]}
