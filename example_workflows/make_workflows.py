"""Writes the shared workflows in both formats from one description:
UI format (drag into ComfyUI; ComfyUI's template browser lists them) in example_workflows/<title>.json, API
format (headless /prompt) in example_workflows/api/<name>.json.

    python example_workflows/make_workflows.py               # the JSON files
    python example_workflows/make_workflows.py --thumbnails  # and each template's thumbnail, example_workflows/<title>.jpg

ComfyUI's template browser (frontend 1.27) shows a custom node pack's template by its file name (title and
description) with ``<file name>.jpg`` as its thumbnail, so a UI file is named by its title. A template opens
at the view in its ``extra.ds`` (a zoom at which ComfyUI draws node text; without it the frontend fits the
whole graph, too small to read), and carries a Markdown note with its title and what it does.
Thumbnails are frames of the workflow's own output, run here with the embedded model (``run_local``).

Widget order for our nodes comes from their INPUT_TYPES; core ComfyUI nodes are listed in CORE.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import nodes  # noqa: E402
from pfvg_core.model import EMBEDDED_SAMPLING  # noqa: E402

# Core ComfyUI nodes used: (inputs that are links [(name, type)], widgets [(name, default)], outputs [(name, type)])
CORE = {
    "LoadImage": ([], [("image", "pfvg_start.png"), ("upload", "image")], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "CreateVideo": ([("images", "IMAGE"), ("audio", "AUDIO")], [("fps", 8.0)], [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO")], [("filename_prefix", "video/pfvg"), ("format", "auto"), ("codec", "auto")], []),
    "ImageBatch": ([("image1", "IMAGE"), ("image2", "IMAGE")], [], [("IMAGE", "IMAGE")]),
    "PreviewImage": ([("images", "IMAGE")], [], []),
    "DualCLIPLoader": ([], [("clip_name1", "llava_llama3_fp16.safetensors"), ("clip_name2", "clip_l.safetensors"),
                            ("type", "hunyuan_video"), ("device", "default")], [("CLIP", "CLIP")]),
    "CLIPTextEncode": ([("clip", "CLIP")], [("text", "")], [("CONDITIONING", "CONDITIONING")]),
    "CLIPVisionLoader": ([], [("clip_name", "sigclip_vision_patch14_384.safetensors")], [("CLIP_VISION", "CLIP_VISION")]),
    "CLIPVisionEncode": ([("clip_vision", "CLIP_VISION"), ("image", "IMAGE")], [("crop", "none")], [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")]),
    "VAELoader": ([], [("vae_name", "hunyuan_video_vae_bf16.safetensors")], [("VAE", "VAE")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [], [("IMAGE", "IMAGE")]),
    "VAEDecodeTiled": ([("samples", "LATENT"), ("vae", "VAE")], [("tile_size", 256), ("overlap", 64), ("temporal_size", 64),
                                                                 ("temporal_overlap", 8)], [("IMAGE", "IMAGE")]),
    "MarkdownNote": ([], [("text", "")], []),  # a frontend-only note: in the UI file, not in the API file
}
UI_ONLY = {"MarkdownNote"}
VIEW = {"scale": 0.8, "offset": [30.0, 90.0]}  # the template's initial view: node text drawn, first nodes in sight
# Layout (px, graph units). LiteGraph draws a node's title bar above its ``pos``, and the frontend's node badges
# (the "pfvg" source badge, the node id) at the title bar's top: every node keeps that much free room above its
# body. Output nodes grow after a run to show what they made (an image or video scaled to the node's width, the
# drift report), so the room each preview takes is kept free below them.
NODE_WIDTH = 320
COLUMN = 360  # x step between columns
TITLE_H = 30  # LiteGraph's title bar, above pos
BADGE_H = 24  # the node badges' room above the title bar
GAP = 30  # free space between one node's reserved room and the next one's
STATUS_H = 20  # web/pfvg.js adds a status line (its LINE) to every PFVG node
PREVIEW_ROOM = {  # below the node's body: what it shows after a run (the 64 × 64 frames scaled to the width)
    "LoadImage": NODE_WIDTH + 30,  # the start image
    "PreviewImage": NODE_WIDTH + 30,  # Evaluate Drift's plot (wider than tall) or frames
    "SaveVideo": NODE_WIDTH + 60,  # the video with its controls
    "PFVGEvaluateDrift": 260,  # the text report (web/pfvg.js: the node grows 140 px past its widgets, and more)
}


def node_room(class_type: str) -> tuple[float, float]:
    """(above, below): the free room a node keeps above its body (title bar, badges) and below it (its preview)."""
    return TITLE_H + BADGE_H, PREVIEW_ROOM.get(class_type, 0)
WIDGET_KINDS = ("INT", "FLOAT", "STRING", "BOOLEAN")


def spec(class_type):
    """(link inputs [(name, type)], widgets [(name, default, has_control)], outputs [(name, type)])."""
    if class_type in CORE:
        links, widgets, outs = CORE[class_type]
        return links, [(n, d, False) for n, d in widgets], outs
    cls = nodes.NODE_CLASS_MAPPINGS[class_type]
    it = cls.INPUT_TYPES()
    links, widgets = [], []
    for section in ("required", "optional"):
        for name, entry in it.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if isinstance(kind, list) or kind in WIDGET_KINDS:
                default = opts.get("default", kind[0] if isinstance(kind, list) else None)
                # the frontend adds a control widget after any INT named seed/noise_seed
                control = bool(opts.get("control_after_generate")) or (kind == "INT" and name in ("seed", "noise_seed"))
                widgets.append((name, default, control))
            else:
                links.append((name, kind))
    return links, widgets, list(zip(cls.RETURN_NAMES, cls.RETURN_TYPES))


class Graph:
    def __init__(self):
        self.nodes: list[dict] = []

    def add(self, class_type, title=None, **inputs):
        """``inputs``: widget values, or (node, output_index) links."""
        nid = len(self.nodes) + 1
        self.nodes.append({"id": nid, "class_type": class_type, "inputs": inputs, "title": title})
        return nid

    def api(self) -> dict:
        out = {}
        for n in self.nodes:
            if n["class_type"] in UI_ONLY:
                continue
            links, widgets, _ = spec(n["class_type"])
            inputs = {}
            for name, default, _ in widgets:
                if name == "upload":
                    continue
                v = n["inputs"].get(name, default)
                inputs[name] = [str(v[0]), v[1]] if isinstance(v, tuple) else v
            for name, _ in links:
                if name in n["inputs"]:
                    src, slot = n["inputs"][name]
                    inputs[name] = [str(src), slot]
            out[str(n["id"])] = {"class_type": n["class_type"], "inputs": inputs,
                                 **({"_meta": {"title": n["title"]}} if n["title"] else {})}
        return out

    def ui(self) -> dict:
        ui_nodes, ui_links, link_id = [], [], 0
        out_links: dict[tuple[int, int], list[int]] = {}
        cols: dict[int, int] = {}
        for n in self.nodes:  # column = 1 + deepest input
            srcs = [v[0] for v in n["inputs"].values() if isinstance(v, tuple)]
            cols[n["id"]] = 1 + max((cols[s] for s in srcs), default=-1)
        notes = [n for n in self.nodes if n["class_type"] in UI_ONLY]  # across the top, above the graph
        note_height = max((120 + 18 * n["inputs"]["text"].count("\n") for n in notes), default=0)
        tops: dict[int, int] = {}  # next free y in each column (the top of the next node's reserved room)
        first_top = 40 + (note_height + GAP if notes else 0)
        for n in self.nodes:
            links, widgets, outs = spec(n["class_type"])
            inputs = []
            for name, kind in links:
                entry = {"name": name, "type": kind, "link": None}
                if name in n["inputs"]:
                    link_id += 1
                    src, slot = n["inputs"][name]
                    src_type = spec(self.nodes[src - 1]["class_type"])[2][slot][1]
                    ui_links.append([link_id, src, slot, n["id"], len(inputs), src_type])
                    out_links.setdefault((src, slot), []).append(link_id)
                    entry["link"] = link_id
                inputs.append(entry)
            values = []
            for name, default, control in widgets:
                v = n["inputs"].get(name, default)
                if isinstance(v, tuple):  # a widget fed by a link (of its source output's type)
                    link_id += 1
                    src, slot = v
                    kind = spec(self.nodes[src - 1]["class_type"])[2][slot][1]
                    ui_links.append([link_id, src, slot, n["id"], len(inputs), kind])
                    out_links.setdefault((src, slot), []).append(link_id)
                    inputs.append({"name": name, "type": kind, "widget": {"name": name}, "link": link_id})
                    v = default
                values.append(v)
                if control:
                    values.append("fixed")
            col = cols[n["id"]]
            multiline = sum(1 for v in values if isinstance(v, str) and (len(v) > 40 or "\n" in v))
            height = 40 + 22 * max(len(inputs), len(outs)) + 26 * len(values) + 70 * multiline
            if n["class_type"].startswith("PFVG"):
                height += STATUS_H
            if n["class_type"] in UI_ONLY:
                pos, size = [40, 40], [COLUMN * 2 + NODE_WIDTH, note_height]
            else:
                above, below = node_room(n["class_type"])
                top = tops.get(col, first_top)
                pos, size = [40 + COLUMN * col, top + above], [NODE_WIDTH, height]
                tops[col] = top + above + height + below + GAP
            ui_nodes.append({
                "id": n["id"], "type": n["class_type"], "pos": pos, "size": size,
                "flags": {}, "order": n["id"] - 1, "mode": 0, "inputs": inputs,
                "outputs": [{"name": name, "type": kind, "links": [], "slot_index": i} for i, (name, kind) in enumerate(outs)],
                "properties": {"Node name for S&R": n["class_type"]}, "widgets_values": values,
                **({"title": n["title"]} if n["title"] else {}),
            })
        for node in ui_nodes:
            for i, o in enumerate(node["outputs"]):
                o["links"] = out_links.get((node["id"], i), [])
        return {"last_node_id": len(ui_nodes), "last_link_id": link_id, "nodes": ui_nodes, "links": ui_links,
                "groups": [], "config": {}, "extra": {"ds": dict(VIEW)}, "version": 0.4}


# the embedded default's settings: its benchmarked sampler and steps (pfvg_core.model.EMBEDDED_SAMPLING)
SAMPLER = dict(steps=EMBEDDED_SAMPLING["steps"], sampler=EMBEDDED_SAMPLING["sampler"], cfg=1.0, distilled_guidance=10.0, shift=2.0)
PROMPT = "a red ball rolls right across a green striped field past a yellow triangle"  # FramePack-F1's template
# the embedded default's templates: the demo's held-out world frame (input/pfvg_start.png) and its prompt, in the
# words the world's prompts use (the embedded model was trained on them)
WORLD = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo", "prompt.txt")).read().strip()


def start(g, prompt=WORLD, model=None, window=4):
    model = model or g.add("PFVGLoadPackedDiT")
    img = g.add("LoadImage")
    mem = g.add("PFVGEncodePsi0", model=(model, 0), image=(img, 0), prompt=prompt, window=window)
    return model, img, mem


def note(g, title, text):
    """The template's note (a frontend-only Markdown node, first in the graph): its title and what it does."""
    g.add("MarkdownNote", text=f"## {title}\n\n{text}")


