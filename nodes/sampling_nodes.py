from . import common as c


class SegmentSampler:
    DESCRIPTION = "Sample the next segment from the memory state (FramePack context + ψ), as a 5-D video LATENT."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("segment",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"model": (c.MODEL,), "memory": (c.MEMORY,), "seed": c.seed(), **c.sampler_inputs()},
            "optional": {
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "This segment's prompt (embedded model)."}),
                "conditioning": ("CONDITIONING", {"tooltip": "This segment's HunyuanVideo conditioning."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Used when cfg > 1."}),
            },
        }

    def sample(self, model, memory, seed, steps, cfg, distilled_guidance, shift, sampler="euler", prompt="", conditioning=None,
               negative_prompt=""):
        from pfvg_core import comfy

        opts = c.options(steps, cfg, distilled_guidance, shift, sampler)
        cond = comfy.make_conditioning(model, comfy.check_memory(memory), prompt or None, conditioning)
        neg = comfy.make_conditioning(model, memory, negative_prompt) if negative_prompt and cfg != 1.0 else None
        x = comfy.sample_next(model, memory, cond, seed, opts, neg, comfy.Progress(steps))
        return ({"samples": x.cpu()},)


class LongVideoLoop:
    DESCRIPTION = "Generate a whole long video: segment after segment with MemoryPack, one progress bar, stops on Cancel."
    CATEGORY = c.CATEGORY
    RETURN_TYPES = ("LATENT", "IMAGE", c.MEMORY)
    RETURN_NAMES = ("latent", "images", "memory")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (c.MODEL,), "memory": (c.MEMORY,), "seed": c.seed(),
                "seconds": ("FLOAT", {"default": 10.0, "min": 0.1, "max": 3600.0, "step": 0.5, "tooltip": "Video length (used when segments = 0)."}),
                "segments": ("INT", {"default": 0, "min": 0, "max": 10000, "tooltip": "Number of segments; 0 = from seconds."}),
                "prompt_schedule": ("STRING", {"multiline": True, "default": "0: a red ball rolls across a field",
                                               "tooltip": "One prompt per line, with its start time: '0: …', '[12s] …'."}),
                **c.sampler_inputs(),
            },
            "optional": {
                "conditioning": ("CONDITIONING", {"tooltip": "HunyuanVideo conditioning for every segment (instead of the schedule)."}),
                "negative_prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "Used when cfg > 1."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def run(self, model, memory, seed, seconds, segments, prompt_schedule, steps, cfg, distilled_guidance, shift, sampler="euler",
            conditioning=None, negative_prompt="", unique_id=None):
        from pfvg_core import comfy
        from pfvg_core.loop import segments_for_seconds

        memory = comfy.check_memory(memory)
        tf = getattr(model.codec, "temporal_factor", 1) if model.codec is not None else 1
        n = segments or segments_for_seconds(seconds, memory.fps, memory.state.config.window, tf)
        latents, mem = comfy.long_video(model, memory, segments=n, seed=seed, options=c.options(steps, cfg, distilled_guidance, shift, sampler),
                                        prompt_schedule=prompt_schedule, conditioning=conditioning,
                                        negative=negative_prompt or None, node_id=unique_id)
        images = comfy.decode(model, latents, include_start=memory.start_latent if memory.state.segment == 0 else None) \
            if model.codec is not None else comfy.placeholder_image()
        return ({"samples": latents}, images, mem)


NODES = {"PFVGSegmentSampler": (SegmentSampler, "Segment Sampler (PFVG)"), "PFVGLongVideoLoop": (LongVideoLoop, "Long Video Loop (PFVG)")}
