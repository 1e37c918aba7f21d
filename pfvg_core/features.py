"""Optional metrics from pretrained image networks (PFVG §4.2 uses VBench's subject / background
consistency: DINO and CLIP features). Nothing here downloads: a user who has a network's weights in a
local folder (a transformers model saved with ``save_pretrained``: CLIP, SigLIP, DINOv2, …) passes
that folder; the pack's own metrics (``metrics.py``) need no network at all.

Feature consistency (VBench): with f_i the unit feature of frame i,
    consistency = mean over i ≥ 1 of ½·(cos(f_i, f_0) + cos(f_i, f_{i−1})),
reported with its two halves (to the first frame, between neighbours) and the per-frame
similarity to the first frame. Its Δdrift (PFVG §4.2, Table 1's ΔBackground / ΔSubject Consistency)
is |M(V_start) − M(V_end)| with M this consistency computed inside the first and inside the last 15 %
of frames (each window's own first frame and neighbours).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

FrameFeatures = Callable[[np.ndarray], np.ndarray]  # frames [T, H, W, 3] uint8 → features [T, D]


def feature_consistency(features: np.ndarray) -> dict[str, float | list[float]]:
    """VBench-style consistency of per-frame features [T, D] (T ≥ 2)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be [T ≥ 2, D], got shape {f.shape}")
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a frame has an all-zero feature vector: cosine similarity is undefined")
    f = f / norms
    to_first = f[1:] @ f[0]
    to_prev = (f[1:] * f[:-1]).sum(1)
    return {"feature_consistency": float(np.mean(0.5 * (to_first + to_prev))),
            "feature_consistency_first": float(to_first.mean()),
            "feature_consistency_neighbour": float(to_prev.mean()),
            "feature_similarity_to_first": [1.0] + [float(x) for x in to_first]}


def load_image_features(folder: str, device: str = "cpu", batch: int = 16) -> FrameFeatures:
    """A local transformers vision model → a function frames → features [T, D].

    ``folder`` holds ``config.json``, the image processor's ``preprocessor_config.json`` and
    ``.safetensors`` weights. CLIP / SigLIP models use their image embedding
    (``get_image_features``); vision backbones (DINOv2, CLIP/SigLIP vision towers) their pooled output."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"feature model folder not found: {folder} (a local transformers model folder)")
    try:
        from transformers import AutoImageProcessor, AutoModel
    except ImportError as e:  # optional: ComfyUI installs ship it, the pack does not need it
        raise ImportError("feature metrics need the 'transformers' package (pip install transformers)") from e
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(device).eval()
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load a vision model from {folder}: {e}") from e

    @torch.no_grad()
    def features(frames: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(frames), batch):
            px = processor(images=list(np.asarray(frames[i : i + batch])), return_tensors="pt")["pixel_values"].to(device)
            if hasattr(model, "get_image_features"):
                y = model.get_image_features(pixel_values=px)
            else:
                y = model(pixel_values=px)
            if not isinstance(y, torch.Tensor):  # a model output: pooled features, else the first token
                pooled = getattr(y, "pooler_output", None)
                y = pooled if pooled is not None else y.last_hidden_state[:, 0]
            out.append(y.float().reshape(len(px), -1).cpu().numpy())
        return np.concatenate(out)

    return features


def delta_drift_feature_consistency(features: np.ndarray, fraction: float = 0.15) -> float:
    """Δdrift of feature consistency (PFVG §4.2): |consistency(first 15 %) − consistency(last 15 %)|,
    each computed inside its window (features [T, D], each window at least 2 frames)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be [T ≥ 2, D], got shape {f.shape}")
    k = max(2, int(round(fraction * len(f))))
    return float(abs(feature_consistency(f[:k])["feature_consistency"] - feature_consistency(f[-k:])["feature_consistency"]))


def evaluate_features(frames: np.ndarray, features: FrameFeatures) -> dict[str, float]:
    """Feature consistency of a video [T, H, W, 3] and its Δdrift (§4.2, consistency inside each 15 % window)."""
    f = features(np.asarray(frames))
    c = feature_consistency(f)
    c.pop("feature_similarity_to_first")
    c["delta_drift_feature_consistency"] = delta_drift_feature_consistency(f)
    return c
