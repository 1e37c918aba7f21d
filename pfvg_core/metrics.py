"""Evaluation (PFVG §4.2; docs/embedded-model.md, The metrics): drift, consistency and revisit consistency, no downloads.

- Per-frame metrics M: sharpness (variance of the Laplacian of luminance), colour statistics (mean
  of each channel, overall std), error to ground truth (MSE) where known.
- Δdrift^M(V) = |M(V_start) − M(V_end)| with V_start / V_end the first / last 15 % of frames (§4.2).
- Consistency: similarity of each frame to the first, and to its predecessor.
- Revisit consistency: when the camera returns to a view (ground-truth camera position within
  ``tol`` pixels, at least ``min_gap`` frames later, having left it by ``away`` px in between),
  similarity of the frame then to the frame when that view was first generated.
Similarity of two frames is 1 − mean |a − b| on [0, 1] pixels: 1 for identical frames, 0 for
black vs white. Networks (CLIP, DINO, …) are optional adapters a user with local weights can pass.

Truth-anchored metrics: a still frame cannot win them, because each compares the video
with the true one where the truth moves or comes back:
- ``revisit_error``: error to the truth on frames where the camera is back at a view it left;
- ``sprite_identity_on_return``: colour in the sprite's true mask and position of the colour-matched
  centroid when a sprite becomes visible again after an absence;
- ``camera_tracking``: Pearson correlation of the camera path estimated from the video (phase
  correlation between neighbours, integrated) with the true path;
- and beside them, not among them, the paper's Δdrift (§4.2) of the error to the truth and of
  consistency computed inside each window (``window_delta_drift``): it measures change, so a video
  wrong by the same amount throughout scores ≈ 0 (``DRIFT``).
Every table shows three references (``reference_videos``): the truth through the codec (the floor of
a latent model), the first frame repeated and the blurred first frame repeated (models that never
move); ``markdown_table`` refuses a table without them.
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


def revisit_pairs(cameras: np.ndarray, min_gap: int, tol: float = 0.0, away: float = 0.0) -> list[tuple[int, int]]:
    """(first, later) frame pairs with the camera back at a view seen ≥ ``min_gap`` frames before
    (and, with ``away`` > 0, left by at least ``away`` px in between: see ``returns``)."""
    return returns(cameras, min_gap, away, tol)


def revisit_consistency(frames: np.ndarray, cameras: np.ndarray, min_gap: int, tol: float = 0.0,
                        away: float = 0.0) -> dict[str, float]:
    """Mean similarity of a returning view to its first appearance (None-valued when none returns)."""
    pairs = revisit_pairs(cameras, min_gap, tol, away)
    if not pairs:
        return {"revisit_consistency": None, "revisit_pairs": 0}
    f = _float(frames)
    return {"revisit_consistency": float(np.mean([similarity(f[j], f[i]) for i, j in pairs])), "revisit_pairs": len(pairs)}


def window_delta_drift(frames: np.ndarray, metric: Callable[[np.ndarray], float], fraction: float = 0.15) -> float:
    """Δdrift^M(V) = |M(V_start) − M(V_end)| (PFVG §4.2, FramePack eq. 7) for a metric M of a whole
    clip (e.g. consistency), computed inside the first and inside the last 15 % of frames."""
    f = np.asarray(frames)
    if len(f) < 2:
        raise ValueError("window_delta_drift needs at least 2 frames")
    k = max(2, int(round(fraction * len(f))))
    return float(abs(metric(f[:k]) - metric(f[-k:])))


def returns(cameras: np.ndarray, min_gap: int, away: float, tol: float = 0.0) -> list[tuple[int, int]]:
    """(first, later) frame pairs where the camera is back (within ``tol`` px) at a view it saw at
    least ``min_gap`` frames before and left in between (moved ≥ ``away`` px from it). A static
    camera never returns: it never left."""
    cams = np.asarray(cameras, np.float64).reshape(len(cameras), -1)
    pairs = []
    for j in range(min_gap, len(cams)):
        row = np.abs(cams[:j] - cams[j]).max(1)  # Chebyshev distance of each earlier camera position
        farthest_after = np.maximum.accumulate(row[::-1])[::-1]  # max distance over frames i..j−1
        ok = (row[: j - min_gap + 1] <= tol) & (np.append(farthest_after[1:], 0.0)[: j - min_gap + 1] >= away)
        hits = np.nonzero(ok)[0]
        if hits.size:
            pairs.append((int(hits[0]), j))
    return pairs


def revisit_error(frames: np.ndarray, truth_frames: np.ndarray, cameras: np.ndarray, min_gap: int,
                  away: float | None = None, tol: float = 0.0) -> dict:
    """Error to the truth on revisited views: mean MSE (pixels in [0, 1]) between the video and the
    true video on the frames where the camera has come back to a view it left (``returns``). A model
    with memory restores what it saw; a still frame shows the wrong view. None when nothing returns."""
    f, g = _float(frames), _float(truth_frames)
    away = f.shape[2] / 4 if away is None else away
    js = sorted({j for _, j in returns(cameras, min_gap, away, tol) if j < min(len(f), len(g))})
    if not js:
        return {"revisit_error": None, "revisit_frames": 0}
    return {"revisit_error": float(((f[js] - g[js]) ** 2).mean()), "revisit_frames": len(js)}


def sprite_returns(visible_pixels: np.ndarray, min_absent: int, min_pixels: int = 12) -> list[tuple[int, int]]:
    """(sprite, frame) events: the sprite shows ≥ ``min_pixels`` pixels again after it was seen and
    then showed fewer for at least ``min_absent`` frames. ``visible_pixels`` [T, N]."""
    vis = np.asarray(visible_pixels) >= min_pixels
    events = []
    for i in range(vis.shape[1]):
        seen, gap = False, 0
        for k, x in enumerate(vis[:, i]):
            if x:
                if seen and gap >= min_absent:
                    events.append((i, k))
                seen, gap = True, 0
            else:
                gap += 1
    return sorted(events, key=lambda e: (e[1], e[0]))


def sprite_identity_on_return(frames: np.ndarray, sprite_ids: np.ndarray, colours, min_absent: int, settle: int = 4,
                              min_pixels: int = 12, match_tol: float = 48.0) -> dict:
    """Sprite identity on return (PFVG Fig. 5: objects after a long disappearance). At each return
    (``sprite_returns``) and the ``settle`` − 1 frames after it where the sprite is still visible:
    - colour error: |mean colour of the video in the sprite's true visible mask − its true colour|,
      averaged over channels, in 0–255 units;
    - position error: distance (px) between the centroid of the video's pixels within ``match_tol``
      (every channel) of the true colour and the true mask's centroid; when no pixel matches, the
      frame's width (the sprite is lost: also counted in ``identity_found``).
    ``sprite_ids`` [T, H, W] (−1: no sprite), ``colours`` [N, 3] (0–255). None when nothing returns."""
    f = np.asarray(frames).astype(np.float32)
    if f.max() <= 1.0 and np.asarray(frames).dtype != np.uint8:
        f = f * 255.0
    ids = np.asarray(sprite_ids)
    cols = np.asarray(colours, np.float32).reshape(-1, 3)
    t = min(len(f), len(ids))
    counts = (ids[:t, None] == np.arange(len(cols))[None, :, None, None]).sum(axis=(2, 3))
    events = sprite_returns(counts, min_absent, min_pixels)
    if not events:
        return {"identity_colour_error": None, "identity_position_error": None, "identity_found": None, "identity_returns": 0}
    col_err, pos_err, found = [], [], []
    yy, xx = np.mgrid[0 : f.shape[1], 0 : f.shape[2]]
    for i, k0 in events:
        for k in range(k0, min(t, k0 + settle)):
            mask = ids[k] == i
            if mask.sum() < min_pixels:
                break
            col_err.append(float(np.abs(f[k][mask].mean(0) - cols[i]).mean()))
            match = (np.abs(f[k] - cols[i]) <= match_tol).all(-1)
            found.append(bool(match.any()))
            if match.any():
                pos_err.append(float(np.hypot(xx[match].mean() - xx[mask].mean(), yy[match].mean() - yy[mask].mean())))
            else:
                pos_err.append(float(f.shape[2]))
    return {"identity_colour_error": float(np.mean(col_err)), "identity_position_error": float(np.mean(pos_err)),
            "identity_found": float(np.mean(found)), "identity_returns": len(events)}


def _spectra(frames: np.ndarray) -> np.ndarray:
    """FFT of the Hann-windowed, mean-free luminance of frames [T, H, W, 3]."""
    f = _float(frames) @ np.array([0.299, 0.587, 0.114], np.float32)
    f = f - f.mean(axis=(1, 2), keepdims=True)
    h, w = f.shape[1:]
    return np.fft.fft2(f * np.outer(np.hanning(h), np.hanning(w)).astype(np.float32))


def _phase_shift(a: np.ndarray, b: np.ndarray, lowpass: float) -> np.ndarray:
    """Content shifts [N, 2] (dx, dy) from spectra ``a`` [N, H, W] to ``b``: peak of the phase
    correlation, weighted by a Gaussian low-pass (σ = ``lowpass`` cycles/px) that damps a codec's fixed
    fine pattern, refined to a fraction of a pixel by a parabola through the peak and its
    neighbours; (0, 0) where the frames carry no structure."""
    cross = b * np.conj(a)
    mag = np.abs(cross)
    n, h, w = cross.shape
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    r = np.fft.ifft2(cross / np.maximum(mag, 1e-12) * np.exp(-(fx * fx + fy * fy) / (2 * lowpass**2))).real
    py, px = np.unravel_index(r.reshape(n, -1).argmax(-1), (h, w))
    idx = np.arange(n)

    def refine(c, lo, hi):  # vertex of the parabola through (−1, lo), (0, c), (1, hi)
        den = lo - 2 * c + hi
        return np.where(den < 0, 0.5 * (lo - hi) / np.where(den < 0, den, -1.0), 0.0)

    c = r[idx, py, px]
    dx = px + refine(c, r[idx, py, (px - 1) % w], r[idx, py, (px + 1) % w])
    dy = py + refine(c, r[idx, (py - 1) % h, px], r[idx, (py + 1) % h, px])
    dx, dy = np.where(dx > w / 2, dx - w, dx), np.where(dy > h / 2, dy - h, dy)
    flat = mag.reshape(n, -1).max(-1) < 1e-9
    return np.where(flat[:, None], 0.0, np.stack([dx, dy], 1))


def frame_shifts(frames: np.ndarray, lowpass: float = 0.3, strips: int = 2) -> np.ndarray:
    """Camera motion between neighbouring frames, [T − 1, 2] (dx, dy) in pixels, by phase
    correlation: dx is the median over ``strips`` horizontal strips, dy over as many vertical ones
    (robust to sprites that move on their own); content moving left by d means the camera moved right by d."""
    f = np.asarray(frames)

    def median_shift(axis: int, k: int) -> np.ndarray:  # axis 1: horizontal strips (rows); 2: vertical
        n = f.shape[axis]
        k = max(1, min(k, n // 8))
        per = []
        for s in range(k):
            spec = _spectra(np.take(f, np.arange(s * n // k, (s + 1) * n // k), axis=axis))
            per.append(_phase_shift(spec[:-1], spec[1:], lowpass))
        return np.median(np.stack(per), 0)

    # rounded to 1/100 px: identical frames give exactly 0 (no rounding noise for a correlation to find)
    return np.round(-np.stack([median_shift(1, strips)[:, 0], median_shift(2, strips)[:, 1]], 1), 2) + 0.0


def estimate_camera_path(frames: np.ndarray, lowpass: float = 0.3, strips: int = 2) -> np.ndarray:
    """Camera path [T, 2] estimated from a video, starting at (0, 0): the integrated ``frame_shifts``."""
    return np.concatenate([np.zeros((1, 2)), np.cumsum(frame_shifts(frames, lowpass, strips), 0)])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def camera_tracking(frames: np.ndarray, cameras: np.ndarray) -> dict:
    """Camera tracking: the camera path estimated from the video (``estimate_camera_path``) against
    the true path, as Pearson correlation per axis that moves (x, and y when the camera tilts) and
    their mean ``tracking_corr``; a video that does not move correlates 0. ``tracking_error_px``: mean
    |estimated − true| position (both start at the true start). None for a static true camera."""
    cams = np.asarray(cameras, np.float64).reshape(len(cameras), -1)[:, :2]
    t = min(len(frames), len(cams))
    cams = cams[:t]
    est = cams[0] + estimate_camera_path(np.asarray(frames)[:t])
    out = {"tracking_corr": None, "tracking_corr_x": None, "tracking_corr_y": None,
           "tracking_error_px": float(np.abs(est - cams).mean())}
    corrs = []
    for a, name in enumerate(("tracking_corr_x", "tracking_corr_y")):
        if np.ptp(cams[:, a]) > 0:
            out[name] = _pearson(est[:, a], cams[:, a])
            corrs.append(out[name])
    if corrs:
        out["tracking_corr"] = float(np.mean(corrs))
    return out


# metric: "lower" or "higher" is better. A still frame loses each when the camera moves; on a static
# camera its first frame is the true background, so there only the sprite metrics separate it.
TRUTH_ANCHORED = {
    "mean_mse_to_truth": "lower", "revisit_error": "lower", "identity_colour_error": "lower",
    "identity_position_error": "lower", "tracking_corr": "higher",
}
# Δdrift (§4.2) measures change between the first and last 15 %, not accuracy: a video that is wrong by
# the same amount throughout (a still frame on a camera whose period fits in the window) has Δdrift ≈ 0.
# Tables show it beside the truth-anchored metrics, never instead of them.
DRIFT = {"delta_drift_mse_to_truth": "lower", "delta_drift_sharpness": "lower", "delta_drift_consistency_neighbour": "lower"}
COLUMNS = {**TRUTH_ANCHORED, **DRIFT}
REF_CODEC = "(reference) true video through the codec"
REF_FIRST = "(reference) first frame repeated"
REF_BLUR = "(reference) blurred first frame repeated"
REFERENCES = (REF_CODEC, REF_FIRST, REF_BLUR)


def blur(frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """Gaussian blur of frames [T, H, W, 3] uint8 (separable, edges reflected)."""
    f = np.asarray(frames, np.float32)
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * f.ndim
        pad[axis] = (r, r)
        p = np.pad(f, pad, mode="reflect")
        n = f.shape[axis]
        f = sum(w * np.take(p, np.arange(j, j + n), axis=axis) for j, w in enumerate(k))
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def reference_first_frame(truth_frames: np.ndarray) -> np.ndarray:
    """The first true frame repeated: a model that never moves."""
    g = np.asarray(truth_frames)
    return np.repeat(g[:1], len(g), 0)


def reference_blurred_first_frame(truth_frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The first true frame, blurred (σ px), repeated: a model that never moves and loses detail."""
    return np.repeat(blur(np.asarray(truth_frames)[:1], sigma), len(truth_frames), 0)


