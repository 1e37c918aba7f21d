"""Shared node definitions: category, link types, and widgets built from the engine's option dataclasses."""
from pfvg_core.options import from_inputs, inputs

CATEGORY = "PFVG"
MODEL = "PFVG_MODEL"
MEMORY = "PFVG_MEMORY"  # a link carrying a pfvg_core.state.MemoryState
PROMPTS = "PFVG_PROMPTS"  # a link carrying a pfvg_core.loop.PromptSchedule of encoded prompt features


def check_prompts(prompts):
    from pfvg_core.loop import PromptSchedule

    if not isinstance(prompts, PromptSchedule):
        raise ValueError(f"prompts: expected an encoded prompt schedule (PFVG_PROMPTS), got {type(prompts).__name__}")
    return prompts


def model_input():
    return (MODEL, {"tooltip": "From Load Packed DiT (or Load LoRA)."})


def memory_input():
    return (MEMORY, {"tooltip": "A memory state from Encode ψ₀, Extend Video, MemoryPack Step or a previous loop."})


def seed():
    return ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                    "tooltip": "Noise seed; segment n draws from (seed, n), so the same seed gives the same video."})


def widget(spec: dict) -> tuple:
    """An option's input spec (``pfvg_core.options.option``) → a ComfyUI INPUT_TYPES entry."""
    spec = dict(spec)
    choices = spec.pop("choices", None)
    if choices is not None:
        return (list(choices), spec)
    default = spec["default"]
    kind = ("BOOLEAN" if isinstance(default, bool) else "INT" if isinstance(default, int)
            else "FLOAT" if isinstance(default, float) else "STRING")
    return (kind, spec)


def widgets(options_cls) -> dict:
    """INPUT_TYPES entries for every declared option of ``options_cls`` (a dataclass), in field order."""
    return {name: widget(spec) for name, spec in inputs(options_cls).items()}


def options(options_cls, values: dict, **extra):
    """The node's inputs → one ``options_cls`` value for the engine."""
    return from_inputs(options_cls, values, **extra)
