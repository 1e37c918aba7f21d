"""Weights on disk: safetensors only (never pickle), atomic writes, clear errors.

A load that fails names the file and what is wrong: missing, truncated/corrupt, or built for
another configuration (missing/unexpected keys, shape mismatches).
"""
from __future__ import annotations

import os

import torch
from safetensors import SafetensorError
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
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
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
        raise CheckpointError(f"{path}: {what} weights were built for another config: " + "; ".join(parts))


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
