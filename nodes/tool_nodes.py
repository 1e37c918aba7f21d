import torch

from pfvg_core import operations as ops

from . import comfy_io as io
from . import common as c
from .memory_nodes import check_memory


class DecodeLatents:
    DESCRIPTION = "Decode PFVG video latents to IMAGE frames with the model's own codec (embedded model)."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": (c.MODEL, {"tooltip": "The model whose codec decodes (the embedded default)."}),
                             "latent": ("LATENT", {"tooltip": "Video latents from Segment Sampler or Long Video Loop."})},
                "optional": {"memory": (c.MEMORY, {"tooltip": "Connect the first memory state to put the start frame first."})}}

    def decode(self, model, latent, memory=None):
        start = check_memory(memory).start_latent if memory is not None else None
        with io.use(model) as engine:
            return (ops.decode(engine, io.latent_in(engine, latent), include_start=start, layout="image"),)


class EvaluateDrift:
    DESCRIPTION = "Drift (Δdrift over the first/last 15 %) and consistency metrics of a video, as text and a plot."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("report", "plot")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The video's frames, in order."}),
                             "fps": c.number("fps", 8.0, "Their frame rate (times in the report).")}}

    def evaluate(self, images, fps):
        report, plot = ops.evaluate_frames(io.image_to_uint8(images), fps)
        return {"ui": {"text": [report]}, "result": (report, torch.from_numpy(plot)[None])}


class WorldVideos:
    DESCRIPTION = "Render procedural world videos (with prompts) into ComfyUI's input folder, e.g. as training data."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("dataset",)
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "folder": ("STRING", {"default": "pfvg_world", "tooltip": "Folder name inside ComfyUI's input folder."}),
            "count": c.number("count", 4, "Number of videos.", c.Limit(1, 1000, integer=True)),
            "seconds": c.number("seconds", 6.0, "Length of each video.", c.Limit(1.0, 60.0)),
            "fps": c.number("fps", 8.0, "Frame rate of each video.", c.Limit(1.0, 30.0)),
            "seed": c.number("seed", 0, "Seed of the first video (video k uses seed + k).", c.Limit(0, 2**31 - 1, integer=True),
                             control_after_generate=True),
        }}

    def render(self, folder, count, seconds, fps, seed):
        ops.write_world_videos(io.safe_join(io.input_root(), folder, "folder"), count, seconds, fps, seed)
        return (folder,)


NODES = {"PFVGDecodeLatents": (DecodeLatents, "Decode Latents (PFVG codec)"), "PFVGEvaluateDrift": (EvaluateDrift, "Evaluate Drift (PFVG)"),
         "PFVGWorldVideos": (WorldVideos, "World Videos (PFVG)")}
