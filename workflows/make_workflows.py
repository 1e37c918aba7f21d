"""Writes the shared workflows in both formats from one description:
UI format (drag into ComfyUI) in workflows/*.json, API format (headless /prompt) in workflows/api/*.json.

    python workflows/make_workflows.py

Widget order for our nodes comes from their INPUT_TYPES; core ComfyUI nodes are listed in CORE.
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import nodes  # noqa: E402

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
    "CLIPVisionEncode": ([("clip_vision", "CLIP_VISION"), ("image", "IMAGE")], [("crop", "center")], [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")]),
    "VAELoader": ([], [("vae_name", "hunyuan_video_vae_bf16.safetensors")], [("VAE", "VAE")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [], [("IMAGE", "IMAGE")]),
    "VAEDecodeTiled": ([("samples", "LATENT"), ("vae", "VAE")], [("tile_size", 256), ("overlap", 64), ("temporal_size", 64),
                                                                 ("temporal_overlap", 8)], [("IMAGE", "IMAGE")]),
}
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
        rows: dict[int, int] = {}
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
                if isinstance(v, tuple):  # a widget fed by a link
                    link_id += 1
                    src, slot = v
                    ui_links.append([link_id, src, slot, n["id"], len(inputs), "STRING"])
                    out_links.setdefault((src, slot), []).append(link_id)
                    inputs.append({"name": name, "type": "STRING", "widget": {"name": name}, "link": link_id})
                    v = default
                values.append(v)
                if control:
                    values.append("fixed")
            col = cols[n["id"]]
            row = rows.get(col, 0)
            rows[col] = row + 1
            ui_nodes.append({
                "id": n["id"], "type": n["class_type"], "pos": [40 + 360 * col, 40 + 300 * row], "size": [320, 60 + 26 * len(values)],
                "flags": {}, "order": n["id"] - 1, "mode": 0, "inputs": inputs,
                "outputs": [{"name": name, "type": kind, "links": [], "slot_index": i} for i, (name, kind) in enumerate(outs)],
                "properties": {"Node name for S&R": n["class_type"]}, "widgets_values": values,
                **({"title": n["title"]} if n["title"] else {}),
            })
        for node in ui_nodes:
            for i, o in enumerate(node["outputs"]):
                o["links"] = out_links.get((node["id"], i), [])
        return {"last_node_id": len(ui_nodes), "last_link_id": link_id, "nodes": ui_nodes, "links": ui_links,
                "groups": [], "config": {}, "extra": {}, "version": 0.4}


SAMPLER = dict(steps=12, cfg=1.0, distilled_guidance=10.0, shift=2.0)  # the embedded default's settings
PROMPT = "a red ball rolls right across a green striped field past a yellow triangle"


def start(g, prompt=PROMPT, model=None, window=4):
    model = model or g.add("PFVGLoadPackedDiT")
    img = g.add("LoadImage")
    mem = g.add("PFVGEncodePsi0", model=(model, 0), image=(img, 0), prompt=prompt, window=window)
    return model, img, mem


def save(g, images, prefix, fps=8.0):
    """``images``: a (node, output) link to IMAGE frames."""
    vid = g.add("CreateVideo", images=images, fps=fps)
    g.add("SaveVideo", video=(vid, 0), filename_prefix=f"video/{prefix}")


def long_video():
    g = Graph()
    model, _, mem = start(g)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=1, seconds=60.0, segments=0,
                 prompt_schedule=f"0: {PROMPT}", **SAMPLER)
    save(g, (loop, 1), "pfvg_long")
    return g


def unrolled():
    g = Graph()
    model, _, mem = start(g)
    images = None
    for k in range(3):
        seg = g.add("PFVGSegmentSampler", model=(model, 0), memory=(mem, 0), seed=1, prompt=PROMPT, **SAMPLER)
        dec = g.add("PFVGDecodeLatents", model=(model, 0), latent=(seg, 0), **({"memory": (mem, 0)} if k == 0 else {}))
        images = dec if images is None else g.add("ImageBatch", image1=(images, 0), image2=(dec, 0))
        if k < 2:
            mem = g.add("PFVGMemoryPackStep", model=(model, 0), memory=(mem, 0), segment=(seg, 0))
    save(g, (images, 0), "pfvg_unrolled")
    return g


def story():
    g = Graph()
    model, _, mem = start(g)
    schedule = ("0: a red ball rolls right across a green striped field\n"
                "[10s] the camera pans right past a hut and a tree\n"
                "[20s] the camera comes back and the red ball is still there")
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=2, seconds=30.0, segments=0,
                 prompt_schedule=schedule, **SAMPLER)
    save(g, (loop, 1), "pfvg_story")
    return g


def training():
    g = Graph()
    model = g.add("PFVGLoadPackedDiT")
    world = g.add("PFVGWorldVideos", folder="pfvg_world", count=4, seconds=4.0, fps=8.0, seed=0)
    train = g.add("PFVGDirectForcingTrain", model=(model, 0), dataset=(world, 0), output_name="pfvg_trained",
                  stage1_steps=4, stage2_steps=4, learning_rate=1e-4, window=4)
    _, _, mem = start(g, model=train)
    loop = g.add("PFVGLongVideoLoop", model=(train, 0), memory=(mem, 0), seed=1, seconds=5.0, segments=0,
                 prompt_schedule=f"0: {PROMPT}", **SAMPLER)
    save(g, (loop, 1), "pfvg_after_training")
    return g


def evaluate():
    g = Graph()
    model, _, mem = start(g)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), seed=1, seconds=30.0, segments=0,
                 prompt_schedule=f"0: {PROMPT}", **SAMPLER)
    ev = g.add("PFVGEvaluateDrift", images=(loop, 1), fps=8.0)
    g.add("PreviewImage", images=(ev, 1))
    save(g, (loop, 1), "pfvg_evaluated")
    return g


F1_SCHEDULE = f"0: {PROMPT}\n[15s] the ball slows down and stops beside the yellow triangle"


def framepack_f1():
    """For users with FramePack-F1 and HunyuanVideo encoder weights in their ComfyUI model folders. Settings are
    what plain FramePack-F1 weights were trained for: F1's per-segment RoPE layout (rope local), 9 latent frames
    a segment at 30 fps, 25 UniPC steps, distilled guidance 10, no real CFG, the resolution-dependent shift
    (shift 0). The prompt schedule is encoded line by line with the HunyuanVideo text encoders; the video is
    decoded by tiles (VAEDecodeTiled) so that a long video fits in memory."""
    g = Graph()
    model = g.add("PFVGLoadPackedDiT", model_name="diffusion_models/FramePackI2V_HY_F1.safetensors", dtype="auto")
    clip = g.add("DualCLIPLoader")
    prompts = g.add("PFVGEncodePromptSchedule", clip=(clip, 0), schedule=F1_SCHEDULE)
    img = g.add("LoadImage")
    vision = g.add("CLIPVisionLoader")
    vis = g.add("CLIPVisionEncode", clip_vision=(vision, 0), image=(img, 0))
    vae = g.add("VAELoader")
    lat = g.add("VAEEncode", pixels=(img, 0), vae=(vae, 0))
    mem = g.add("PFVGEncodePsi0", model=(model, 0), prompts=(prompts, 0), latent=(lat, 0), clip_vision_output=(vis, 0),
                window=9, rope="local", fps=30.0)
    loop = g.add("PFVGLongVideoLoop", model=(model, 0), memory=(mem, 0), prompts=(prompts, 0), seed=1, seconds=30.0,
                 segments=0, prompt_schedule="", steps=25, cfg=1.0, distilled_guidance=10.0, shift=0.0, sampler="unipc")
    dec = g.add("VAEDecodeTiled", samples=(loop, 0), vae=(vae, 0))
    save(g, (dec, 0), "pfvg_framepack_f1", fps=30.0)
    return g


WORKFLOWS = {
    "pfvg_long_video_embedded": long_video,
    "pfvg_unrolled_segments": unrolled,
    "pfvg_story_prompt_schedule": story,
    "pfvg_direct_forcing_training": training,
    "pfvg_generate_and_evaluate": evaluate,
    "pfvg_framepack_f1_long_video": framepack_f1,
}


def main():
    os.makedirs(os.path.join(HERE, "api"), exist_ok=True)
    for name, build in WORKFLOWS.items():
        g = build()
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(g.ui(), f, indent=1)
        with open(os.path.join(HERE, "api", f"{name}.json"), "w") as f:
            json.dump(g.api(), f, indent=1)
        print("wrote", name)


if __name__ == "__main__":
    main()
