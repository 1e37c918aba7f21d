"""Shared node definitions: category, link types, and widgets built from the engine's option dataclasses."""
import functools
import inspect

from pfvg_core.options import from_inputs, inputs
from pfvg_core.validate import SAMPLING, Limit

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
    return number("seed", 0, "Noise seed; segment n draws from (seed, n), so the same seed gives the same video.",
                  control_after_generate=True)


SEGMENTS_OR_ZERO = Limit(0, SAMPLING["segments"].hi, integer=True)  # Long Video Loop: 0 = from seconds


def number(name: str, default, tooltip: str, limit: Limit | None = None, **ui) -> tuple:
    """An INT/FLOAT input whose min/max are the validation range (``pfvg_core.validate``: ``SAMPLING[name]``
    unless ``limit`` is given), so the widget and the error message never disagree."""
    limit = limit or SAMPLING[name]
    kind = "INT" if limit.integer else "FLOAT"
    lo = limit.lo if not limit.lo_open else (limit.lo + 1 if limit.integer else min(default, 0.1))
    spec = {"default": default, "min": int(lo) if limit.integer else float(lo),
            "max": int(limit.hi) if limit.integer else float(limit.hi), "tooltip": tooltip, **ui}
    return (kind, spec)


def fit_inputs(what: str = "image") -> dict:
    """The ``fit`` and ``resolution`` inputs of Encode ψ₀ and Extend Video (``pfvg_core.sizing``, the CLI's rule)."""
    from pfvg_core.model import embedded_resolution
    from pfvg_core.sizing import BUCKET_RESOLUTION, FIT_MODES

    w, h = embedded_resolution()
    return {
        "fit": (list(FIT_MODES), {"default": "crop", "tooltip": (
            f"How the {what} is brought to the model's size: the embedded default's native {w}×{h}; FramePack-F1: the "
            "FramePack bucket nearest its aspect ratio at `resolution`. crop: scale to cover, cut the overflow evenly "
            "(no distortion); stretch: scale each side to fit.")}),
        "resolution": number("resolution", BUCKET_RESOLUTION, (
            "FramePack-F1 only: the bucket resolution (FramePack's 640 by default; others scale its buckets, each side "
            "a multiple of 16). Models with their own codec ignore it: they use their native size."), step=16),
    }


def number_inputs(cls) -> dict:
    """{name: (kind, Limit)} for every INT/FLOAT input of a node class: its widget's min/max as a closed range."""
    out = {}
    spec = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            if entry[0] in ("INT", "FLOAT"):
                opts = entry[1]
                out[name] = (entry[0], Limit(opts["min"], opts["max"], integer=entry[0] == "INT"))
    return out


def check_numbers(cls):
    """Wrap a node class's FUNCTION so that every INT/FLOAT input is checked against its own widget range
    before the node runs (``validate.number``: finite, inside [min, max], the input named): ComfyUI checks
    min/max of API prompts but lets NaN and ±inf through. The widget is the one declaration of the range."""
    name = cls.FUNCTION
    func = getattr(cls, name)
    if getattr(func, "_pfvg_checked", False):
        return cls
    signature = inspect.signature(func)

    @functools.wraps(func)
    def run(self, *args, **kwargs):
        from pfvg_core.validate import number as check

        bound = signature.bind_partial(self, *args, **kwargs)
        for key, (_, limit) in number_inputs(cls).items():
            if key in bound.arguments:
                bound.arguments[key] = check(key, bound.arguments[key], limit)
            elif key in bound.kwargs:
                bound.kwargs[key] = check(key, bound.kwargs[key], limit)
        return func(*bound.args, **bound.kwargs)

    run._pfvg_checked = True
    setattr(cls, name, run)
    return cls


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
