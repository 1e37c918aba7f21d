"""Reading images and writing videos (animated WebP with Pillow; MP4 through an ffmpeg binary)."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path, check_writable


def load_image(path: str, size: tuple[int, int] | None = None, multiple: int = 8) -> torch.Tensor:
    """An image file → [1, 3, 1, H, W] in [-1, 1], resized to ``size`` (W, H) or cropped to a multiple."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        img = _to_rgb8(Image.open(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if size is not None:
        img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    w, h = w - w % multiple, h - h % multiple
    if w < multiple or h < multiple:
        raise ValueError(f"{path}: image is too small ({img.size}); need at least {multiple}x{multiple}")
    img = img.crop((0, 0, w, h))
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
    return arr.permute(2, 0, 1)[None, :, None]


def _to_rgb8(img: Image.Image) -> Image.Image:
    """Any Pillow image → 8-bit RGB. 16/32-bit grey (``I;16``, ``I``) and float (``F``) images are
    scaled to 8 bits (Pillow's own ``convert`` clips them, which turns a 16-bit PNG white)."""
    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
        else:
            top = 65535.0 if img.mode.startswith("I;16") or (a.size and a.max() > 255) else 255.0
        a = np.nan_to_num(a, nan=0.0, posinf=top, neginf=0.0)
        img = Image.fromarray((np.clip(a / top, 0, 1) * 255).round().astype(np.uint8), "L")
    return img.convert("RGB")


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] → pixels [1, 3, T, H, W] in [-1, 1] (the inverse of ``to_uint8_frames``)."""
    return torch.from_numpy(np.asarray(frames)).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]


def to_uint8_frames(pixels: torch.Tensor) -> np.ndarray:
    """[B, 3, T, H, W] (or [3, T, H, W]) in [-1, 1] → uint8 [T, H, W, 3] (first batch item)."""
    if pixels.ndim == 5:
        pixels = pixels[0]
    x = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def check_video_path(path: str) -> str:
    """Fail before any work if ``path`` cannot be written as a video here (name, ffmpeg, permission)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".webp", ".mp4", ".webm"):
        raise ValueError(f"output {path}: expected a .webp or .mp4 file name")
    if ext != ".webp" and shutil.which("ffmpeg") is None:
        raise RuntimeError(f"writing {ext} needs the ffmpeg program on PATH; write .webp instead")
    return check_writable(path, "output")


def check_image_path(path: str, what: str = "image") -> str:
    """Fail before any work if ``path`` cannot be written as a PNG/JPEG/WebP image here."""
    if os.path.splitext(path)[1].lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise ValueError(f"{what} {path}: expected a .png, .jpg or .webp file name")
    return check_writable(path, what)


def write_video(frames: np.ndarray, path: str, fps: float) -> str:
    """Write uint8 frames [T, H, W, 3] as ``.webp`` (animated, lossless) or ``.mp4`` (needs ffmpeg),
    atomically (a temporary file beside ``path``, then a rename: a kill leaves the old or the new video)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".webp":
        imgs = [Image.fromarray(f) for f in frames]
        with atomic_path(path) as tmp:
            imgs[0].save(tmp, format="WEBP", save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)),
                         loop=0, lossless=True, method=0)
    elif ext in (".mp4", ".webm"):
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise RuntimeError(f"writing {ext} needs the ffmpeg program on PATH; write .webp instead")
        t, h, w, _ = frames.shape
        with atomic_path(path) as tmp:
            cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
                   "-i", "-", "-pix_fmt", "yuv420p", tmp]
            r = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
            if r.returncode != 0:
                err = r.stderr.decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"{path}: ffmpeg failed: {err[-1] if err else r.returncode}")
    else:
        raise ValueError(f"output {path}: expected a .webp or .mp4 file name")
    return path


def contact_sheet(frames: np.ndarray, path: str, columns: int = 8, count: int = 24) -> str:
    """A PNG grid of ``count`` frames evenly spread over the video."""
    t = frames.shape[0]
    pick = np.linspace(0, t - 1, min(count, t)).round().astype(int)
    h, w = frames.shape[1:3]
    rows = -(-len(pick) // columns)
    sheet = Image.new("RGB", (columns * w, rows * h))
    for i, k in enumerate(pick):
        sheet.paste(Image.fromarray(frames[k]), ((i % columns) * w, (i // columns) * h))
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(os.path.splitext(path)[1].lower(), "PNG")
    with atomic_path(path) as tmp:
        sheet.save(tmp, format=fmt)
    return path
