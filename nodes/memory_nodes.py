from pfvg_core import operations as ops
from pfvg_core.extend import extend_state
from pfvg_core.state import MemoryConfig, MemoryState, step

from . import comfy_io as io
from . import common as c


def check_memory(memory) -> MemoryState:
    if not isinstance(memory, MemoryState):
        raise ValueError(f"memory: expected a PFVG memory state (PFVG_MEMORY), got {type(memory).__name__}")
    return memory


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
                "model": c.model_input(),
                **c.widgets(MemoryConfig),
                "fps": c.number("fps", 8.0, "Video frame rate (prompt schedule times use it)."),
                **c.fit_inputs(),
            },
            "optional": {
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Prompt for the embedded model's text encoder."}),
                "conditioning": ("CONDITIONING", {"tooltip": "HunyuanVideo text conditioning (instead of the prompt)."}),
                "image": ("IMAGE", {"tooltip": "Start image (encoded with the model's codec)."}),
                "latent": ("LATENT", {"tooltip": "Start latent (instead of the image)."}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "SigLIP image features for FramePack-F1."}),
                "vae": ("VAE", {"tooltip": "FramePack-F1: HunyuanVideo's VAE, to encode the image (the embedded model has its own codec)."}),
                "prompts": (c.PROMPTS, {"tooltip": "A prompt schedule encoded by Encode Prompt Schedule: ψ₀ uses its first prompt."}),
            },
        }

    def encode(self, model, fps, prompt="", conditioning=None, image=None, latent=None, clip_vision_output=None, prompts=None,
               vae=None, fit="crop", resolution=640, **inputs):
        with io.use(model) as engine:
            return self._encode(engine, fps, prompt, conditioning, image, latent, clip_vision_output, prompts, vae, fit,
                                resolution, inputs)

    def _encode(self, model, fps, prompt, conditioning, image, latent, clip_vision_output, prompts, vae, fit, resolution, inputs):
        features = io.prompt_features(conditioning)
        if features is None and prompts is not None:
            features = c.check_prompts(prompts).entries[0][1]
        pixels = None
        if image is not None and latent is None:  # brought to the model's size (pfvg_core.sizing, the CLI's rule)
            image = io.fit_image(model, image, fit, resolution)
            pixels = io.image_to_pixels(image) if model.codec is not None else None
            latents = io.vae_encode(model, vae, image) if model.codec is None else None
        else:
            latents = io.latent_in(model, latent) if latent is not None else None
        state = ops.encode_psi0(
            model, c.options(MemoryConfig, inputs), fps, pixels=pixels, latent=latents,
            prompt=prompt or None, features=features,
            image_embeds=io.clip_vision_embeds(clip_vision_output))
        return (state,)


class MemoryPackStep:
    DESCRIPTION = "Append a generated segment to the memory: FramePack history ⊕ segment, ψ ← Squeeze(ψ, Memorize(segment)). Returns a new state."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MEMORY,)
    RETURN_NAMES = ("memory",)
    FUNCTION = "step"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": (c.MODEL, {"tooltip": "The model that made the memory state."}),
                             "memory": (c.MEMORY, {"tooltip": "The state the segment was sampled from."}),
                             "segment": ("LATENT", {"tooltip": "The segment from Segment Sampler."})}}

    def step(self, model, memory, segment):
        with io.use(model) as engine:
            return (step(engine, check_memory(memory), io.latent_in(engine, segment)),)


class ExtendVideo:
    DESCRIPTION = ("Continue an existing video: its first frame is the start image, every later window of frames goes "
                   "into the FramePack history and ψ as if generated. Connect the memory to Long Video Loop.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.MEMORY,)
    RETURN_NAMES = ("memory",)
    FUNCTION = "extend"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (c.MODEL, {"tooltip": "The model that will continue the video."}),
                **c.widgets(MemoryConfig),
                "fps": c.number("fps", 8.0, "Frame rate of the frames given (prompt schedule times continue from the video's end)."),
                **c.fit_inputs("frames"),
            },
            "optional": {
                "images": ("IMAGE", {"tooltip": "The video's frames (e.g. Load Video → Get Video Components); brought to the "
                                     "model's size (fit, resolution)."}),
                "latent": ("LATENT", {"tooltip": "The video as latents [B, C, T, H, W] (e.g. a HunyuanVideo VAE Encode), instead of images."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Prompt for the embedded model's text encoder."}),
                "conditioning": ("CONDITIONING", {"tooltip": "HunyuanVideo text conditioning (instead of the prompt)."}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "SigLIP features of the first frame (FramePack-F1)."}),
                "vae": ("VAE", {"tooltip": "FramePack-F1: HunyuanVideo's VAE, to encode the frames (the embedded model has its own codec)."}),
            },
        }

    def extend(self, model, fps, images=None, latent=None, prompt="", conditioning=None, clip_vision_output=None, vae=None,
               fit="crop", resolution=640, **inputs):
        with io.use(model) as engine:
            return self._extend(engine, fps, images, latent, prompt, conditioning, clip_vision_output, vae, fit, resolution,
                                inputs)

    def _extend(self, model, fps, images, latent, prompt, conditioning, clip_vision_output, vae, fit, resolution, inputs):
        frames = latents = None
        if images is not None and latent is None:  # brought to the model's size (pfvg_core.sizing, the CLI's rule)
            if model.codec is not None:  # streamed: frames fitted and encoded window by window
                frames = io.fit_frames(model, images, fit, resolution, "images")
            else:
                latents = io.vae_encode(model, vae, io.fit_image(model, images, fit, resolution, "images"), "images")
        elif latent is not None:
            latents = io.latent_in(model, latent)
        state = extend_state(
            model, c.options(MemoryConfig, inputs), fps, frames=frames, latents=latents,
            prompt=prompt or None, features=io.prompt_features(conditioning),
            image_embeds=io.clip_vision_embeds(clip_vision_output))
        return (state,)


NODES = {"PFVGEncodePsi0": (EncodePsi0, "Encode ψ₀ (PFVG)"), "PFVGMemoryPackStep": (MemoryPackStep, "MemoryPack Step (PFVG)"),
         "PFVGExtendVideo": (ExtendVideo, "Extend Video (PFVG)")}