def save(g, images, prefix, fps=8.0):
    """``images``: a (node, output) link to IMAGE frames; ``fps``: a number, or a (node, output) link to one
    (the Long Video Loop's fps output, so the video plays at the length asked)."""
    vid = g.add("CreateVideo", images=images, fps=fps)
    g.add("SaveVideo", video=(vid, 0), filename_prefix=f"video/{prefix}")


def long_video():
    g = Graph()
    model, _, mem = start(g)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=1, seconds=60.0, segments=0,
                 prompt_schedule=f"0: {WORLD}", **SAMPLER)
    save(g, (loop, 1), "pfvg_long", fps=(loop, 3))
    return g


def unrolled():
    g = Graph()
    model, _, mem = start(g)
    images = None
    for k in range(3):
        seg = g.add("PFVGSegmentSampler", model=(model, 0), memory=(mem, 0), seed=1, prompt=WORLD, **SAMPLER)
        dec = g.add("PFVGDecodeLatents", model=(model, 0), latent=(seg, 0), **({"memory": (mem, 0)} if k == 0 else {}))
        images = dec if images is None else g.add("ImageBatch", image1=(images, 0), image2=(dec, 0))
        if k < 2:
            mem = g.add("PFVGMemoryPackStep", model=(model, 0), memory=(mem, 0), segment=(seg, 0))
    save(g, (images, 0), "pfvg_unrolled")
    return g


