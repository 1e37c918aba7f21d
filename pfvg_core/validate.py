"""The one place where numbers and texts entering the engine are checked (CLI, config files, nodes).

Every number must be finite and inside sane bounds (``SAMPLING``, ``TRAINING``, ``STAGE`` tables);
a bad value is an error that names the input, what was expected and (shortened) what was given.
ComfyUI's own min/max checks let NaN through, so the nodes call these too.

Prompt rule (``prompt_entries``): a text is a *schedule* when its first non-empty line starts with a
start time (``0: a cat`` or ``[0s] a cat``); then every non-empty line must start with a time,
the first at 0, each later than the one before. Otherwise the whole text, lines included, is one
plain prompt; a plain prompt whose later line starts with a time is an error (it looks like a
schedule missing its times). ``abc: x`` is a plain prompt (a start time is a number).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass

import torch

MAX_SHOWN = 80  # characters of a bad value shown in an error message


def short(value, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters (a 100 k-character input is not echoed in full)."""
    r = repr(value)
    return r if len(r) <= limit else f"{r[:limit]}… ({len(r)} characters)"


@dataclass(frozen=True)
class Limit:
    lo: float
    hi: float
    integer: bool = False
    lo_open: bool = False  # lo itself is not allowed
    optional: bool = False  # None allowed

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        left = "(" if self.lo_open else "["
        return f"{kind} in {left}{self.lo:g}, {self.hi:g}]" + (" or none" if self.optional else "")


def number(name: str, value, limit: Limit):
    """``value`` as int/float if it is finite and within ``limit``, else ValueError naming ``name``."""
    if value is None and limit.optional:
        return None
    expected = limit.describe()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):  # text from a form or a config: parse it, then check it
            try:
                value = int(value) if limit.integer else float(value)
            except ValueError:
                raise ValueError(f"{name}: expected {expected}, got {short(value)}") from None
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # 0-d tensor / numpy scalar
            value = value.item()
        else:
            raise ValueError(f"{name}: expected {expected}, got {short(value)} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}: expected {expected}, got {value}")
    if limit.integer and not float(value).is_integer():
        raise ValueError(f"{name}: expected {expected}, got {short(value)}")
    if value < limit.lo or value > limit.hi or (limit.lo_open and value == limit.lo):
        raise ValueError(f"{name}: expected {expected}, got {short(value)}")
    return int(value) if limit.integer else float(value)


SEED = Limit(0, 2**64 - 1, integer=True)
MAX_SCHEDULE_FRAMES = 1024  # frames a FramePack schedule may pack (f…k… groups summed)

# generation / sampling (CLI generate, Segment Sampler, Long Video Loop, Encode ψ₀)
SAMPLING: dict[str, Limit] = {
    "seconds": Limit(0.1, 3600),
    "fps": Limit(0.1, 240),
    "steps": Limit(1, 1000, integer=True),
    "cfg": Limit(1, 100),
    "distilled_guidance": Limit(0, 100),
    "guidance_rescale": Limit(0, 1),
    "shift": Limit(0.01, 100, optional=True),
    "window": Limit(1, 64, integer=True),
    "segments": Limit(1, 100_000, integer=True),
    "seed": SEED,
    "width": Limit(8, 4096, integer=True),
    "height": Limit(8, 4096, integer=True),
    "resolution": Limit(64, 2048, integer=True),  # FramePack-F1's bucket resolution (pfvg_core.sizing)
}

# training config (TrainConfig) and its stages (StageConfig)
TRAINING: dict[str, Limit] = {
    "lr": Limit(0, 1, lo_open=True),
    "weight_decay": Limit(0, 10),
    "warmup_steps": Limit(0, 10**9, integer=True),
    "grad_clip": Limit(0, 1e6),
    "seed": SEED,
    "shift": Limit(0.01, 100),
    "motion_weight": Limit(0, 1000),
    "guidance": Limit(0, 100),
    "window": Limit(1, 64, integer=True),
    "videos_per_step": Limit(1, 100_000, integer=True),
    "max_clips": Limit(1, 100_000, integer=True, optional=True),
    "save_every": Limit(1, 10**9, integer=True),
    "keep_checkpoints": Limit(1, 1000, integer=True),
    "open_gate": Limit(-50, 50),
}
STAGE: dict[str, Limit] = {
    "steps": Limit(1, 10**9, integer=True),
    "lr": Limit(0, 1, lo_open=True, optional=True),
    "student_steps": Limit(1, 100, integer=True),
}


def numbers(values: dict, table: dict[str, Limit], prefix: str = "") -> dict:
    """Check every entry of ``values`` that ``table`` knows; returns the converted values."""
    return {k: (number(prefix + k, v, table[k]) if k in table else v) for k, v in values.items()}


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise if ``tensor`` holds NaN or ±inf (never write a non-finite frame as a success)."""
    if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name}: {bad} non-finite values (NaN/inf) — the model weights or the inputs are broken")
    return tensor


# --- dataclass fields from config files --------------------------------------------------------
def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list)
    if isinstance(hint, type):
        return isinstance(value, hint) or (dataclasses.is_dataclass(hint) and isinstance(value, dict))
    return True


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "none"
    if origin is list:
        return "a list"
    return {int: "an integer", float: "a number", str: "a text", bool: "true/false"}.get(hint, getattr(hint, "__name__", str(hint)))


def check_fields(cls, data: dict, what: str, table: dict[str, Limit] | None = None) -> dict:
    """Check a dict of options for dataclass ``cls`` (from TOML/YAML/JSON): known names, the
    annotated types, then finiteness and bounds from ``table``. Returns converted values."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} options: expected a table of name = value, got {short(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} option(s) {[short(u, 40) for u in unknown]}; known: {sorted(known)}")
    for k, v in data.items():
        if not _type_ok(v, hints[k]):
            raise ValueError(f"{what} option {k}: expected {_type_name(hints[k])}, got {short(v)}")
    return numbers(data, table or {}, prefix=f"{what} option ")


