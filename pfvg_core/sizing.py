"""The one rule that brings a start image or a source video to the size a model was trained at, used by
the CLI (``generate --image`` / ``--extend``) and the ComfyUI nodes (Encode ψ₀, Extend Video) alike.

- A model with its own codec (the embedded default, models trained by this pack) works at its native
  size: ``meta['resolution']`` (W, H), each side cut to a multiple of the codec's factor.
- FramePack-F1 (no codec: HunyuanVideo's VAE outside the model) works at FramePack's resolution buckets:
  the bucket nearest the input's aspect ratio (``find_nearest_bucket`` of FramePack's
  ``diffusers_helper/bucket_tools.py``, defined there at 640) at a chosen ``resolution``; other
  resolutions scale the 640 buckets and round each side to a multiple of 16.

``crop`` (the default, FramePack's ``resize_and_center_crop``) scales the input to cover the target and
cuts the overflow evenly from both sides: nothing is distorted. ``stretch`` scales each side to the
target, ignoring the aspect ratio (what the CLI did before this module).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

FIT_MODES = ("crop", "stretch")
BUCKET_MULTIPLE = 16
BUCKET_RESOLUTION = 640  # FramePack's resolution; its buckets below are (H, W)
FRAMEPACK_BUCKETS = ((416, 960), (448, 864), (480, 832), (512, 768), (544, 704), (576, 672), (608, 640), (640, 608),
                     (672, 576), (704, 544), (768, 512), (832, 480), (864, 448), (960, 416))
DEFAULT_NATIVE = (64, 64)  # (W, H) of a codec model whose bundle records no resolution


def nearest_bucket(height: int, width: int, resolution: int = BUCKET_RESOLUTION) -> tuple[int, int]:
    """(H, W) of the FramePack bucket nearest ``height`` × ``width`` in aspect ratio, at ``resolution``
    (FramePack's own buckets at 640; scaled and rounded to multiples of 16 elsewhere). Ties go to the later
    (wider-than-tall → taller) bucket, as in FramePack."""
    if resolution < BUCKET_MULTIPLE or height < 1 or width < 1:
        raise ValueError(f"resolution {resolution} / size {width}x{height}: expected positive sizes, resolution ≥ 16")
    best, best_metric = FRAMEPACK_BUCKETS[0], float("inf")
    for bh, bw in FRAMEPACK_BUCKETS:
        metric = abs(height * bw - width * bh)
        if metric <= best_metric:
            best, best_metric = (bh, bw), metric
    scale = resolution / BUCKET_RESOLUTION
    return tuple(max(BUCKET_MULTIPLE, int(round(s * scale / BUCKET_MULTIPLE)) * BUCKET_MULTIPLE) for s in best)


def model_size(meta: dict, codec_factor: int | None, height: int, width: int,
               resolution: int = BUCKET_RESOLUTION) -> tuple[int, int]:
    """(W, H) the model wants for an input of ``height`` × ``width``: a codec model's native size (``meta
    ['resolution']``, cut to multiples of ``codec_factor``), else (FramePack-F1) the nearest bucket at ``resolution``."""
    if codec_factor is not None:
        w, h = tuple(meta.get("resolution", DEFAULT_NATIVE))
        f = int(codec_factor)
        return max(f, w - w % f), max(f, h - h % f)
    bh, bw = nearest_bucket(height, width, resolution)
    return bw, bh


def describe(meta: dict, codec_factor: int | None, resolution: int = BUCKET_RESOLUTION) -> str:
    """A line for errors and logs: the size a model works at."""
    if codec_factor is not None:
        w, h = model_size(meta, codec_factor, 1, 1)
        return f"{w}x{h} (the model's native size)"
    return f"the FramePack bucket nearest the input's aspect ratio at resolution {resolution}"


def fit_frame(frame: np.ndarray, size: tuple[int, int], mode: str = "crop") -> np.ndarray:
    """One uint8 frame [H, W, 3] → [size H, size W, 3] by ``mode`` (``crop`` or ``stretch``, module docstring)."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit: expected one of {FIT_MODES}, got {mode!r}")
    tw, th = size
    h, w = frame.shape[:2]
    if (w, h) == (tw, th):
        return frame
    img = Image.fromarray(frame)
    if mode == "stretch":
        return np.asarray(img.resize((tw, th), Image.LANCZOS))
    scale = max(tw / w, th / h)
    rw, rh = max(tw, int(round(w * scale))), max(th, int(round(h * scale)))
    img = img.resize((rw, rh), Image.LANCZOS)
    left, top = (rw - tw) // 2, (rh - th) // 2
    return np.asarray(img.crop((left, top, left + tw, top + th)))


def fit_frames(frames, size: tuple[int, int], mode: str = "crop"):
    """Frames (an iterable of uint8 [H, W, 3]) → the same frames at ``size`` (W, H), lazily."""
    for frame in frames:
        yield fit_frame(frame, size, mode)


def fit_pixels(image: torch.Tensor, size: tuple[int, int], mode: str = "crop") -> torch.Tensor:
    """Float frames [N, H, W, 3] in [0, 1] (ComfyUI's IMAGE) → [N, size H, size W, 3] in [0, 1]."""
    if tuple(image.shape[1:3]) == (size[1], size[0]):
        return image
    arr = (image[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    out = np.stack([fit_frame(a, size, mode) for a in arr])
    return torch.from_numpy(out.astype(np.float32) / 255.0)


def iter_fit_uint8(image: torch.Tensor, size: tuple[int, int], mode: str = "crop", chunk: int = 16):
    """Float frames [N, H, W, 3] in [0, 1] (ComfyUI's IMAGE) → uint8 frames [size H, size W, 3], one at a time,
    converted ``chunk`` frames at a time: the frames ``fit_pixels`` then a uint8 conversion give, without a
    whole-video copy (memory bounded by the chunk, not the video's length)."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit: expected one of {FIT_MODES}, got {mode!r}")
    same = tuple(image.shape[1:3]) == (size[1], size[0])
    for a in range(0, image.shape[0], int(chunk)):
        arr = (image[a : a + int(chunk), ..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
        for frame in arr:
            yield frame if same else fit_frame(frame, size, mode)
