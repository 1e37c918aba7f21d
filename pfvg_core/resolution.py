"""Frame sizes: FramePack's resolution buckets (FramePack ``bucket_tools``: 14 (H, W) pairs of about
640² pixels, multiples of 32 at 640) generalised to any resolution (the same aspect ratios, scaled and
rounded to multiples of 16), and FramePack's resize + centre crop to a bucket."""
from __future__ import annotations

import numpy as np
from PIL import Image

# FramePack's buckets at resolution 640, (height, width).
BUCKETS_640 = ((416, 960), (448, 864), (480, 832), (512, 768), (544, 704), (576, 672), (608, 640),
               (640, 608), (672, 576), (704, 544), (768, 512), (832, 480), (864, 448), (960, 416))
MULTIPLE = 16


def buckets(resolution: int = 640) -> list[tuple[int, int]]:
    """(H, W) buckets at ``resolution`` (640: FramePack's own; others scaled, multiples of 16)."""
    if not isinstance(resolution, (int, np.integer)) or resolution < MULTIPLE:
        raise ValueError(f"resolution must be an integer ≥ {MULTIPLE}, got {resolution!r}")
    if resolution == 640:
        return list(BUCKETS_640)
    s = resolution / 640

    def r(v):
        return max(MULTIPLE, int(round(v * s / MULTIPLE)) * MULTIPLE)

    return sorted({(r(h), r(w)) for h, w in BUCKETS_640})


def nearest_bucket(width: int, height: int, resolution: int = 640) -> tuple[int, int]:
    """The bucket (W, H) whose aspect ratio is nearest to ``width × height`` (FramePack's
    ``find_nearest_bucket``: min |h·bw − w·bh|)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    bh, bw = min(buckets(resolution), key=lambda b: abs(height * b[1] - width * b[0]))
    return bw, bh


def resize_and_center_crop(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3] → [height, width, 3]: scaled to cover the target, then centre-cropped (FramePack's
    ``resize_and_center_crop``)."""
    img = Image.fromarray(np.asarray(frame))
    w0, h0 = img.size
    if (w0, h0) == (width, height):
        return np.asarray(frame)
    s = max(width / w0, height / h0)
    nw, nh = max(width, int(round(w0 * s))), max(height, int(round(h0 * s)))
    img = img.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - width) // 2, (nh - height) // 2
    return np.asarray(img.crop((left, top, left + width, top + height)))
