"""The procedural world (docs/embedded-model.md, The world): seeded videos that need memory, with per-frame ground truth.

A canvas wider (and taller) than the view holds a textured background and fixed landmarks; sprites
of random shapes and saturated colours bounce back and forth in their own lanes, so they leave the
view or go behind a pillar (a foreground occluder) and come back; the camera is static or pans
away and comes back, x(t) = x₀ + A·(1 − cos 2πt/P)/2 (A < 0: pans left first), optionally tilting
y(t) = y₀ + B·(1 − cos 4πt/P)/2, so views leave the FramePack context (≈ 2.4 s at 8 fps with
``f16k4f2k2f1k1``) and return inside a ≥ 20 s training clip (P ≤ 16 s; sprite round trips ≤ 18 s).
This is what the paper's memory must do (PFVG §3.1, Fig. 5): what re-enters the view must match
what was seen before.

Parameters are quantised (P in whole seconds, A and B in multiples of 8 px, speeds in whole px/s) so
the prompt states them exactly; a parameter the prompt names is never contradicted (a static camera
is "static", a sprite with vx = 0 is not "moving left"). Prompts put the camera first: short text
encoders (77 bytes) truncate the end, and the camera part alone fits in 77 bytes.

Truth per frame: camera (x, y), each sprite's box, centre (view coordinates), colour, whether it is
in view, hidden by a pillar, visible, and how many pixels show; ``WorldVideo.sprite_ids`` labels
every pixel with the sprite that shows there (−1: none). Splits: training seeds are
[0, HELDOUT_START), held-out seeds [HELDOUT_START, …) (``heldout_seeds(n)``).

Colours: backgrounds and landmarks use channel values in [40, 215]; sprites use saturated colours
(every channel ≤ 30 or ≥ 225, or orange's 140 with the others saturated) that the background never
produces, so truth can be checked pixel by pixel.
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
                  "cyan": (30, 255, 255), "white": (255, 255, 255), "green": (30, 255, 30), "orange": (255, 140, 30)}
SHAPES = ("circle", "square", "triangle", "diamond")
LANDMARKS = {"hut": (120, 70, 45), "tree": (45, 95, 45), "rock": (90, 85, 80)}
OCCLUDER_COLOUR = (40, 40, 48)
HELDOUT_START = 1_000_000  # seeds below: training split; from here on: held-out split


def train_seeds(n: int, start: int = 0) -> list[int]:
    """``n`` seeds of the training split from ``start``."""
    if n < 0 or start < 0 or start + n > HELDOUT_START:
        raise ValueError(f"training seeds lie in [0, {HELDOUT_START}); got start={start}, n={n}")
    return list(range(start, start + n))


def heldout_seeds(n: int, start: int = 0) -> list[int]:
    """``n`` seeds of the held-out split (disjoint from every training seed)."""
    if n < 0 or start < 0:
        raise ValueError(f"n and start must be ≥ 0, got n={n}, start={start}")
    return list(range(HELDOUT_START + start, HELDOUT_START + start + n))


def split_of(seed: int) -> str:
    """'train' or 'heldout'."""
    if seed < 0:
        raise ValueError(f"seed must be ≥ 0, got {seed}")
    return "train" if seed < HELDOUT_START else "heldout"


@dataclass(frozen=True)
class Sprite:
    shape: str
    colour: str
    size: int  # radius / half side in pixels
    x0: float  # canvas position at t = 0
    y0: float
    vx: float  # pixels per second (sign: direction at t = 0)
    vy: float
    x_range: tuple | None = None  # (lo, hi) lane of the centre in canvas x; None: the whole canvas
    y_range: tuple | None = None

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"sprite shape must be one of {SHAPES}, got {self.shape!r}")
        if self.colour not in SPRITE_COLOURS:
            raise ValueError(f"sprite colour must be one of {tuple(SPRITE_COLOURS)}, got {self.colour!r}")
        for name in ("x_range", "y_range"):
            r = getattr(self, name)
            if r is not None:
                if len(r) != 2 or not r[0] < r[1]:
                    raise ValueError(f"sprite {name} must be (lo, hi) with lo < hi, got {r!r}")
                object.__setattr__(self, name, (float(r[0]), float(r[1])))

    def describe(self) -> str:
        """The sprite in words: exactly its shape, colour and velocity at t = 0."""
        parts = []
        if self.vx:
            parts.append(f"{'right' if self.vx > 0 else 'left'} {abs(self.vx):g} px/s")
        if self.vy:
            parts.append(f"{'down' if self.vy > 0 else 'up'} {abs(self.vy):g} px/s")
        motion = "moving " + " and ".join(parts) if parts else "standing still"
        return f"{self.colour} {self.shape} {motion}"


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
    pan: float = 96.0  # camera pan amplitude A (pixels; < 0 pans left first; 0 with tilt 0: static)
    period: float = 20.0  # camera period P (seconds)
    cam_y: float = 16.0  # camera top at t = 0
    cam_x: float = 0.0  # camera left at t = 0
    tilt: float = 0.0  # vertical amplitude B (pixels, > 0 tilts down first), period P/2

    def __post_init__(self):  # accept the JSON form (lists, dicts) of every field
        object.__setattr__(self, "landmarks", tuple(tuple(x) for x in self.landmarks))
        object.__setattr__(self, "occluders", tuple(tuple(x) for x in self.occluders))
        object.__setattr__(self, "sprites", tuple(s if isinstance(s, Sprite) else Sprite(**s) for s in self.sprites))
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {tuple(PALETTES)}, got {self.palette!r}")
        if self.period <= 0:
            raise ValueError(f"period must be > 0 seconds, got {self.period}")
        if self.canvas_w < self.view or self.canvas_h < self.view:
            raise ValueError(f"canvas {self.canvas_w}x{self.canvas_h} must be at least the view ({self.view})")
        xs = (self.cam_x, self.cam_x + self.pan)
        ys = (self.cam_y, self.cam_y + self.tilt)
        if min(xs) < 0 or max(xs) > self.canvas_w - self.view:
            raise ValueError(f"cam_x {self.cam_x} + pan {self.pan} leaves the canvas (x in [0, {self.canvas_w - self.view}])")
        if min(ys) < 0 or max(ys) > self.canvas_h - self.view:
            raise ValueError(f"cam_y {self.cam_y} + tilt {self.tilt} leaves the canvas (y in [0, {self.canvas_h - self.view}])")

    @property
    def static(self) -> bool:
        return self.pan == 0 and self.tilt == 0

    @classmethod
    def from_dict(cls, d: dict) -> "WorldParams":
        """Inverse of ``dataclasses.asdict`` (e.g. the ``params`` of a truth JSON)."""
        return cls(**d)

    @classmethod
    def sample(cls, seed: int, view: int = 64) -> "WorldParams":
        """A random world: static camera (20 %), pan (50 %) or pan + tilt (30 %), 1–4 sprites, 1–2 pillars."""
        rng = np.random.default_rng(seed)
        cw, ch = 3 * view, view + view // 2
        u = view / 64  # lengths below are for a 64-pixel view
        palette = list(PALETTES)[rng.integers(len(PALETTES))]
        kinds = list(LANDMARKS)
        landmarks = []
        for k in range(4):
            kind = kinds[rng.integers(len(kinds))]
            w, h = int(rng.integers(8, 14)), int(rng.integers(10, 18))
            x = int(k * cw / 4 + rng.integers(4, cw // 4 - w - 4))
            landmarks.append((kind, x, int(rng.integers(ch // 3, ch - h - 2)), w, h))
        mode = rng.choice(["static", "pan", "tilt"], p=[0.2, 0.5, 0.3])
        period = float(rng.integers(6, 17))
        pan = tilt = 0.0
        if mode == "static":
            cam_x = float(rng.integers(0, cw - view + 1))
        else:
            pan = float(8 * rng.integers(int(8 * u), (cw - view) // 8 + 1))
            if rng.random() < 0.5:
                pan = -pan
            cam_x = float(rng.integers(0, cw - view - abs(pan) + 1)) + max(0.0, -pan)
        cam_y = float(rng.integers(0, ch - view + 1))
        if mode == "tilt":
            tilt = float(8 * rng.integers(1, (ch - view) // 8 + 1))
            if cam_y + tilt > ch - view:
                tilt = -tilt
                cam_y = max(cam_y, -tilt)
        occluders = []
        for k in range(int(rng.integers(1, 3))):
            w = int(rng.integers(int(10 * u), int(19 * u)))
            if k == 0 and mode == "static":  # a static camera sees its pillar
                x = int(cam_x) + int(rng.integers(int(8 * u), view - w - int(8 * u) + 1))
            else:
                x = int(rng.integers(0, cw - w + 1))
            occluders.append((x, w))
        names = list(SPRITE_COLOURS)
        n = int(rng.integers(1, 5))
        colours = rng.choice(len(names), size=n, replace=False)
        centre = cam_x + view / 2  # lanes cross the view's range at t = 0 (or its pan range)
        lo_x, hi_x = min(cam_x, cam_x + pan), max(cam_x, cam_x + pan) + view
        sprites = []
        for i in range(n):
            size = int(round(rng.integers(4, 8) * u))
            m = size + 1
            span = float(rng.integers(int(40 * u), int(150 * u)))
            c = float(rng.uniform(lo_x, hi_x)) if mode != "static" else float(centre + rng.uniform(-view / 2, view / 2))
            lo = float(np.clip(c - span / 2, m, cw - m - span))
            lane = (lo, lo + span)
            kind = rng.random()
            if kind < 0.1:  # still
                vx = vy = 0.0
            else:
                vy = float(rng.integers(-3, 4)) * u
                vx = 0.0 if kind < 0.2 else float(rng.choice([-1, 1]) * rng.integers(max(6, math.ceil(2 * span / 18)), 21))
                if vx == 0 and vy == 0:
                    vy = 4.0
            sprites.append(Sprite(SHAPES[rng.integers(len(SHAPES))], names[colours[i]], size,
                                  float(rng.uniform(*lane)), float(rng.uniform(m, ch - m)), vx, vy, lane, None))
        return cls(seed, view, cw, ch, palette, tuple(landmarks), tuple(sprites), tuple(occluders),
                   pan=pan, period=period, cam_y=cam_y, cam_x=cam_x, tilt=tilt)

    def prompt(self) -> str:
        """The parameters in words, camera first: nothing the parameters do not say."""
        if self.static:
            cam = "static camera"
        else:
            moves = []
            if self.pan:
                moves.append(f"pans {'right' if self.pan > 0 else 'left'} {abs(self.pan):g} px and back every {self.period:g} s")
            if self.tilt:
                moves.append(f"tilts {'down' if self.tilt > 0 else 'up'} {abs(self.tilt):g} px and back twice")  # period P/2
            cam = "camera " + ", ".join(moves)
        kinds = sorted({lm[0] for lm in self.landmarks})
        n = len(self.occluders)
        pillars = f"{n} dark pillar{'s' if n != 1 else ''} in front" if n else "no pillar"
        return "; ".join([cam, *(s.describe() for s in self.sprites),
                          f"{self.palette} with {', '.join(kinds)}; {pillars}"])


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


def _occluder_columns(p: WorldParams) -> np.ndarray:
    occ = np.zeros(p.canvas_w, bool)
    for ox, ow in p.occluders:
        occ[int(ox) : int(ox) + int(ow)] = True
    return occ


def _shape_mask(s: Sprite, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Pixels (offsets dx, dy from the centre, any broadcastable shape) covered by the sprite."""
    if s.shape == "circle":
        return dx * dx + dy * dy <= s.size * s.size
    if s.shape == "square":
        return (np.abs(dx) <= s.size) & (np.abs(dy) <= s.size)
    if s.shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= s.size
    return (dy <= s.size) & (dy >= -s.size) & (np.abs(dx) <= (dy + s.size) / 2)  # triangle, apex up