# --- prompts -----------------------------------------------------------------------------------
_TIMED = re.compile(r"^\[\s*(\d+(?:\.\d+)?)\s*s?\s*\]\s*(.*)$|^(\d+(?:\.\d+)?)\s*s?\s*:\s*(.*)$")


def prompt_entries(text: str, what: str = "prompt") -> str | tuple[tuple[float, str], ...]:
    """Apply the prompt rule (module docstring): a plain prompt (returned as is) or the entries
    ((start seconds, prompt), …) of a schedule."""
    if not isinstance(text, str):
        raise ValueError(f"{what}: expected a text, got {short(text)}")
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines or not _TIMED.match(lines[0][1]):
        for n, line in lines[1:]:
            if _TIMED.match(line):
                raise ValueError(f"{what} line {n} {short(line, 40)} starts with a time but line {lines[0][0]} does not: "
                                 "in a schedule every line starts with its time ('0: …', '[12s] …')")
        return text
    entries: list[tuple[float, str]] = []
    for n, line in lines:
        m = _TIMED.match(line)
        if not m:
            raise ValueError(f"{what} line {n} {short(line, 40)} has no start time: in a schedule every line starts "
                             "with its time ('0: …' or '[12s] …')")
        t = float(m.group(1) or m.group(3))
        prompt = (m.group(2) if m.group(1) is not None else m.group(4)).strip()
        if not prompt:
            raise ValueError(f"{what} line {n}: no prompt after the time {t:g}s")
        if not math.isfinite(t) or t > SAMPLING["seconds"].hi:
            raise ValueError(f"{what} line {n}: start time {short(t)} is not a sane number of seconds")
        if not entries and t != 0:
            raise ValueError(f"{what} line {n}: the first prompt of a schedule must start at 0, not {t:g}s")
        if entries and t <= entries[-1][0]:
            raise ValueError(f"{what} line {n}: start {t:g}s is not after the previous {entries[-1][0]:g}s")
        entries.append((t, prompt))
    return tuple(entries)


# --- names and folders typed into a front end ---------------------------------------------------
MAX_NAME_BYTES = 255  # one file or folder name (ext4, NTFS, APFS: 255)
MAX_RELATIVE_PATH_BYTES = 1024  # a name inside a front end's folder, sub-folders included
MAX_PATH_BYTES = 4000  # the joined path (Linux PATH_MAX is 4096)
RESERVED_CHARACTERS = '<>:"|?*'  # not allowed in Windows file names (a workflow is shared across systems)


def path_name(what: str, name, max_bytes: int = MAX_RELATIVE_PATH_BYTES) -> str:
    """``name`` (a file or folder name, sub-folders separated by / or \\) if it is a usable relative path: a
    non-empty text of at most ``max_bytes`` UTF-8 bytes, each part at most ``MAX_NAME_BYTES``, without control
    characters or ``RESERVED_CHARACTERS`` (``:`` also marks a Windows drive); else ValueError naming ``what``.
    Checked before any work, so a bad name never surfaces as the file system's "File name too long"."""
    if not isinstance(name, str):
        raise ValueError(f"{what}: expected a text (a file or folder name), got {short(name)} ({type(name).__name__})")
    if not name.strip():
        raise ValueError(f"{what} is empty: give a file or folder name")
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ValueError(f"{what}: expected a name of at most {max_bytes} bytes, got {size} bytes ({short(name, 40)})")
    bad = sorted({c for c in name if ord(c) < 32 or ord(c) == 127 or c in RESERVED_CHARACTERS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ValueError(f"{what}: {short(name, 40)} contains {shown}; a name may not contain control characters or "
                         f"any of {RESERVED_CHARACTERS}")
    for part in name.replace("\\", "/").split("/"):
        n = len(part.encode("utf-8", "surrogatepass"))
        if n > MAX_NAME_BYTES:
            raise ValueError(f"{what}: each file or folder name may have at most {MAX_NAME_BYTES} bytes, "
                             f"{short(part, 40)} has {n}")
    return name


def joined_path(what: str, path: str) -> str:
    """``path`` if the whole path is within ``MAX_PATH_BYTES`` (a long root plus a long name), else ValueError naming ``what``."""
    n = len(path.encode("utf-8", "surrogatepass"))
    if n > MAX_PATH_BYTES:
        raise ValueError(f"{what}: the path it gives is {n} bytes long, more than the {MAX_PATH_BYTES} a file system "
                         "accepts: choose a shorter name")
    return path


# --- what goes out to a browser ----------------------------------------------------------------
def json_safe(value):
    """``value`` with every non-finite number (NaN, ±inf; Python, NumPy or a 0-d tensor) replaced by None, through
    dicts, lists and tuples (tuples become lists), so that it is strict JSON: ComfyUI stores what a node sends to
    the page and a NaN breaks the browser's parse of the whole history."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalar, 0-d tensor
        return json_safe(value.item())
    if hasattr(value, "tolist"):  # arrays, tensors
        return json_safe(value.tolist())
    return value


def strict_json(value, **kw) -> str:
    """``json.dumps`` of ``json_safe(value)``, refusing anything still not strict JSON."""
    import json

    return json.dumps(json_safe(value), allow_nan=False, **kw)


def format_metric(name: str, value) -> str:
    """One ``name: value`` line of a report; a non-finite number reads ``not finite`` (never a bare nan/inf)."""
    if isinstance(value, float):
        return f"{name}: {value:.5g}" if math.isfinite(value) else f"{name}: not finite"
    return f"{name}: {value}"
