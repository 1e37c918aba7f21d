"""Training data: pre-encoded latent videos, one ``<name>.safetensors`` (``latents`` [C, T, H, W])
plus ``<name>.json`` ({"prompt", "fps", "frames", ...}) per video, and the command that builds
such a folder from videos or frame folders with a given codec.

Clips (PFVG §3.2 / A.2): latent frame 0 is the start image; clip i is frames
[1 + i·W, 1 + (i+1)·W) for window W. Incomplete tails are dropped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .atomic import clean_stale, write_json
from .checkpoint import read_safetensors, save_safetensors_atomic
from .video_io import ANIMATED_EXT, AV_EXT, open_video, to_pixels

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class LatentVideo:
    name: str
    latents: torch.Tensor  # [C, T, H, W]
    prompt: str
    fps: float

    def num_clips(self, window: int) -> int:
        return max(0, (self.latents.shape[1] - 1) // window)

    def start(self) -> torch.Tensor:
        """The start latent [1, C, 1, H, W]."""
        return self.latents[None, :, :1]

    def clip(self, i: int, window: int) -> torch.Tensor:
        """Clip i [1, C, W, H, W]."""
        a = 1 + i * window
        return self.latents[None, :, a : a + window]


def write_encoded_video(folder: str, name: str, frames: np.ndarray, codec, prompt: str, fps: float, **meta) -> str:
    """Encode uint8 frames [T, H, W, 3] with ``codec`` and write them as a latent video."""
    with torch.no_grad():
        latents = codec.encode(to_pixels(frames))[0]
    return write_latent_video(folder, name, latents, prompt, fps, **meta)


def write_latent_video(folder: str, name: str, latents: torch.Tensor, prompt: str, fps: float, **meta) -> str:
    # metadata first: a video is listed by its .safetensors, so a kill in between leaves no half video
    write_json(os.path.join(folder, f"{name}.json"), {"prompt": prompt, "fps": fps, "frames": int(latents.shape[1]), **meta})
    path = os.path.join(folder, f"{name}.safetensors")
    save_safetensors_atomic({"latents": latents.detach().float().cpu()}, path)
    return path


class LatentDataset:
    """A folder of latent videos, loaded lazily by index, in name order."""

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"dataset folder not found: {folder}")
        self.folder = folder
        clean_stale(folder)  # temporary files of killed writes; hidden files are never videos
        self.names = sorted(f[: -len(".safetensors")] for f in os.listdir(folder)
                            if f.endswith(".safetensors") and not f.startswith("."))
        if not self.names:
            raise ValueError(f"dataset folder {folder} holds no .safetensors latent videos")
        self._meta = {}
        for n in self.names:
            p = os.path.join(folder, f"{n}.json")
            if not os.path.isfile(p):
                raise ValueError(f"{p}: metadata missing for latent video {n}")
            with open(p) as f:
                self._meta[n] = json.load(f)

    def __len__(self) -> int:
        return len(self.names)

    def frames(self, i: int) -> int:
        return int(self._meta[self.names[i]]["frames"])

    def num_clips(self, i: int, window: int) -> int:
        return max(0, (self.frames(i) - 1) // window)

    def __getitem__(self, i: int) -> LatentVideo:
        n = self.names[i]
        t = read_safetensors(os.path.join(self.folder, f"{n}.safetensors"), "latent video")
        if "latents" not in t or t["latents"].ndim != 4:
            raise ValueError(f"{n}.safetensors: expected a 'latents' tensor [C, T, H, W]")
        m = self._meta[n]
        return LatentVideo(n, t["latents"], m.get("prompt", ""), float(m.get("fps", 8)))


def curriculum(dataset: LatentDataset, window: int) -> list[int]:
    """PFVG A.2: videos ordered by number of clips, single-clip videos first (ties by name).
    Videos with no complete clip are left out."""
    usable = [i for i in range(len(dataset)) if dataset.num_clips(i, window) > 0]
    return sorted(usable, key=lambda i: (dataset.num_clips(i, window), dataset.names[i]))


def step_order(dataset: LatentDataset, window: int, videos_per_step: int, max_clips: int | None = None) -> list[int]:
    """The curriculum as the trainer walks it, ``videos_per_step`` videos per optimizer step, such that the
    videos of one step all train the same number of clips (min(clips, max_clips)): under FSDP every forward
    is a collective, so the ranks sharing a step must run the same clips in the same order.

    Videos are grouped by that clip count (the curriculum already sorts by it). With one group the
    curriculum is returned as it is (steps wrap around it). With several, a group whose size is not a
    multiple of ``videos_per_step`` is topped up with its own first videos, so no step straddles two
    groups; the result's length is then a multiple of ``videos_per_step``. Depends on the data and config
    only, not on the number of ranks (1 process and N walk the same steps)."""
    order = curriculum(dataset, window)

    def clips(i):
        n = dataset.num_clips(i, window)
        return min(n, max_clips) if max_clips else n

    groups: list[list[int]] = []
    for i in order:
        if groups and clips(groups[-1][0]) == clips(i):
            groups[-1].append(i)
        else:
            groups.append([i])
    if len(groups) <= 1 or videos_per_step == 1:
        return order
    out = []
    for g in groups:
        short = -len(g) % videos_per_step
        out += g + [g[k % len(g)] for k in range(short)]
    return out


# --- building a dataset ------------------------------------------------------------------------
def read_frames(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 from a frame folder, an animated image or a video file (PyAV)."""
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXT))
        if not files:
            raise ValueError("no image frames in folder")
        imgs = [Image.open(os.path.join(path, f)).convert("RGB") for f in files]
    elif path.lower().endswith(ANIMATED_EXT + AV_EXT):
        return open_video(path, resize=size).read_all()  # PyAV / Pillow (video_io)
    else:
        raise ValueError("not a video, animated image or frame folder")
    if size is not None:
        imgs = [im.resize(size, Image.BICUBIC) for im in imgs]
    return np.stack([np.asarray(im) for im in imgs])


def _prompt_for(path: str) -> str:
    for p in (os.path.join(path, "prompt.txt") if os.path.isdir(path) else None, os.path.splitext(path)[0] + ".txt"):
        if p and os.path.isfile(p):
            with open(p) as f:
                return f.read().strip()
    return os.path.splitext(os.path.basename(path.rstrip("/")))[0].replace("_", " ")


def build_dataset(src: str, out: str, codec, size: tuple[int, int] = (64, 64), fps: float = 8.0, window: int = 9,
                  log=print) -> dict[str, str]:
    """Encode every video under ``src`` into ``out``. Returns {name: "ok" | reason skipped};
    unreadable or too-short videos are reported by name and skipped, never silently."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"source folder not found: {src}")
    report: dict[str, str] = {}
    tf = getattr(codec, "temporal_factor", 1)
    min_frames = 1 + window * tf
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.endswith(".txt") or entry.startswith("."):
            continue
        name = os.path.splitext(entry)[0]
        try:
            frames = read_frames(path, size)
            if frames.shape[0] < min_frames:
                raise ValueError(f"too short: {frames.shape[0]} frames, need at least {min_frames} (1 + one clip)")
            write_encoded_video(out, name, frames, codec, _prompt_for(path), fps, source=entry)
            report[name] = "ok"
        except Exception as e:  # report every failure by name and go on
            report[name] = f"skipped: {e}"
            log(f"{entry}: skipped: {e}")
    ok = sum(v == "ok" for v in report.values())
    log(f"{ok} videos encoded into {out}, {len(report) - ok} skipped")
    return report
