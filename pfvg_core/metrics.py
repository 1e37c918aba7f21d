"""Evaluation (PFVG §4.2; DESIGN §6): drift, consistency and revisit consistency, no downloads.

- Per-frame metrics M: sharpness (variance of the Laplacian of luminance), colour statistics (mean
  of each channel, overall std), error to ground truth (MSE) where known.
- Δdrift^M(V) = |M(V_start) − M(V_end)| with V_start / V_end the first / last 15 % of frames (§4.2).
- Consistency: similarity of each frame to the first, and to its predecessor.
- Revisit consistency: when the camera returns to a view (ground-truth camera position within
  ``tol`` pixels, at least ``min_gap`` frames later), similarity of the frame then to the frame when
  that view was first generated.
Similarity of two frames is 1 − mean |a − b| on [0, 1] pixels: 1 for identical frames, 0 for
black vs white. Networks (CLIP, DINO, …) are optional adapters a user with local weights can pass.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

FrameMetric = Callable[[np.ndarray], float]


def _float(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    return f.astype(np.float32) / 255.0 if f.dtype == np.uint8 else f.astype(np.float32)


def sharpness(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of luminance (frame [H, W, 3] in [0, 1])."""
    y = frame @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = -4 * y[1:-1, 1:-1] + y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:]
    return float(lap.var())


def per_frame_metrics(frames: np.ndarray, truth_frames: np.ndarray | None = None,
                      extra: dict[str, FrameMetric] | None = None) -> dict[str, np.ndarray]:
    """Each metric as an array over frames. ``extra``: optional adapters (e.g. a CLIP score)."""
    f = _float(frames)
    out = {
        "sharpness": np.array([sharpness(x) for x in f]),
        "mean_r": f[..., 0].mean(axis=(1, 2)), "mean_g": f[..., 1].mean(axis=(1, 2)), "mean_b": f[..., 2].mean(axis=(1, 2)),
        "std": f.std(axis=(1, 2, 3)),
    }
    if truth_frames is not None:
        g = _float(truth_frames)
        n = min(len(f), len(g))
        out["mse_to_truth"] = ((f[:n] - g[:n]) ** 2).mean(axis=(1, 2, 3))
    for name, fn in (extra or {}).items():
        out[name] = np.array([fn(x) for x in f])
    return out


def delta_drift(values: np.ndarray, fraction: float = 0.15) -> float:
    """Δdrift^M = |mean M(first 15 %) − mean M(last 15 %)| (PFVG §4.2)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        raise ValueError("delta_drift needs at least one frame")
    k = max(1, int(round(fraction * v.size)))
    return float(abs(v[:k].mean() - v[-k:].mean()))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 − mean |a − b| for frames in [0, 1] (or uint8)."""
    return float(1.0 - np.abs(_float(a) - _float(b)).mean())


def consistency(frames: np.ndarray) -> dict[str, float]:
    f = _float(frames)
    to_first = [similarity(x, f[0]) for x in f[1:]] or [1.0]
    to_prev = [similarity(f[i], f[i - 1]) for i in range(1, len(f))] or [1.0]
    return {"consistency_first": float(np.mean(to_first)), "consistency_neighbour": float(np.mean(to_prev))}


def revisit_pairs(cameras: np.ndarray, min_gap: int, tol: float = 0.0) -> list[tuple[int, int]]:
    """(first, later) frame pairs with the camera back at a view seen ≥ ``min_gap`` frames before."""
    cams = np.asarray(cameras, np.float64).reshape(len(cameras), -1)
    pairs = []
    for j in range(len(cams)):
        d = np.abs(cams[: max(0, j - min_gap + 1)] - cams[j]).max(axis=1) if j >= min_gap else np.array([])
        hits = np.nonzero(d <= tol)[0]
        if hits.size:
            pairs.append((int(hits[0]), j))
    return pairs


def revisit_consistency(frames: np.ndarray, cameras: np.ndarray, min_gap: int, tol: float = 0.0) -> dict[str, float]:
    """Mean similarity of a returning view to its first appearance (None-valued when none returns)."""
    pairs = revisit_pairs(cameras, min_gap, tol)
    if not pairs:
        return {"revisit_consistency": None, "revisit_pairs": 0}
    f = _float(frames)
    return {"revisit_consistency": float(np.mean([similarity(f[j], f[i]) for i, j in pairs])), "revisit_pairs": len(pairs)}


def evaluate(frames: np.ndarray, truth: dict | None = None, truth_frames: np.ndarray | None = None, fps: float = 8.0,
             extra: dict[str, FrameMetric] | None = None) -> dict:
    """All metrics for one video [T, H, W, 3]. ``truth``: the world's truth dict (camera per frame)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    if len(frames) < 2:
        raise ValueError("evaluation needs at least 2 frames")
    per = per_frame_metrics(frames, truth_frames, extra)
    out: dict = {"frames": int(len(frames)), "fps": fps}
    for name, values in per.items():
        out[f"mean_{name}"] = float(np.mean(values))
        out[f"delta_drift_{name}"] = delta_drift(values)
    out.update(consistency(frames))
    if truth is not None and "camera" in truth:
        cams = np.asarray(truth["camera"])[: len(frames)]
        out.update(revisit_consistency(frames, cams, min_gap=max(2, int(2 * fps))))
    out["per_frame"] = {k: [round(float(x), 6) for x in v] for k, v in per.items()}
    return out


def plot_metrics(per_frame: dict[str, list[float]], path: str, fps: float = 8.0, size=(640, 360)) -> str:
    """A PNG of each per-frame metric over time (normalised to its own range), drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    colours = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    left, top, right, bottom = 40, 10, w - 150, h - 30
    d.rectangle([left, top, right, bottom], outline="black")
    for k, (name, vals) in enumerate(per_frame.items()):
        v = np.asarray(vals, np.float64)
        if v.size < 2:
            continue
        lo, hi = float(v.min()), float(v.max())
        y = (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)
        xs = left + (right - left) * np.arange(v.size) / (v.size - 1)
        ys = bottom - (bottom - top) * y
        c = colours[k % len(colours)]
        d.line(list(zip(xs.tolist(), ys.tolist())), fill=c, width=2)
        d.text((right + 8, top + 14 * k), f"{name} [{lo:.3g}, {hi:.3g}]", fill=c)
    n = len(next(iter(per_frame.values()), []))
    d.text((left, bottom + 8), "0 s", fill="black")
    d.text((right - 30, bottom + 8), f"{max(0, n - 1) / fps:.1f} s", fill="black")
    from .atomic import atomic_path

    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
