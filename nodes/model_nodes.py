from pfvg_core.backbone import ATTENTION_BACKENDS, OFFLOAD, STORAGE

from . import comfy_io as io
from . import common as c

DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 on a GPU, float32 on the CPU


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
            "dtype": (list(DTYPES), {"default": "auto", "tooltip": "Compute dtype: auto = bfloat16 on a GPU, float32 on the CPU."}),
            "semanticpack": (sp, {"default": "(none)", "tooltip": "Optional SemanticPack weights (.safetensors) to load over the model's."}),
        }, "optional": {
            "storage": (list(STORAGE), {"default": "auto", "tooltip": "DiT weight storage: auto keeps an fp8 file in fp8; "
                                        "fp8_e4m3fn / fp8_e5m2 store weights in fp8 and compute in the dtype (about half the memory)."}),
            "offload": (list(OFFLOAD), {"default": "none", "tooltip": "group: the DiT's blocks rest in RAM and move to the GPU one "
                                        "at a time (24 GB cards; slower; needs accelerate)."}),
            "attention": (list(ATTENTION_BACKENDS), {"default": "native", "tooltip": "Attention kernels (diffusers): native SDPA, "
                                                     "flash-attn or sageattention when installed."}),
        }}

    def load(self, model_name, dtype, semanticpack, storage="auto", offload="none", attention="native"):
        return (io.load_model(model_name, dtype, None if semanticpack == "(none)" else semanticpack, storage, offload, attention),)


NODES = {"PFVGLoadPackedDiT": (LoadPackedDiT, "Load Packed DiT (PFVG)")}
