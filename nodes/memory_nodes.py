from . import common as c


class EncodePsi0:
    DESCRIPTION = "Start a long video: encode the start image and the prompt into the memory state (ψ₀ = prompt ⊕ image features)."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MEMORY,)
    RETURN_NAMES = ("memory",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (c.MODEL,),
                "seed": c.seed(),
                "window": ("INT", {"default": 9, "min": 1, "max": 64, "tooltip": "Latent frames generated per segment."}),
                "schedule": ("STRING", {"default": "td_f16k4f2k2f1k1", "tooltip": "FramePack packing schedule (FramePack §5 notation)."}),
                "rope": (["video", "local"], {"default": "video", "tooltip": "video: start image at index 0 of the whole video (PFVG); local: FramePack-F1."}),
                "memory": (["on", "off", "zero"], {"default": "on", "tooltip": "SemanticPack on, off, or ψ₀ = 0 (ablation)."}),
                "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "tooltip": "Video frame rate (prompt schedule times use it)."}),
            },
            "optional": {
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Prompt for the embedded model's text encoder."}),
                "conditioning": ("CONDITIONING", {"tooltip": "HunyuanVideo text conditioning (instead of the prompt)."}),
                "image": ("IMAGE", {"tooltip": "Start image (encoded with the model's codec)."}),
                "latent": ("LATENT", {"tooltip": "Start latent (instead of the image)."}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "SigLIP image features for FramePack-F1."}),
            },
        }

    def encode(self, model, seed, window, schedule, rope, memory, fps, prompt="", conditioning=None, image=None,
               latent=None, clip_vision_output=None):
        from pfvg_core import comfy

        return (comfy.encode_memory(model, image=image, latent=latent, prompt=prompt or None, conditioning=conditioning,
                                    clip_vision_output=clip_vision_output, seed=seed, window=window, schedule=schedule,
                                    rope=rope, memory=memory, fps=fps),)


class MemoryPackStep:
    DESCRIPTION = "Append a generated segment to the memory: FramePack history ⊕ segment, ψ ← Squeeze(ψ, Memorize(segment)). Returns a new state."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MEMORY,)
    RETURN_NAMES = ("memory",)
    FUNCTION = "step"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": (c.MODEL,), "memory": (c.MEMORY,), "segment": ("LATENT", {"tooltip": "The segment from Segment Sampler."})}}

    def step(self, model, memory, segment):
        from pfvg_core import comfy

        return (comfy.step_memory(model, memory, comfy.latent_samples(segment)),)


NODES = {"PFVGEncodePsi0": (EncodePsi0, "Encode ψ₀ (PFVG)"), "PFVGMemoryPackStep": (MemoryPackStep, "MemoryPack Step (PFVG)")}