def story():
    g = Graph()
    model, _, mem = start(g)
    schedule = (f"0: {WORLD}\n"
                "[10s] camera pans left 96 px and back every 10 s; orange circle standing still; sandy desert with hut, tree; "
                "2 dark pillars in front\n"
                "[20s] static camera; orange circle moving right 10 px/s; sandy desert with hut, tree; 2 dark pillars in front")
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=2, seconds=30.0, segments=0,
                 prompt_schedule=schedule, **SAMPLER)
    save(g, (loop, 1), "pfvg_story", fps=(loop, 3))
    return g


def training():
    g = Graph()
    model = g.add("PFVGLoadPackedDiT")
    world = g.add("PFVGWorldVideos", folder="pfvg_world", count=4, seconds=4.0, fps=8.0, seed=0)
    train = g.add("PFVGDirectForcingTrain", model=(model, 0), dataset=(world, 0), output_name="pfvg_trained",
                  stage1_steps=4, stage2_steps=4, learning_rate=1e-4, window=4)
    _, _, mem = start(g, model=train)
    loop = g.add("PFVGLongVideoLoop", model=(train, 0), memory=(mem, 0), seed=1, seconds=5.0, segments=0,
                 prompt_schedule=f"0: {WORLD}", **SAMPLER)
    save(g, (loop, 1), "pfvg_after_training", fps=(loop, 3))
    return g


