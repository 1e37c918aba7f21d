"""Reading images, reading and writing videos: animated WebP/GIF with Pillow, MP4/WebM/MOV/MKV through
PyAV (``av``, FFmpeg's libraries as a Python package, already a ComfyUI requirement: no ``ffmpeg``
program on PATH is needed). Reading streams frames one at a time and keeps the source fps."""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path, check_writable


def load_image(path: str, size: tuple[int, int] | None = None, multiple: int = 8, fit: str = "crop") -> torch.Tensor:
    """An image file → [1, 3, 1, H, W] in [-1, 1], brought to ``size`` (W, H) by ``fit`` (``sizing.fit_frame``:
    crop or stretch), or cropped to a multiple."""
    from .sizing import fit_frame

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    try:
        img = _to_rgb8(Image.open(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e
    if size is not None:
        img = Image.fromarray(fit_frame(np.asarray(img), tuple(size), fit))
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


VIDEO_OUT = {".webp": None, ".mp4": ("mp4", "libx264", "yuv420p"), ".webm": ("webm", "libvpx-vp9", "yuv420p")}
AV_EXT = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")  # read through PyAV
ANIMATED_EXT = (".webp", ".gif", ".apng")  # read through Pillow


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is a dependency
        raise RuntimeError("MP4/WebM files need PyAV: pip install av (ComfyUI already requires it)") from e
    return av


def check_video_path(path: str) -> str:
    """Fail before any work if ``path`` cannot be written as a video here (name, permission)."""
    if os.path.splitext(path)[1].lower() not in VIDEO_OUT:
        raise ValueError(f"output {path}: expected a .webp, .mp4 or .webm file name")
    return check_writable(path, "output")


def check_image_path(path: str, what: str = "image") -> str:
    """Fail before any work if ``path`` cannot be written as a PNG/JPEG/WebP image here."""
    if os.path.splitext(path)[1].lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise ValueError(f"{what} {path}: expected a .png, .jpg or .webp file name")
    return check_writable(path, what)


def _even(frame: np.ndarray) -> np.ndarray:
    """yuv420p needs an even width and height: repeat the last row / column where one is odd."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frame


def write_video(frames: np.ndarray | Iterable[np.ndarray], path: str, fps: float, crf: int = 18) -> str:
    """Write uint8 frames [T, H, W, 3] (an array or any iterable of [H, W, 3] frames, consumed one at a
    time) as ``.webp`` (animated, lossless, Pillow), ``.mp4`` (H.264) or ``.webm`` (VP9) through PyAV
    (``crf``: quality, lower is better), atomically (a temporary file beside ``path``, then a rename:
    a kill leaves the old or the new video)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in VIDEO_OUT:
        raise ValueError(f"output {path}: expected a .webp, .mp4 or .webm file name")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if ext == ".webp":
        imgs = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        if not imgs:
            raise ValueError(f"{path}: no frames to write")
        with atomic_path(path) as tmp:
            imgs[0].save(tmp, format="WEBP", save_all=True, append_images=imgs[1:], duration=max(1, round(1000 / fps)),
                         loop=0, lossless=True, method=0)
        return path
    av = _av()
    fmt, codec, pix = VIDEO_OUT[ext]
    rate = Fraction(fps).limit_denominator(1001)
    n = 0
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format=fmt) as out:
            stream = None
            for f in frames:
                f = _even(np.ascontiguousarray(f, dtype=np.uint8))
                if stream is None:
                    stream = out.add_stream(codec, rate=rate)
                    stream.height, stream.width = f.shape[:2]
                    stream.pix_fmt = pix
                    stream.options = {"crf": str(crf)} if codec == "libx264" else {"crf": str(crf + 12), "b": "0"}
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    out.mux(packet)
                n += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                out.mux(packet)
    return path


@dataclass
class VideoReader:
    """A video file opened for streaming: ``fps`` (the source's), ``size`` (W, H), ``frames`` (count,
    or None when the container does not say), and ``iter(reader)`` yields uint8 [H, W, 3] frames one at
    a time (resized to ``resize`` (W, H) when given), so a long video is never held in memory whole."""

    path: str
    fps: float
    size: tuple[int, int]
    frames: int | None
    resize: tuple[int, int] | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        ext = os.path.splitext(self.path)[1].lower()
        if ext in ANIMATED_EXT:
            yield from self._pillow_frames()
            return
        av = _av()
        try:
            with av.open(self.path) as c:
                stream = c.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in c.decode(stream):
                    if self.resize is not None:
                        frame = frame.reformat(width=self.resize[0], height=self.resize[1], interpolation="BICUBIC")
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise ValueError(f"{self.path}: unreadable video ({e})") from e

    def _pillow_frames(self) -> Iterator[np.ndarray]:
        """Animated WebP/GIF; encoders merge identical consecutive frames into one longer frame:
        those are repeated to the shortest frame duration (the video's frame period)."""
        with Image.open(self.path) as im:
            base = _min_duration(im)
            for k in range(getattr(im, "n_frames", 1)):
                im.seek(k)
                img = im.convert("RGB")
                if self.resize is not None:
                    img = img.resize(self.resize, Image.BICUBIC)
                arr = np.asarray(img)
                for _ in range(max(1, round(_duration(im) / base))):
                    yield arr

    def read_all(self, limit: int | None = None) -> np.ndarray:
        """Frames [T, H, W, 3] (at most ``limit``)."""
        out = []
        for f in self:
            if limit is not None and len(out) >= limit:
                break
            out.append(f)
        if not out:
            raise ValueError(f"{self.path}: no frames")
        return np.stack(out)


def _duration(im) -> int:
    im.load()  # Pillow fills a frame's duration when it decodes it
    return max(1, int(im.info.get("duration", 0) or 1))


def _min_duration(im) -> int:
    d = []
    for k in range(getattr(im, "n_frames", 1)):
        im.seek(k)
        d.append(_duration(im))
    im.seek(0)
    return min(d)


def open_video(path: str, resize: tuple[int, int] | None = None) -> VideoReader:
    """Open a video (MP4/WebM/MOV/MKV/AVI through PyAV, animated WebP/GIF through Pillow) for streaming."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in ANIMATED_EXT:
        try:
            with Image.open(path) as im:
                n = getattr(im, "n_frames", 1)
                base = _min_duration(im)
                total = 0
                for k in range(n):
                    im.seek(k)
                    total += max(1, round(_duration(im) / base))
                size = im.size
        except Exception as e:
            raise ValueError(f"{path}: not a readable animated image ({e})") from e
        return VideoReader(path, 1000.0 / base if base > 1 else 8.0, size, total, resize)
    if ext not in AV_EXT:
        raise ValueError(f"{path}: expected a video ({', '.join(AV_EXT + ANIMATED_EXT)})")
    av = _av()
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise ValueError(f"{path}: no video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or s.base_rate
            fps = float(rate) if rate else 0.0
            size = (s.codec_context.width, s.codec_context.height)
            frames = int(s.frames) or None
    except av.error.FFmpegError as e:
        raise ValueError(f"{path}: unreadable video ({e})") from e
    if not fps > 0:
        raise ValueError(f"{path}: the video stream gives no frame rate")
    return VideoReader(path, fps, size, frames, resize)


def resample(frames: Iterable[np.ndarray], src_fps: float, fps: float) -> Iterator[np.ndarray]:
    """Frames at ``src_fps`` → frames at ``fps`` (nearest earlier source frame at each output time k/fps;
    streamed). Equal rates pass every frame through."""
    if not (src_fps > 0 and fps > 0):
        raise ValueError(f"frame rates must be > 0, got {src_fps} and {fps}")
    k = 0
    for i, f in enumerate(frames):
        while k * src_fps < (i + 1) * fps * (1 - 1e-9):  # output time k/fps falls in source frame i's interval
            yield f
            k += 1


def read_video(path: str, resize: tuple[int, int] | None = None) -> tuple[Iterator[np.ndarray], float]:
    """(a generator of uint8 [H, W, 3] frames, the source fps)."""
    r = open_video(path, resize)
    return iter(r), r.fps


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