def reference_through_codec(truth_frames: np.ndarray, codec: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The true video through ``codec`` (frames [T, H, W, 3] uint8 → same): the best a latent model can do."""
    g = np.asarray(truth_frames)
    out = np.asarray(codec(g))
    if out.shape != g.shape:
        raise ValueError(f"codec: expected it to return frames of shape {g.shape}, got {out.shape}")
    return out


def reference_videos(truth_frames: np.ndarray, codec: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """The three references every report shows, by name (``REFERENCES``)."""
    return {REF_CODEC: reference_through_codec(truth_frames, codec), REF_FIRST: reference_first_frame(truth_frames),
            REF_BLUR: reference_blurred_first_frame(truth_frames)}


def evaluate_references(videos, codec: Callable[[np.ndarray], np.ndarray]) -> dict[str, list[dict]]:
    """``evaluate`` of the three references on each world video (``world.WorldVideo``): {name: [scores]}."""
    out: dict[str, list[dict]] = {name: [] for name in REFERENCES}
    for v in videos:
        for name, frames in reference_videos(v.frames, codec).items():
            out[name].append(evaluate(frames, v.truth, truth_frames=v.frames, fps=v.fps, sprite_ids=v.sprite_ids))
    return out


def markdown_table(rows: dict[str, list[dict]], columns=None) -> str:
    """Rows {name: [scores of each video]} as a Markdown table of mean ± std (4 significant digits),
    the truth-anchored and Δdrift columns (``COLUMNS``) by default. The three references must be among the rows: a table
    without them cannot be read (is a model better than standing still?)."""
    missing = [r for r in REFERENCES if r not in rows]
    if missing:
        raise ValueError(f"rows: the table must show the references {missing} (use evaluate_references)")
    columns = list(columns or COLUMNS)

    def cell(scores, c):
        vals = [s[c] for s in scores if s.get(c) is not None]
        if not vals:
            return "—"
        return f"{np.mean(vals):.4g} ± {np.std(vals):.2g}" if len(vals) > 1 else f"{vals[0]:.4g}"

    names = [n for n in rows if n not in REFERENCES] + list(REFERENCES)
    arrows = [f"{c} {'↓' if COLUMNS.get(c) == 'lower' else '↑' if c in COLUMNS else ''}".strip() for c in columns]
    head = "| video | " + " | ".join(arrows) + " |\n|---|" + "---|" * len(columns) + "\n"
    return head + "".join(f"| {n} | " + " | ".join(cell(rows[n], c) for c in columns) + " |\n" for n in names)


def evaluate(frames: np.ndarray, truth: dict | None = None, truth_frames: np.ndarray | None = None, fps: float = 8.0,
             extra: dict[str, FrameMetric] | None = None, sprite_ids: np.ndarray | None = None,
             min_gap_s: float = 3.0) -> dict:
    """All metrics for one video [T, H, W, 3]. ``truth``: the world's truth dict (camera per frame);
    with it and ``truth_frames`` the truth-anchored metrics too (``TRUTH_ANCHORED``): revisit error,
    camera tracking and, given ``sprite_ids`` (or a truth holding the world's ``params``, re-rendered),
    sprite identity on return. Revisits and returns count after ≥ ``min_gap_s`` s away (longer than
    the FramePack context)."""
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
    for key in ("consistency_first", "consistency_neighbour"):  # consistency inside each 15 % window (§4.2)
        out[f"delta_drift_{key}"] = window_delta_drift(frames, lambda w, key=key: consistency(w)[key])
    if truth is not None and "camera" in truth:
        cams = np.asarray(truth["camera"])[: len(frames)]
        # a static camera never left its view: nothing is revisited
        out.update(revisit_consistency(frames, cams, min_gap=max(2, int(2 * fps)), away=frames.shape[2] / 4))
        out.update(camera_tracking(frames, cams))
        gap = max(2, int(round(min_gap_s * fps)))
        if truth_frames is not None:
            out.update(revisit_error(frames, truth_frames, cams, min_gap=gap))
        if sprite_ids is None and "params" in truth and "sprite_visible" in truth:
            from .world import video_from_truth

            sprite_ids = video_from_truth(truth).sprite_ids
        if sprite_ids is not None and np.shape(sprite_ids)[1:] == frames.shape[1:3] and truth.get("sprite_colours"):
            out.update(sprite_identity_on_return(frames, sprite_ids, truth["sprite_colours"][0], min_absent=gap))
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