def evaluate():
    g = Graph()
    model, _, mem = start(g)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=1, seconds=30.0, segments=0,
                 prompt_schedule=f"0: {WORLD}", **SAMPLER)
    ev = g.add("PFVGEvaluateDrift", images=(loop, 1), fps=(loop, 3))
    g.add("PreviewImage", images=(ev, 1))
    save(g, (loop, 1), "pfvg_evaluated", fps=(loop, 3))
    return g


F1_SCHEDULE = f"0: {PROMPT}\n[15s] the ball slows down and stops beside the yellow triangle"


SPEED_FILE = os.path.join(os.path.dirname(HERE), "bench", "f1_speed.json")  # written by --speed-from (a measured suite); not in the template folder, whose every .json is listed as a template


def f1_speed_widgets() -> dict:
    """Load Packed DiT's speed widgets for the F1 template: the fastest measured setting within the error bound
    (``bench.settings.recommend_settings``, kept in ``f1_speed.json`` with the row it came from), else the plain ones."""
    if not os.path.isfile(SPEED_FILE):
        return {}
    with open(SPEED_FILE) as f:
        return json.load(f)["widgets"]


def write_speed_file(suite_json: str, error_bound: float = 0.05) -> dict:
    """``--speed-from OUT/bench_f1_suite.json``: the recommendation from a measured suite into ``f1_speed.json``."""
    from bench.settings import recommend_settings

    with open(suite_json) as f:
        suite = json.load(f)
    rec = recommend_settings(suite["rows"], error_bound)
    rec["measured"] = {k: suite.get(k) for k in ("device", "device_name", "config", "size", "steps", "torch") if k in suite}
    with open(SPEED_FILE, "w") as f:
        json.dump(rec, f, indent=1)
    return rec


def framepack_f1():
    """For users with FramePack-F1 and HunyuanVideo encoder weights in their ComfyUI model folders. Settings are
    what plain FramePack-F1 weights were trained for: F1's per-segment RoPE layout (rope local), 9 latent frames
    a segment at 30 fps, 25 UniPC steps, distilled guidance 10, no real CFG, the resolution-dependent shift
    (shift 0). The prompt schedule is encoded line by line with the HunyuanVideo text encoders; the video is
    decoded by tiles (VAEDecodeTiled) so that a long video fits in memory."""
    g = Graph()
    model = g.add("PFVGLoadPackedDiT", model_name="diffusion_models/FramePackI2V_HY_F1.safetensors", dtype="auto",
                  **f1_speed_widgets())
    clip = g.add("DualCLIPLoader")
    prompts = g.add("PFVGEncodePromptSchedule", clip=(clip, 0), schedule=F1_SCHEDULE)
    img = g.add("LoadImage")
    vision = g.add("CLIPVisionLoader")
    vis = g.add("CLIPVisionEncode", clip_vision=(vision, 0), image=(img, 0))
    vae = g.add("VAELoader")
    # Encode ψ₀ brings the image to the nearest FramePack bucket at 640 and encodes it with the VAE
    mem = g.add("PFVGEncodePsi0", model=(model, 0), prompts=(prompts, 0), image=(img, 0), vae=(vae, 0),
                clip_vision_output=(vis, 0), window=9, rope="local", fps=30.0)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), prompts=(prompts, 0), seed=1, seconds=30.0,
                 segments=0, prompt_schedule="", steps=25, cfg=1.0, distilled_guidance=10.0, shift=0.0, sampler="unipc")
    dec = g.add("VAEDecodeTiled", samples=(loop, 0), vae=(vae, 0))
    save(g, (dec, 0), "pfvg_framepack_f1", fps=(loop, 3))
    return g


