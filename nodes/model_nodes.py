from . import comfy_io as io
from . import common as c

DTYPES = ("float32", "bfloat16", "float16")  # torch dtype names


class LoadPackedDiT:
    DESCRIPTION = "Load the packed DiT (FramePack-F1 layout) with its SemanticPack: the embedded default or a model from models/pfvg."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        files = io.list_models()
        sp = ["(none)"] + [f for f in files if f.endswith(".safetensors")]
        return {"required": {
            "model_name": ([io.EMBEDDED] + files, {"default": io.EMBEDDED,
                           "tooltip": "A PFVG model folder, a FramePack-F1 diffusers folder or a single .safetensors DiT under models/pfvg."}),
            "dtype": (list(DTYPES), {"default": "float32", "tooltip": "Weights dtype (float32 on CPU)."}),
            "semanticpack": (sp, {"default": "(none)", "tooltip": "Optional SemanticPack weights (.safetensors) to load over the model's."}),
        }}

    def load(self, model_name, dtype, semanticpack):
        import torch

        return (io.load_model(model_name, getattr(torch, dtype), None if semanticpack == "(none)" else semanticpack),)


NODES = {"PFVGLoadPackedDiT": (LoadPackedDiT, "Load Packed DiT (PFVG)")}
