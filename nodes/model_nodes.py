from pfvg_core.lora import load_lora, with_loras
from pfvg_core.speed import COMPILE_MODES, COMPUTE_MODES, compile_blocks, set_compute, set_step_cache
from pfvg_core.backbone import ATTENTION_BACKENDS, OFFLOAD, STORAGE

from . import comfy_io as io
from . import common as c

DTYPES = ("auto", "float32", "bfloat16", "float16")  # auto: bfloat16 on a GPU, float32 on the CPU
NO_LORA = "(no LoRA in models/loras)"


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
                           "tooltip": "(embedded default): the small model shipped with the pack (trained on procedural world "
                           "videos; runs on a CPU). Or a PFVG model folder, a FramePack-F1 diffusers folder or a single "
                           ".safetensors DiT under models/pfvg (every pfvg folder of extra_model_paths.yaml too) or "
                           "models/diffusion_models."}),
            "dtype": (list(DTYPES), {"default": "auto", "tooltip": "Compute dtype: auto = bfloat16 on a GPU, float32 on the CPU."}),
            "semanticpack": (sp, {"default": "(none)", "tooltip": "Optional SemanticPack weights (.safetensors) to load over the model's."}),
        }, "optional": {
            "storage": (list(STORAGE), {"default": "auto", "tooltip": "DiT weight storage: auto keeps an fp8 file in fp8; "
                                        "fp8_e4m3fn / fp8_e5m2 store weights in fp8 and compute in the dtype (about half the memory)."}),
            "offload": (list(OFFLOAD), {"default": "none", "tooltip": "group: the DiT's blocks rest in RAM and move to the GPU one "
                                        "at a time (24 GB cards; slower; needs accelerate)."}),
            "attention": (list(ATTENTION_BACKENDS), {"default": "native", "tooltip": "Attention kernels (diffusers): native SDPA, "
                                                     "flash-attn or sageattention when installed, cudnn (torch's cuDNN attention)."}),
            "step_cache": c.number("step_cache", 0.0, "First Block Cache threshold: skip the DiT's later blocks while the first "
                                   "block's output changes by less than this between steps. 0 = off; 0.05–0.2 typical (faster, "
                                   "small error).", c.Limit(0.0, 1.0), step=0.01),
            "compile": (list(COMPILE_MODES), {"default": "off",
                                              "tooltip": "torch.compile the transformer blocks: faster sampling after a slow first segment."}),
            # fp8 matmuls (pfvg_core.speed.set_compute)
            "compute": (list(COMPUTE_MODES), {"default": "dtype", "tooltip": "DiT matmuls: dtype = in the compute dtype; fp8 = on "
                                              "fp8 tensor cores (RTX 40xx, H100/H200, Blackwell; needs torchao). With storage "
                                              "fp8_e4m3fn it also keeps the weights in fp8. auto = fp8 where the card and "
                                              "torchao allow it, else dtype."}),
        }}

    def load(self, model_name, dtype, semanticpack, storage="auto", offload="none", attention="native", step_cache=0.0,
             compile="off", compute="dtype"):
        model = io.load_model(model_name, dtype, None if semanticpack == "(none)" else semanticpack, storage, offload, attention)
        set_step_cache(model, step_cache if step_cache > 0 else None)
        if compute != "dtype" and io.placed_by_comfy(offload):  # fp8 layers are made where the model computes
            io.defer_until_loaded(model, compute, compile)
        else:
            set_compute(model, compute)  # before compile: the compiled blocks see the fp8 layers
            compile_blocks(model, compile)
        return (io.managed(model, offload),)  # held by ComfyUI's memory manager (a ModelPatcher) in ComfyUI


class LoadLoRA:
    DESCRIPTION = ("Add a HunyuanVideo / FramePack LoRA to the model's DiT (diffusers, kohya/musubi or ComfyUI key names). "
                   "Chain several; the input model is unchanged.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (c.MODEL, {"tooltip": "The model to add the LoRA to (from Load Packed DiT or another LoRA node)."}),
            "lora_name": (io.list_loras() or [NO_LORA], {"tooltip": "A .safetensors LoRA in ComfyUI's loras folder."}),
            "strength": c.number("strength", 1.0, "Multiplies the LoRA's update; 0 leaves the model as it is.", c.Limit(-10.0, 10.0),
                                 step=0.05),
        }}

    def apply(self, model, lora_name, strength):
        if lora_name == NO_LORA:
            raise ValueError("no LoRA to load: put .safetensors LoRAs into ComfyUI's models/loras folder and refresh")
        base = io.unwrap(model)
        lora = load_lora(io.lora_path(lora_name), base.dit)
        return (io.with_view(model, with_loras(base, [(lora, strength)])),)


NODES = {"PFVGLoadPackedDiT": (LoadPackedDiT, "Load Packed DiT (PFVG)"), "PFVGLoadLoRA": (LoadLoRA, "Load LoRA (PFVG)")}