# name (API file) → (title, builder, description), in the order a newcomer opens them. The title is the UI file's
# name, which is all ComfyUI's template browser knows of a custom node pack's template (frontend 1.27+: it shows the
# file name as the card's title and again, with - and _ as spaces, as its description), so it starts with its
# place in that order (the browser lists the files in the order the server finds them; a sorted listing follows
# the numbers) and says what the template does. The description is the template's note.
TEMPLATES = {
    "pfvg_long_video_embedded": (
        "01 · Long video from one image and a prompt (embedded model, 60 s)", long_video,
        "Long Video Loop carries the memory (FramePack history + SemanticPack ψ) from segment to segment and "
        "makes a 60 s video with the embedded model. Runs on a CPU; press Run."),
    "pfvg_story_prompt_schedule": (
        "02 · A story whose prompt changes on a schedule (embedded model)", story,
        "One prompt per line with its start time ('0: …', '[10s] …'): the prompt changes at those times, the same "
        "memory carried across them. The embedded default keeps the scene's look but not its objects: sprites "
        "drift and merge, and a ball that leaves the view is not reliably there when the camera comes back."),
    "pfvg_generate_and_evaluate": (
        "03 · Generate 30 s and measure its drift and consistency", evaluate,
        "Δdrift over the first and last 15 % and the consistency to the first and the previous frame: the report "
        "shows on Evaluate Drift, its plot in Preview Image, the video in Save Video."),
    "pfvg_unrolled_segments": (
        "04 · The loop by hand, segment by segment (Segment Sampler, MemoryPack Step)", unrolled,
        "Segment Sampler samples a segment from the memory, MemoryPack Step appends it "
        "(ψ ← Squeeze(ψ, Memorize(segment))); three segments give what the loop gives."),
    "pfvg_direct_forcing_training": (
        "05 · Train the embedded model with Direct Forcing on world videos", training,
        "Renders procedural world videos into input/pfvg_world, fine-tunes the embedded model with the paper's "
        "two stages (teacher, then Direct Forcing) into models/pfvg/pfvg_trained (pfvg_trained_00001, … when that "
        "name is taken: run it again and again), then generates with the trained model."),
    "pfvg_framepack_f1_long_video": (
        "06 · FramePack F1 long video (needs your F1 and HunyuanVideo weights)", framepack_f1,
        "The F1 DiT in models/diffusion_models, HunyuanVideo text encoders, SigLIP and VAE in ComfyUI's usual "
        "folders. The start image goes to the nearest FramePack bucket at 640."),
}


def _with_note(title, build, text):
    def built():
        g = build()
        note(g, title, text)
        return g

    built.__doc__ = build.__doc__
    return built


WORKFLOWS = {name: _with_note(title, build, text) for name, (title, build, text) in TEMPLATES.items()}
TITLES = {name: title for name, (title, _, _) in TEMPLATES.items()}


def ui_path(name: str, ext: str = "json") -> str:
    """example_workflows/<title>.<ext>: the template file ComfyUI lists (its name is the title the browser shows)."""
    return os.path.join(HERE, f"{TITLES[name]}.{ext}")


