from pfvg_core import operations as ops
from pfvg_core.loop import SamplerOptions, sample_segment, segments_for_seconds
from pfvg_core.validate import SAMPLING, number

from . import comfy_io as io
from . import common as c
from .memory_nodes import check_memory


class SegmentSampler:
    DESCRIPTION = "Sample the next segment from the memory state (FramePack context + ψ), as a 5-D video LATENT."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("segment",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": c.model_input(), "memory": c.memory_input(), "seed": c.seed(), **c.widgets(SamplerOptions)},
            "optional": {
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "This segment's prompt (embedded model)."}),
                "conditioning": ("CONDITIONING", {"tooltip": "This segment's HunyuanVideo conditioning."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Used when cfg > 1."}),
            },
        }

    def sample(self, model, memory, seed, prompt="", conditioning=None, negative_prompt="", **inputs):
        with io.use(model) as engine:
            return self._sample(engine, memory, seed, prompt, conditioning, negative_prompt, inputs)

    def _sample(self, model, memory, seed, prompt, conditioning, negative_prompt, inputs):
        opts = c.options(SamplerOptions, inputs)
        state = check_memory(memory).replace(seed=number("seed", seed, SAMPLING["seed"]))
        cond = ops.segment_conditioning(model, state, prompt or None, io.prompt_features(conditioning))
        neg = ops.segment_conditioning(model, state, negative_prompt) if negative_prompt and opts.cfg != 1.0 else None
        progress = io.Progress(opts.steps, model=model)
        with io.interruptible():
            x = sample_segment(model, state, cond, neg, opts, on_step=progress.step, cancel=io.interrupted)
        return (io.latent_out(model, x),)


class LongVideoLoop:
    DESCRIPTION = "Generate a whole long video: segment after segment with MemoryPack, one progress bar, stops on Cancel."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("LATENT", "IMAGE", c.MEMORY, "FLOAT")
    RETURN_NAMES = ("latent", "images", "memory", "fps")
    OUTPUT_TOOLTIPS = ("The video's latents (raw VAE latents).", "The decoded frames (embedded codec; a black frame for models "
                       "without a codec: decode the latent with a VAE).", "The memory after the last segment (continue with "
                       "another loop).", "The video's frame rate (the memory's fps): wire it into Create Video's fps so the "
                       "video plays at the length asked.")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": c.model_input(), "memory": c.memory_input(), "seed": c.seed(),
                "seconds": c.number("seconds", 10.0, "Video length (used when segments = 0).", step=0.5),
                "segments": c.number("segments", 0, "Number of segments; 0 = from seconds.", c.SEGMENTS_OR_ZERO),
                "prompt_schedule": ("STRING", {"multiline": True, "default": "0: a red ball rolls across a field",
                                               "tooltip": "One prompt per line, with its start time: '0: …', '[12s] …'."}),
                **c.widgets(SamplerOptions),
            },
            "optional": {
                "conditioning": ("CONDITIONING", {"tooltip": "HunyuanVideo conditioning for every segment (instead of the schedule)."}),
                "prompts": (c.PROMPTS, {"tooltip": "A prompt schedule encoded with ComfyUI's text encoders (Encode Prompt "
                                        "Schedule); used instead of the text schedule."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Used when cfg > 1."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, model, memory, seed, seconds, segments, prompt_schedule, conditioning=None, prompts=None, negative_prompt="",
            unique_id=None, **inputs):
        with io.use(model) as engine:
            return self._run(engine, memory, seed, seconds, segments, prompt_schedule, conditioning, prompts, negative_prompt,
                             unique_id, inputs)

    def _run(self, model, memory, seed, seconds, segments, prompt_schedule, conditioning, prompts, negative_prompt, unique_id,
             inputs):
        state = check_memory(memory)
        opts = c.options(SamplerOptions, inputs)
        # seconds → segments with the VAE's temporal factor (4 for FramePack-F1: a segment of 9 latent frames is 36 frames)
        n = segments or segments_for_seconds(seconds, state.fps, state.config.window, model.temporal_factor)
        prompt, fixed = ops.loop_prompt(model, state, schedule_text=prompt_schedule, features=io.prompt_features(conditioning),
                                        prompts=c.check_prompts(prompts) if prompts is not None else None)
        progress = io.Progress(n * opts.steps, unique_id, segments=n, model=model)
        with io.interruptible():
            latents, last = ops.long_video(model, state, n, prompt, seed=seed, options=opts, fixed=fixed,
                                           negative_prompt=negative_prompt, on_step=progress.step, cancel=io.interrupted,
                                           on_segment=progress.segment_done)
        images = (ops.decode(model, latents, include_start=state.start_latent if state.segment == 0 else None, layout="image")
                  if model.codec is not None else io.placeholder_image())
        return (io.latent_out(model, latents), images, last, float(state.fps))


class EncodePromptSchedule:
    DESCRIPTION = ("Encode a prompt schedule ('0: …' / '[12s] …', one prompt per line) with ComfyUI's text encoders (CLIP), "
                   "line by line, for the Long Video Loop and Encode ψ₀ of FramePack-F1 models. Times are video seconds.")
    CATEGORY = c.CATEGORY
    RETURN_TYPES = (c.PROMPTS,)
    RETURN_NAMES = ("prompts",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("CLIP", {"tooltip": "HunyuanVideo text encoders (DualCLIPLoader, type hunyuan_video)."}),
            "schedule": ("STRING", {"multiline": True, "default": "0: a red ball rolls across a field\n[6s] the ball stops",
                                    "tooltip": "One prompt per line, with its start time: '0: …', '[12s] …'."}),
        }}

    def encode(self, clip, schedule):
        return (io.encode_prompts(clip, schedule),)


NODES = {"PFVGSegmentSampler": (SegmentSampler, "Segment Sampler (PFVG)"), "PFVGLongVideoLoop": (LongVideoLoop, "Long Video Loop (PFVG)"),
         "PFVGEncodePromptSchedule": (EncodePromptSchedule, "Encode Prompt Schedule (PFVG)")}
