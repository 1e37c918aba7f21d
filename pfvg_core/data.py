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
from .video_io import ANIMATED_EXT, AV_EXT, open_video, resample, to_pixels

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")
FEATURE_KEYS = ("prompt_embeds", "prompt_mask", "pooled")  # per prompt line, ".k" appended


@dataclass(frozen=True)
class LatentVideo:
    name: str
    latents: torch.Tensor  # [C, T, H, W]
    prompt: str
    fps: float
    # cached conditioning (F1 datasets): per prompt line k "prompt_embeds.k" [L, D], "prompt_mask.k" [L],
    # "pooled.k" [P]; "image_embeds" [N, D] of the start frame. None: the model's own encoders condition.
    features: dict | None = None
    prompts: tuple = ()  # ((start seconds, text), …): the schedule the features follow ((0, prompt) if plain)
    temporal_factor: int = 1  # video frames per latent frame (4 for HunyuanVideo's VAE)

    def prompt_line(self, seconds: float) -> int:
        """The index of the prompt line active at ``seconds`` (the last one started by then)."""
        k = 0
        for i, (t, _) in enumerate(self.prompts):
            if t <= seconds + 1e-9:
                k = i
        return k

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
        feats = {k: v for k, v in t.items() if k != "latents"} or None
        prompts = tuple((float(a), str(b)) for a, b in m.get("prompts", ())) or ((0.0, m.get("prompt", "")),)
        if feats is not None:
            missing = [f"{k}.{i}" for i in range(len(prompts)) for k in FEATURE_KEYS if f"{k}.{i}" not in feats]
            if missing or "image_embeds" not in feats:
                raise ValueError(f"{n}.safetensors: cached features incomplete (missing {(missing + ['image_embeds'])[:4]})")
        return LatentVideo(n, t["latents"], m.get("prompt", ""), float(m.get("fps", 8)), feats, prompts,
                           int(m.get("temporal_factor", 1)))

    def meta(self, i: int) -> dict:
        """Video i's metadata (prompt, fps, frames; F1 datasets also latent_scale, temporal_factor, size)."""
        return dict(self._meta[self.names[i]])


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
def read_frames(path: str, size: tuple[int, int] | None = None, fps: float | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 from a frame folder, an animated image or a video file (PyAV), brought to
    ``size`` (W, H) by the rule generation uses (``sizing.fit_frame``, crop); a video is resampled to ``fps`` when
    given (a frame folder has no rate of its own: its frames are taken as they are)."""
    from .sizing import fit_frame

    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_EXT))
        if not files:
            raise ValueError("no image frames in folder")
        frames = [np.asarray(Image.open(os.path.join(path, f)).convert("RGB")) for f in files]
    elif path.lower().endswith(ANIMATED_EXT + AV_EXT):
        reader = open_video(path)  # PyAV / Pillow (video_io), streamed
        frames = list(reader if fps is None else resample(iter(reader), reader.fps, fps))
        if not frames:
            raise ValueError("no frames")
    else:
        raise ValueError("not a video, animated image or frame folder")
    return np.stack([fit_frame(f, size, "crop") if size is not None else f for f in frames])


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
            frames = read_frames(path, size, fps)
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


# --- a conditioning dataset for FramePack-F1 -----------------------------------------------------
def build_f1_dataset(src: str, out: str, encoders, size: tuple[int, int] | None = None, resolution: int = 640,
                     fps: float = 30.0, window: int = 9, log=print, cancel=None, on_video=None) -> dict[str, str]:
    """Encode every video under ``src`` into a cached F1 dataset in ``out`` (docs/architecture.md §5):

    per video, the VAE latents (model latents = raw × the VAE's scale, recorded as ``latent_scale``),
    streamed window by window (``F1Codec.encode_stream``: never the whole video in memory), after
    resampling to ``fps`` and resizing + centre-cropping to ``size`` (W, H) or, when None, to FramePack's
    resolution bucket nearest to the video's aspect at ``resolution``; the prompt features of each prompt
    line (a ``.txt`` beside the video; a timed schedule gives one entry per line) exactly as
    ``F1Encoders.encode_prompt``; the SigLIP features of the start frame. Training reads these and never
    runs an encoder. Returns {name: "ok" | "skipped: reason"}; failures are reported by name, never silent.
    ``cancel()`` is checked between videos (raises ``loop.Cancelled``); ``on_video(name, status)`` after each."""
    from .loop import Cancelled
    from .sizing import fit_frame, model_size
    from .validate import prompt_entries
    from .video_io import open_video, resample

    if not os.path.isdir(src):
        raise FileNotFoundError(f"source folder not found: {src}")
    os.makedirs(out, exist_ok=True)
    codec = encoders.codec()
    tf = codec.temporal_factor
    report: dict[str, str] = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.endswith(".txt") or entry.startswith("."):
            continue
        if cancel is not None and cancel():
            raise Cancelled(f"dataset build cancelled after {len(report)} videos")
        name = os.path.splitext(entry)[0]
        try:
            reader = open_video(path)
            w, h = size if size is not None else model_size({}, None, reader.size[1], reader.size[0], resolution)
            frames = (fit_frame(f, (w, h), "crop") for f in resample(iter(reader), reader.fps, fps))
            first: list = []

            def keep_first(it):
                for f in it:
                    if not first:
                        first.append(f)
                    yield f

            chunks = list(codec.encode_stream(keep_first(frames)))
            latents = torch.cat(chunks, dim=2)[0] if chunks else None
            if latents is None or latents.shape[1] < 1 + window:
                got = 0 if latents is None else latents.shape[1]
                raise ValueError(f"too short: {got} latent frames at {fps:g} fps, need at least {1 + window} "
                                 f"(1 + one clip of {window}, i.e. {1 + window * tf} frames)")
            text = _prompt_for(path)
            entries = prompt_entries(text, f"{entry} prompt")
            lines = entries if isinstance(entries, tuple) else ((0.0, text),)
            from .video_io import to_pixels

            image = encoders.encode_image(to_pixels(first[0][None])[:, :, 0])
            tensors = {"latents": latents.float(), "image_embeds": image[0].float().cpu()}
            for k, (_, line) in enumerate(lines):  # one line at a time: each kept as its encoder gives it
                emb, mask, pooled = encoders.encode_prompt([line])
                tensors[f"prompt_embeds.{k}"] = emb[0].float().cpu()
                tensors[f"prompt_mask.{k}"] = mask[0].to(torch.uint8).cpu()
                tensors[f"pooled.{k}"] = pooled[0].float().cpu()
            meta = {"prompt": text, "prompts": [[t, p] for t, p in lines], "fps": float(fps), "frames": int(latents.shape[1]),
                    "latent_scale": codec.scale, "temporal_factor": tf, "size": [int(w), int(h)], "source": entry,
                    "format": "pfvg-f1-features"}
            write_json(os.path.join(out, f"{name}.json"), meta)
            save_safetensors_atomic(tensors, os.path.join(out, f"{name}.safetensors"))
            report[name] = "ok"
        except Cancelled:
            raise
        except Exception as e:  # report every failure by name and go on
            report[name] = f"skipped: {e}"
            log(f"{entry}: skipped: {e}")
        if on_video is not None:
            on_video(name, report[name])
    ok = sum(v == "ok" for v in report.values())
    log(f"{ok} videos encoded into {out}, {len(report) - ok} skipped")
    return report