# --- running a workflow here (thumbnails; the tests use it too) ----------------------------------
def run_local(wf: dict, input_dir: str, fakes: dict | None = None) -> list[dict]:
    """A small executor for API workflows: our node classes for real; LoadImage / ImageBatch / CreateVideo /
    SaveVideo / PreviewImage as stand-ins with ComfyUI's semantics; ``fakes``: further stand-ins
    {class_type: function}. Returns the videos SaveVideo got ({"images", "fps"})."""
    import numpy as np
    import torch
    from PIL import Image

    done, saved = {}, []

    def value(v):
        return done[v[0]][v[1]] if isinstance(v, list) else v

    def run(nid):
        if nid in done:
            return
        node = wf[nid]
        for v in node["inputs"].values():
            if isinstance(v, list):
                run(v[0])
        kw = {k: value(v) for k, v in node["inputs"].items()}
        ct = node["class_type"]
        if fakes and ct in fakes:
            out = fakes[ct](**kw)
        elif ct == "LoadImage":
            arr = np.asarray(Image.open(os.path.join(input_dir, kw["image"])).convert("RGB"), np.float32) / 255
            out = (torch.from_numpy(arr)[None], None)
        elif ct == "ImageBatch":
            out = (torch.cat([kw["image1"], kw["image2"]]),)
        elif ct == "CreateVideo":
            out = ({"images": kw["images"], "fps": kw["fps"]},)
        elif ct == "SaveVideo":
            saved.append(kw["video"])
            out = ()
        elif ct == "PreviewImage":
            out = ()
        else:
            cls = nodes.NODE_CLASS_MAPPINGS[ct]
            res = getattr(cls(), cls.FUNCTION)(**kw)
            out = res["result"] if isinstance(res, dict) else res
        done[nid] = out

    for nid in wf:
        run(nid)
    return saved


THUMB = 128  # pixels per frame; a thumbnail is 2 × 2 frames


def thumbnail(frames) -> "object":
    """Four frames of a video (first, ⅓, ⅔, last; IMAGE [T, H, W, 3]) as one 2 × 2 PIL image; one frame fills it."""
    from PIL import Image

    t = frames.shape[0]
    if t == 1:
        one = (frames[0].clamp(0, 1) * 255).round().byte().numpy()
        return Image.fromarray(one).resize((2 * THUMB, 2 * THUMB), Image.LANCZOS)
    picks = [frames[min(t - 1, round(i * (t - 1) / 3))] for i in range(4)]
    sheet = Image.new("RGB", (2 * THUMB, 2 * THUMB))
    for i, f in enumerate(picks):
        img = Image.fromarray((f.clamp(0, 1) * 255).round().byte().numpy()).resize((THUMB, THUMB), Image.LANCZOS)
        sheet.paste(img, ((i % 2) * THUMB, (i // 2) * THUMB))
    return sheet


def make_thumbnails(seconds: float = 12.0) -> None:
    """Each template's thumbnail from its own output, run here (videos shortened to ``seconds``; FramePack-F1,
    whose weights are not here, shows its start image brought to its bucket)."""
    import tempfile

    import torch
    from PIL import Image

    from nodes import comfy_io

    root = os.path.dirname(HERE)
    with tempfile.TemporaryDirectory() as tmp:
        input_dir, models_dir = os.path.join(tmp, "input"), os.path.join(tmp, "models")
        os.makedirs(input_dir)
        for dst, src in comfy_io.DEMO_INPUTS.items():
            Image.open(src).save(os.path.join(input_dir, dst))
        comfy_io.input_root = lambda: input_dir  # this process only: training data and models in the temp folder
        comfy_io.models_root = lambda: models_dir
        for name in TEMPLATES:
            if name == "pfvg_framepack_f1_long_video":
                start = Image.open(os.path.join(root, "demo", "start.png")).convert("RGB")
                frames = torch.from_numpy(__import__("numpy").asarray(start, "float32") / 255)[None]
            else:
                wf = WORKFLOWS[name]().api()
                for node in wf.values():
                    if node["class_type"] == "PFVGLongVideoLoop":
                        node["inputs"]["seconds"] = min(node["inputs"]["seconds"], seconds)
                frames = run_local(wf, input_dir)[0]["images"]
            thumbnail(frames).save(ui_path(name, "jpg"), quality=90)
            print("wrote", os.path.basename(ui_path(name, "jpg")))


def main():
    if "--speed-from" in sys.argv[1:]:  # a measured suite decides the F1 template's speed settings
        rec = write_speed_file(sys.argv[sys.argv.index("--speed-from") + 1])
        print("F1 speed settings:", rec["widgets"], "from row", rec["row"].get("name"))
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    for name, build in WORKFLOWS.items():
        g = build()
        with open(ui_path(name), "w") as f:
            json.dump(g.ui(), f, indent=1, ensure_ascii=False)
        with open(os.path.join(HERE, "api", f"{name}.json"), "w") as f:
            json.dump(g.api(), f, indent=1)
        print("wrote", name)
    if "--thumbnails" in sys.argv[1:]:
        make_thumbnails()


if __name__ == "__main__":
    main()