def _bounce(pos, lo: float, hi: float):
    """Reflect ``pos`` (scalar or array) into [lo, hi]: motion that bounces between the two walls."""
    span = hi - lo
    k = np.mod(np.asarray(pos, np.float64) - lo, 2 * span)
    out = lo + np.where(k <= span, k, 2 * span - k)
    return float(out) if out.ndim == 0 else out


@dataclass
class WorldVideo:
    params: WorldParams
    fps: float
    frames: np.ndarray  # [T, H, W, 3] uint8
    truth: dict = field(default_factory=dict)
    sprite_ids: np.ndarray | None = None  # [T, H, W] int8: index of the sprite that shows at each pixel, −1 none

    @property
    def prompt(self) -> str:
        return self.params.prompt()

    @property
    def masks(self) -> np.ndarray:
        """[T, N, H, W] bool: the pixels where each sprite is visible."""
        n = len(self.params.sprites)
        return self.sprite_ids[:, None] == np.arange(n, dtype=np.int8)[None, :, None, None]

    def truth_json(self) -> str:
        return json.dumps({"prompt": self.prompt, "fps": self.fps, "params": asdict(self.params), **self.truth})


def camera_path(p: WorldParams, t) -> tuple[np.ndarray, np.ndarray]:
    """Camera top-left (x, y) on the canvas at times ``t`` (array, seconds), whole pixels."""
    t = np.asarray(t, np.float64)
    x = p.cam_x + p.pan * (1 - np.cos(2 * np.pi * t / p.period)) / 2
    y = p.cam_y + p.tilt * (1 - np.cos(4 * np.pi * t / p.period)) / 2
    return np.round(x).astype(np.int64), np.round(y).astype(np.int64)


