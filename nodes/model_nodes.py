from . import common as c


class LoadPackedDiT:
    DESCRIPTION = "Load the packed DiT (FramePack-F1 layout) with its SemanticPack: the embedded default or a model from models/pfvg."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        from pfvg_core import comfy

        files = comfy.list_models()
        sp = ["(none)"] + [f for f in files if f.endswith(".safetensors")]
        return {"required": {
            "model_name": ([comfy.EMBEDDED] + files, {"default": comfy.EMBEDDED,
                           "tooltip": "A PFVG model folder, a FramePack-F1 diffusers folder or a single .safetensors DiT under models/pfvg."}),
            "dtype": (["float32", "bfloat16", "float16"], {"default": "float32", "tooltip": "Weights dtype (float32 on CPU)."}),
            "semanticpack": (sp, {"default": "(none)", "tooltip": "Optional SemanticPack weights (.safetensors) to load over the model's."}),
        }}

    def load(self, model_name, dtype, semanticpack):
        import torch

        from pfvg_core import comfy

        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        return (comfy.load_named_model(model_name, dt, None if semanticpack == "(none)" else semanticpack),)


NODES = {"PFVGLoadPackedDiT": (LoadPackedDiT, "Load Packed DiT (PFVG)")}
