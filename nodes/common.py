"""Shared widget definitions for the PFVG nodes."""
CATEGORY = "PFVG"
MODEL = "PFVG_MODEL"
MEMORY = "PFVG_MEMORY"
SAMPLERS = ("euler", "unipc")  # = pfvg_core.flow.SAMPLERS (kept literal: importing the core here is not needed; tested)


def seed():
    return ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                    "tooltip": "Noise seed; segment n draws from (seed, n), so the same seed gives the same video."})


def sampler_inputs():
    return {
        "steps": ("INT", {"default": 25, "min": 1, "max": 200, "tooltip": "Sampling steps per segment."}),
        "cfg": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 30.0, "step": 0.1,
                          "tooltip": "Real classifier-free guidance (1 = off, FramePack-F1's default; > 1 uses the negative prompt)."}),
        "distilled_guidance": ("FLOAT", {"default": 10.0, "min": 0.0, "max": 50.0, "step": 0.1,
                                         "tooltip": "FramePack-F1's embedded (distilled) guidance scale."}),
        "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1,
                            "tooltip": "Time shift; 0 = resolution-dependent (FramePack)."}),
        "sampler": (list(SAMPLERS), {"default": "euler",
                                     "tooltip": "euler: first order; unipc: UniPC bh2 (FramePack's sampler), better at few steps."}),
    }


def options(steps, cfg, distilled_guidance, shift, sampler="euler"):
    from pfvg_core.loop import SamplerOptions

    return SamplerOptions(steps=steps, cfg=cfg, distilled_guidance=distilled_guidance, shift=shift if shift > 0 else None,
                          sampler=sampler)
