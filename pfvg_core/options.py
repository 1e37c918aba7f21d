"""An option is declared once: as a dataclass field carrying its default, range and description.

Front ends build their inputs from these fields (the ComfyUI nodes turn them into widgets, see
``nodes/common.py``); the engine receives the dataclass as one value. Adding an option means adding a
field and using it: two places.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, tooltip: str, *, limit=None, min: float | None = None, max: float | None = None,
           step: float | None = None, choices: tuple | None = None, multiline: bool = False,
           widget_default: Any = dataclasses.MISSING, **ui):
    """A dataclass field shown as an input. ``limit``: its ``validate.Limit``: the widget's min/max are that
    range, and ``check_limits`` refuses a value outside it (or not finite) with the same range in the message.
    ``widget_default``: the input's default when the field's own default is not a widget value (e.g. ``None``
    shown as 0); ``ui``: further front-end hints, passed on."""
    if limit is not None:
        if limit.lo_open:
            raise ValueError("option: a widget range is closed; give a Limit without lo_open")
        min, max = (int(limit.lo), int(limit.hi)) if limit.integer else (float(limit.lo), float(limit.hi))
    spec = {"default": default if widget_default is dataclasses.MISSING else widget_default, "tooltip": tooltip}
    for key, value in (("min", min), ("max", max), ("step", step), ("choices", choices)):
        if value is not None:
            spec[key] = value
    if multiline:
        spec["multiline"] = True
    spec.update(ui)
    return dataclasses.field(default=default, metadata={"input": spec, **({"limit": limit} if limit is not None else {})})


def limits(cls) -> dict:
    """{field name: its ``validate.Limit``} for the fields of ``cls`` declared with ``option(limit=…)``."""
    return {f.name: f.metadata["limit"] for f in dataclasses.fields(cls) if "limit" in f.metadata}


def check_limits(obj, skip: tuple = ()) -> None:
    """In a frozen dataclass's ``__post_init__``: every field declared with a limit, checked and converted
    (``validate.number``: finite, inside the widget's range, the field named in the error)."""
    from .validate import number

    for name, limit in limits(type(obj)).items():
        if name not in skip:
            object.__setattr__(obj, name, number(name, getattr(obj, name), limit))


def inputs(cls) -> dict[str, dict]:
    """{field name: its input spec} for the fields of ``cls`` declared with ``option``, in field order."""
    return {f.name: dict(f.metadata["input"]) for f in dataclasses.fields(cls) if "input" in f.metadata}


def from_inputs(cls, values: dict, **extra):
    """``cls`` built from the values of its declared inputs (other keys are ignored) plus ``extra``."""
    return cls(**{name: values[name] for name in inputs(cls) if name in values}, **extra)
