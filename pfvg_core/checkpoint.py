"""Weights on disk: safetensors only (never pickle), atomic writes, clear errors.

A load that fails names the file and what is wrong: missing, truncated/corrupt, or built for
another configuration (missing/unexpected keys, shape mismatches).
"""
from __future__ import annotations

import contextlib
import os

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .atomic import atomic_path


class CheckpointError(RuntimeError):
    """A weights file is missing, unreadable, or does not fit the model."""


def save_safetensors_atomic(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Write to a temporary file in the same folder, then rename (``atomic.atomic_path``): a kill
    never leaves half a file, and the file is readable like any other (0644 under the usual umask)."""
    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata=metadata)


def read_safetensors(path: str, what: str = "weights") -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning every failure into one clear ``CheckpointError``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: {what} file not found")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt?): {e}") from e


def check_state_dict(path: str, state: dict[str, torch.Tensor], model: torch.nn.Module, what: str) -> None:
    """Raise if ``state`` does not match ``model`` key for key and shape for shape."""
    check_keys(path, {k: tuple(v.shape) for k, v in state.items()}, model.state_dict(), what)


def check_keys(path: str, got: dict[str, tuple], expected_state: dict[str, torch.Tensor], what: str) -> None:
    """Raise if the shapes ``got`` (name → shape) do not match ``expected_state`` key for key and shape for shape."""
    expected = {k: tuple(v.shape) for k, v in expected_state.items()}
    got = {k: tuple(v) for k, v in got.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: file {got[k]} vs model {expected[k]})")
        hint = ""
        if any(k.endswith(("scale_weight", "scale_input", ".absmax")) for k in unexpected):
            hint = " (a scaled-fp8 / quantized file: use a plain fp8_e4m3fn, fp8_e5m2, bf16 or fp16 file)"
        raise CheckpointError(f"{path}: {what} weights were built for another config{hint}: " + "; ".join(parts))


@contextlib.contextmanager
def open_safetensors(path: str, what: str = "weights", device: torch.device | str = "cpu"):
    """``safe_open`` a file for per-tensor reads onto ``device``; every failure is one ``CheckpointError``."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: {what} file not found")
    try:
        handle = safe_open(path, framework="pt", device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        size = os.path.getsize(path)
        raise CheckpointError(f"{path}: not a readable safetensors file ({size} bytes; truncated or corrupt?): {e}") from e
    with handle as f:
        yield f


_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
              "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def safetensors_dtypes(path: str) -> dict[str, tuple[torch.dtype | None, tuple]]:
    """name → (dtype, shape) from a safetensors file's JSON header, without reading any tensor."""
    import json
    import struct

    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if n > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (bad header): {e}") from e
    return {k: (_ST_DTYPES.get(v.get("dtype")), tuple(v.get("shape", ()))) for k, v in header.items() if k != "__metadata__"}


def load_state_dict_checked(path: str, model: torch.nn.Module, what: str, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Read ``path`` and check it against ``model``; returns the state dict (cast to ``dtype`` if given)."""
    state = read_safetensors(path, what)
    check_state_dict(path, state, model, what)
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    return state


def load_module(path: str, module: torch.nn.Module, what: str) -> torch.nn.Module:
    """Strictly load ``path`` into an already built ``module`` (same config)."""
    ref = next(iter(module.state_dict().values()), None)
    state = load_state_dict_checked(path, module, what, dtype=ref.dtype if ref is not None else None)
    module.load_state_dict(state, strict=True)
    return module


# --- references to base weights (a trained model that stores only what trained) -------------------
def _weight_files(path: str) -> list[str]:
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path)
                      if f.endswith((".safetensors", ".json")) and not f.startswith("."))
    return [path]


def weights_reference(path: str, sample: int = 1 << 20) -> dict:
    """A reference to base weights (a diffusers folder or one ``.safetensors`` file): absolute path, size in
    bytes and a fingerprint — SHA-256 over every file's name, size, safetensors header (names, dtypes,
    shapes, offsets) and its first and last ``sample`` bytes. Reading a few MB, not the 26 GB, it still
    tells another file or another version of the weights from the one a model was trained on."""
    import hashlib
    import struct

    if not os.path.exists(path):
        raise CheckpointError(f"{path}: base weights not found")
    h = hashlib.sha256()
    total = 0
    for f in _weight_files(path):
        size = os.path.getsize(f)
        total += size
        h.update(f"{os.path.basename(f)}:{size}".encode())
        with open(f, "rb") as fh:
            if f.endswith(".safetensors") and size >= 8:
                n = struct.unpack("<Q", fh.read(8))[0]
                h.update(fh.read(min(n, 100_000_000)))
            fh.seek(0)
            h.update(fh.read(sample))
            fh.seek(max(0, size - sample))
            h.update(fh.read(sample))
    return {"path": os.path.abspath(path), "size": total, "fingerprint": h.hexdigest()}


def check_weights_reference(ref: dict, what: str = "base weights") -> str:
    """The path of the referenced weights if they are the ones recorded (size and fingerprint), else a clear error."""
    path = ref.get("path") if isinstance(ref, dict) else None
    if not path or not os.path.exists(path):
        raise CheckpointError(f"{what} not found at {path!r}: this model stores only what trained and needs the base "
                              "weights it was trained on (put them back there, or edit meta.base.path in pfvg.json)")
    now = weights_reference(path)
    if now["size"] != ref.get("size") or now["fingerprint"] != ref.get("fingerprint"):
        raise CheckpointError(f"{what} at {path} are not the ones this model was trained on (size {now['size']} vs "
                              f"{ref.get('size')}, fingerprint {now['fingerprint'][:12]} vs {str(ref.get('fingerprint'))[:12]})")
    return path