def camera(p: WorldParams, t: float) -> tuple[int, int]:
    """Camera top-left on the canvas at time t: x₀ + A·(1 − cos 2πt/P)/2, y₀ + B·(1 − cos 4πt/P)/2."""
    x, y = camera_path(p, t)
    return int(x), int(y)


def sprite_position(p: WorldParams, s: Sprite, t):
    """Sprite centre on the canvas at time(s) t: bouncing inside its lane (default: the canvas)."""
    m = s.size + 1
    xr = s.x_range or (m, p.canvas_w - m)
    yr = s.y_range or (m, p.canvas_h - m)
    return _bounce(s.x0 + s.vx * np.asarray(t, np.float64), *xr), _bounce(s.y0 + s.vy * np.asarray(t, np.float64), *yr)


def render(params: WorldParams, seconds: float = 10.0, fps: float = 8.0) -> WorldVideo:
    """Render ``seconds`` of the world at ``fps`` with its per-frame ground truth (vectorised over frames)."""
    if seconds <= 0 or fps <= 0:
        raise ValueError(f"seconds and fps must be > 0, got seconds={seconds}, fps={fps}")
    p, v = params, params.view
    canvas = _texture(p)
    occ = _occluder_columns(p)
    canvas[:, occ] = OCCLUDER_COLOUR
    n = int(round(seconds * fps)) + 1
    ts = np.arange(n) / fps
    cx, cy = camera_path(p, ts)
    ar = np.arange(v)
    rows, cols = cy[:, None] + ar, cx[:, None] + ar  # [T, v]
    frames = canvas[rows[:, :, None], cols[:, None, :]]  # [T, v, v, 3]
    occ_view = np.broadcast_to(occ[cols][:, None, :], (n, v, v))
    ids = np.full((n, v, v), -1, np.int8)
    boxes, centres, in_view, occluded = [], [], [], []
    yy, xx = ar[None, :, None].astype(np.float64), ar[None, None, :].astype(np.float64)
    for i, s in enumerate(p.sprites):
        sx, sy = sprite_position(p, s, ts)
        vx, vy = sx - cx, sy - cy  # centre in view coordinates
        mask = _shape_mask(s, xx - vx[:, None, None], yy - vy[:, None, None])  # [T, v, v]
        ids[mask & ~occ_view] = i
        in_view.append(mask.any(axis=(1, 2)))
        occluded.append(in_view[-1] & ~(mask & ~occ_view).any(axis=(1, 2)))
        boxes.append(np.stack([vx - s.size, vy - s.size, vx + s.size, vy + s.size], 1))
        centres.append(np.stack([vx, vy], 1))
    for i, s in enumerate(p.sprites):
        frames[ids == i] = SPRITE_COLOURS[s.colour]
    ns = len(p.sprites)
    counts = (ids[:, None] == np.arange(ns, dtype=np.int8)[None, :, None, None]).sum(axis=(2, 3)) if ns else np.zeros((n, 0), int)

    def per_frame(arrs, conv):
        return [[conv(a[k]) for a in arrs] for k in range(n)]

    truth = {"camera": np.stack([cx, cy], 1).tolist(),
             "sprite_boxes": per_frame(boxes, lambda b: [float(x) for x in b]),
             "sprite_centres": per_frame(centres, lambda c: [float(x) for x in c]),
             "sprite_in_view": per_frame(in_view, bool), "sprite_occluded": per_frame(occluded, bool),
             "sprite_visible": (counts > 0).tolist(), "sprite_pixels": counts.tolist(),
             "sprite_colours": [[list(SPRITE_COLOURS[s.colour]) for s in p.sprites]] * n,
             "sprites": [s.colour + " " + s.shape for s in p.sprites], "fps": fps, "params": asdict(p)}
    return WorldVideo(p, fps, np.ascontiguousarray(frames), truth, ids)


def background_view(params: WorldParams, cam: tuple[int, int]) -> np.ndarray:
    """What the camera sees at ``cam`` without sprites (occluders included)."""
    canvas = _texture(params)
    canvas[:, _occluder_columns(params)] = OCCLUDER_COLOUR
    x, y = cam
    return canvas[y : y + params.view, x : x + params.view]


def make_video(seed: int, seconds: float = 10.0, fps: float = 8.0, view: int = 64) -> WorldVideo:
    return render(WorldParams.sample(seed, view), seconds, fps)


def video_from_truth(truth: dict) -> WorldVideo:
    """Re-render a world video from its truth JSON (``WorldVideo.truth_json``): frames, truth and sprite ids."""
    if "params" not in truth or "fps" not in truth or "camera" not in truth:
        raise ValueError("truth: expected a world truth JSON with 'params', 'fps' and 'camera'")
    return render(WorldParams.from_dict(truth["params"]), seconds=(len(truth["camera"]) - 1) / truth["fps"], fps=truth["fps"])
