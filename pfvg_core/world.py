"""The procedural world (DESIGN §5): seeded videos with ground truth, cheap on a CPU.

A canvas wider (and taller) than the view holds a textured background and fixed landmarks;
sprites of several shapes and colours move and bounce; occluders (pillars in the foreground) hide a
sprite for seconds; the camera pans away and comes back (x(t) = A·(1 − cos 2πt/P)/2), so views seen
early are seen again later. Every video has a prompt made from its parameters and per-frame truth:
camera position, each sprite's box in the view, whether it is in view and whether it is occluded.

Colours: backgrounds and landmarks use channel values in [40, 215]; sprites use saturated colours
(every channel 0 or 255 or 30/225) that the background never produces, so truth can be checked
pixel by pixel.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

PALETTES = {  # name: (base colour, stripe colour)
    "green meadow": ((70, 140, 60), (110, 170, 80)),
    "sandy desert": ((190, 160, 100), (210, 185, 120)),
    "blue lake": ((60, 100, 170), (90, 140, 200)),
    "grey stone": ((110, 110, 115), (150, 150, 155)),
}
SPRITE_COLOURS = {"red": (255, 30, 30), "blue": (30, 30, 255), "yellow": (255, 255, 30), "magenta": (255, 30, 255),
                  "cyan": (30, 255, 255), "white": (255, 255, 255)}
SHAPES = ("circle", "square", "triangle")
LANDMARKS = {"hut": (120, 70, 45), "tree": (45, 95, 45), "rock": (90, 85, 80)}
OCCLUDER_COLOUR = (40, 40, 48)


@dataclass(frozen=True)
class Sprite:
    shape: str
    colour: str
    size: int  # radius / half side in pixels
    x0: float  # canvas position at t = 0
    y0: float
    vx: float  # pixels per second
    vy: float


@dataclass(frozen=True)
class WorldParams:
    seed: int
    view: int = 64
    canvas_w: int = 192
    canvas_h: int = 96
    palette: str = "green meadow"
    landmarks: tuple = ()  # (kind, x, y, w, h)
    sprites: tuple = ()
    occluders: tuple = ()  # (x, w) full-height pillars in canvas coordinates
    pan: float = 96.0  # camera pan amplitude A (pixels)
    period: float = 20.0  # camera period P (seconds)
    cam_y: float = 16.0

    @classmethod
    def sample(cls, seed: int, view: int = 64) -> "WorldParams":
        rng = np.random.default_rng(seed)
        cw, ch = 3 * view, view + view // 2
        palette = list(PALETTES)[rng.integers(len(PALETTES))]
        kinds = list(LANDMARKS)
        landmarks = []
        for k in range(4):
            kind = kinds[rng.integers(len(kinds))]
            w, h = int(rng.integers(8, 14)), int(rng.integers(10, 18))
            x = int(k * cw / 4 + rng.integers(4, cw // 4 - w - 4))
            landmarks.append((kind, x, int(rng.integers(ch // 3, ch - h - 2)), w, h))
        names = list(SPRITE_COLOURS)
        colours = rng.choice(len(names), size=3, replace=False)
        sprites = []
        for i in range(int(rng.integers(1, 4))):
            sprites.append(Sprite(SHAPES[rng.integers(len(SHAPES))], names[colours[i]], int(rng.integers(4, 7)),
                                  float(rng.uniform(20, cw - 20)), float(rng.uniform(20, ch - 20)),
                                  float(rng.choice([-1, 1]) * rng.uniform(3, 8)), float(rng.uniform(-2, 2))))
        occluders = ((int(rng.integers(view // 2, cw - view // 2 - 26)), int(rng.integers(18, 26))),)
        return cls(seed, view, cw, ch, palette, tuple(landmarks), tuple(sprites), occluders,
                   pan=float(cw - view), period=float(rng.uniform(16, 24)), cam_y=float(rng.integers(0, ch - view + 1)))

    def prompt(self) -> str:
        parts = []
        for s in self.sprites:
            way = "right" if s.vx > 0 else "left"
            parts.append(f"a {s.colour} {s.shape} moving {way}")
        kinds = sorted({lm[0] for lm in self.landmarks})
        return (f"{', '.join(parts)} over a {self.palette} with a {' and a '.join(kinds)}, "
                f"behind a dark pillar; the camera pans right and comes back")


def _texture(p: WorldParams) -> np.ndarray:
    rng = np.random.default_rng(p.seed + 1)
    base, stripe = (np.array(c, np.float32) for c in PALETTES[p.palette])
    y, x = np.mgrid[0 : p.canvas_h, 0 : p.canvas_w].astype(np.float32)
    f = rng.uniform(0.15, 0.35)
    w = 0.5 + 0.5 * np.sin(f * x + 0.6 * np.sin(0.07 * y) * 6)
    img = base + (stripe - base) * w[..., None] + rng.normal(0, 6, (p.canvas_h, p.canvas_w, 1))
    for kind, lx, ly, lw, lh in p.landmarks:
        col = np.array(LANDMARKS[kind], np.float32)
        if kind == "tree":  # trunk + crown
            img[ly + lh // 2 : ly + lh, lx + lw // 2 - 1 : lx + lw // 2 + 2] = (100, 70, 45)
            cy, cx, r = ly + lh // 3, lx + lw / 2, lw / 2
            m = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
            img[m] = col
        elif kind == "hut":  # walls + roof
            img[ly + lh // 3 : ly + lh, lx : lx + lw] = col
            for k in range(lh // 3):
                img[ly + k, lx + lw // 2 - k : lx + lw // 2 + k + 1] = (150, 60, 50)
        else:
            m = ((y - (ly + lh / 2)) / (lh / 2)) ** 2 + ((x - (lx + lw / 2)) / (lw / 2)) ** 2 <= 1
            img[m] = col
    return np.clip(img, 40, 215).astype(np.uint8)


def _sprite_mask(s: Sprite, cx: float, cy: float, h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = x - cx, y - cy
    if s.shape == "circle":
        return dx * dx + dy * dy <= s.size * s.size
    if s.shape == "square":
        return (np.abs(dx) <= s.size) & (np.abs(dy) <= s.size)
    return (dy <= s.size) & (dy >= -s.size) & (np.abs(dx) <= (dy + s.size) / 2)  # triangle, apex up


def _bounce(pos: float, lo: float, hi: float) -> float:
    span = hi - lo
    k = (pos - lo) % (2 * span)
    return lo + (k if k <= span else 2 * span - k)


@dataclass
class WorldVideo:
    params: WorldParams
    fps: float
    frames: np.ndarray  # [T, H, W, 3] uint8
    truth: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return self.params.prompt()

    def truth_json(self) -> str:
        return json.dumps({"prompt": self.prompt, "fps": self.fps, "params": asdict(self.params), **self.truth})


def camera(p: WorldParams, t: float) -> tuple[int, int]:
    """Camera top-left on the canvas at time t: pans right by A and back with period P."""
    return int(round(p.pan * (1 - math.cos(2 * math.pi * t / p.period)) / 2)), int(p.cam_y)


def sprite_position(p: WorldParams, s: Sprite, t: float) -> tuple[float, float]:
    m = s.size + 1
    return _bounce(s.x0 + s.vx * t, m, p.canvas_w - m), _bounce(s.y0 + s.vy * t, m, p.canvas_h - m)


def render(params: WorldParams, seconds: float = 10.0, fps: float = 8.0) -> WorldVideo:
    """Render ``seconds`` of the world at ``fps`` with its per-frame ground truth."""
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be > 0")
    p, v = params, params.view
    canvas = _texture(p)
    occ = np.zeros((p.canvas_h, p.canvas_w), bool)
    for ox, ow in p.occluders:
        occ[:, ox : ox + ow] = True
    n = int(round(seconds * fps)) + 1
    frames = np.empty((n, v, v, 3), np.uint8)
    cams, boxes, in_view, occluded = [], [], [], []
    for k in range(n):
        t = k / fps
        cx, cy = camera(p, t)
        frame = canvas.copy()
        fb, fv, fo = [], [], []
        for s in p.sprites:
            sx, sy = sprite_position(p, s, t)
            mask = _sprite_mask(s, sx, sy, p.canvas_h, p.canvas_w)
            frame[mask] = SPRITE_COLOURS[s.colour]
            view_mask = mask[cy : cy + v, cx : cx + v]
            visible = view_mask & ~occ[cy : cy + v, cx : cx + v]
            fb.append([sx - cx - s.size, sy - cy - s.size, sx - cx + s.size, sy - cy + s.size])
            fv.append(bool(view_mask.any()))
            fo.append(bool(view_mask.any() and not visible.any()))
        frame[occ] = OCCLUDER_COLOUR
        frames[k] = frame[cy : cy + v, cx : cx + v]
        cams.append([cx, cy])
        boxes.append(fb)
        in_view.append(fv)
        occluded.append(fo)
    truth = {"camera": cams, "sprite_boxes": boxes, "sprite_in_view": in_view, "sprite_occluded": occluded,
             "sprites": [s.colour + " " + s.shape for s in p.sprites]}
    return WorldVideo(p, fps, frames, truth)


def background_view(params: WorldParams, cam: tuple[int, int]) -> np.ndarray:
    """What the camera sees at ``cam`` without sprites (occluders included)."""
    canvas = _texture(params)
    for ox, ow in params.occluders:
        canvas[:, ox : ox + ow] = OCCLUDER_COLOUR
    x, y = cam
    return canvas[y : y + params.view, x : x + params.view]


def make_video(seed: int, seconds: float = 10.0, fps: float = 8.0, view: int = 64) -> WorldVideo:
    return render(WorldParams.sample(seed, view), seconds, fps)
