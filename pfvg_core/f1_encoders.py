"""FramePack-F1's encoders, from local files: HunyuanVideo's VAE, the LLaMA + CLIP text encoders and
SigLIP (FramePack §4, PFVG §4.1). The one place that computes F1 conditioning outside ComfyUI
(docs/architecture.md §5): dataset building and CLI generation both call it, and it calls diffusers'
``HunyuanVideoFramepackPipeline`` for the prompt and image features, so that they are exactly what
FramePack-F1 / diffusers compute (LLaMA ``hidden_states[-3]`` of the template-wrapped prompt, cropped at
95 tokens and padded to 256; CLIP pooled; SigLIP on pixels in [0, 1] with ``do_rescale=False``).

Folder layout (``ENC``): the layout of diffusers' HunyuanVideo pipelines — ``vae/``, ``text_encoder/`` +
``tokenizer/``, ``text_encoder_2/`` + ``tokenizer_2/``, ``image_encoder/`` + ``feature_extractor/``; each
part may also be given on its own path. Nothing is downloaded (``local_files_only``).

Latents: the DiT works on the VAE's raw latents × ``vae.config.scaling_factor`` (0.476986 for
HunyuanVideo); 4 video frames per latent frame after the first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from .checkpoint import CheckpointError

PARTS = ("vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "image_encoder", "feature_extractor")
NEEDS = {"prompt": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2"),
         "image": ("image_encoder", "feature_extractor"), "video": ("vae",)}


def _load_part(name: str, path: str, dtype: torch.dtype):
    """One component from its local folder (diffusers / transformers ``from_pretrained``, safetensors only).
    Tokenizers go through ``AutoTokenizer`` (transformers 5's ``LlamaTokenizerFast`` rebuilds a Llama-3
    ``tokenizer.json`` into a different tokenizer)."""
    if not os.path.isdir(path):
        raise CheckpointError(f"{name}: folder not found: {path}")
    try:
        if name == "vae":
            from diffusers import AutoencoderKLHunyuanVideo

            return AutoencoderKLHunyuanVideo.from_pretrained(path, torch_dtype=dtype, use_safetensors=True, local_files_only=True)
        if name in ("tokenizer", "tokenizer_2"):
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(path, local_files_only=True)
        if name == "feature_extractor":
            from transformers import SiglipImageProcessor

            return SiglipImageProcessor.from_pretrained(path, local_files_only=True)
        from transformers import CLIPTextModel, LlamaModel, SiglipVisionModel

        cls = {"text_encoder": LlamaModel, "text_encoder_2": CLIPTextModel, "image_encoder": SiglipVisionModel}[name]
        return cls.from_pretrained(path, dtype=dtype, use_safetensors=True, local_files_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # transformers / diffusers raise many kinds: name the part and folder
        raise CheckpointError(f"{name}: could not load {path}: {str(e).splitlines()[0][:300]}") from e


@dataclass
class F1Encoders:
    """The encoders of FramePack-F1, loaded lazily part by part (a dataset of prompts needs no VAE)."""

    paths: dict
    device: torch.device
    dtype: torch.dtype = torch.float32
    tile_latents: int = 8  # latent frames per VAE window when streaming a video (1 + 4·8 = 33 frames)

    def __post_init__(self):
        self._parts: dict = {}
        self._pipe = None

    @classmethod
    def from_folder(cls, folder: str | None = None, device="cpu", dtype=torch.float32, **overrides) -> "F1Encoders":
        """``folder`` in diffusers' HunyuanVideo layout; ``overrides`` (``vae=PATH`` …) replace single parts.
        A part that is neither in ``folder`` nor given is an error only when it is needed."""
        from .backbone import resolve_device, resolve_dtype

        unknown = sorted(set(overrides) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown encoder parts {unknown}; expected some of {PARTS}")
        if folder is not None and not os.path.isdir(folder):
            raise CheckpointError(f"--encoders: folder not found: {folder} (expected diffusers' HunyuanVideo layout: "
                                  f"{', '.join(p + '/' for p in PARTS)})")
        paths = {p: overrides.get(p) or (os.path.join(folder, p) if folder else None) for p in PARTS}
        return cls(paths, resolve_device(device), resolve_dtype(dtype))

    def part(self, name: str):
        if name not in self._parts:
            path = self.paths.get(name)
            if not path:
                raise CheckpointError(f"encoder part {name!r} not given: pass --encoders FOLDER (with {name}/) or --{name.replace('_', '-')} PATH")
            obj = _load_part(name, path, self.dtype)
            if hasattr(obj, "to") and isinstance(obj, torch.nn.Module):
                obj = obj.to(self.device).eval().requires_grad_(False)
            self._parts[name] = obj
        return self._parts[name]

    def pipeline(self, *needed: str):
        """diffusers' ``HunyuanVideoFramepackPipeline`` holding the parts that are loaded (no transformer):
        its ``encode_prompt`` / ``encode_image`` are FramePack-F1's feature code."""
        from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoFramepackPipeline

        for n in needed:
            self.part(n)
        parts = {p: self._parts.get(p) for p in PARTS}
        if self._pipe is None or any(getattr(self._pipe, p, None) is not parts[p] for p in PARTS):
            self._pipe = HunyuanVideoFramepackPipeline(transformer=None, scheduler=FlowMatchEulerDiscreteScheduler(), **parts)
        return self._pipe

    # prompts and images -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """LLaMA features [B, 256, 4096], their mask [B, 256] (bool) and CLIP pooled [B, 768], exactly as
        diffusers' ``HunyuanVideoFramepackPipeline.encode_prompt`` (FramePack's template and crop)."""
        pipe = self.pipeline(*NEEDS["prompt"])
        emb, pooled, mask = pipe.encode_prompt(prompts, device=self.device, dtype=self.dtype)
        return emb, mask.bool(), pooled

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """SigLIP features [B, N, 1152] of images [B, 3, H, W] in [−1, 1] (diffusers' ``encode_image``)."""
        if pixels.ndim == 5:
            pixels = pixels[:, :, 0]
        pipe = self.pipeline(*NEEDS["image"])
        return pipe.encode_image(pixels.float(), device=self.device, dtype=self.dtype)

    # the VAE ------------------------------------------------------------------------------------
    @property
    def latent_scale(self) -> float:
        return float(self.part("vae").config.scaling_factor)

    def codec(self) -> "F1Codec":
        return F1Codec(self.part("vae"))


class F1Codec:
    """HunyuanVideo's VAE in the codec interface of the loop and the CLI: model latents (raw × scale)
    from pixels in [−1, 1] and back. ``factor`` 8 (space), ``temporal_factor`` 4 (time: 1 + 4k frames ↔
    1 + k latents). Long videos are encoded and decoded window by window (``tile_latents`` latent frames),
    with diffusers' spatial tiling inside a window, so memory is bounded by the window, not the video."""

    factor = 8
    temporal_factor = 4

    def __init__(self, vae, tile_latents: int = 8):
        self.vae = vae
        self.scale = float(vae.config.scaling_factor)
        self.tile_latents = int(tile_latents)
        if hasattr(vae, "enable_tiling"):
            vae.enable_tiling()

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [−1, 1], T = 1 + 4k → model latents [B, 16, 1 + k, H/8, W/8] (the posterior's mode:
        the same frames always give the same latents)."""
        dt = self.vae.dtype
        z = self.vae.encode(pixels.to(self.device, dt)).latent_dist.mode()
        return (z * self.scale).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model latents [B, C, T, h, w] → pixels [B, 3, T', H, W] in [−1, 1], T' = 1 + 4(T − 1): the windows of
        ``decode_chunks`` joined (a long video is better decoded with ``decoding.decode_video``, which writes
        each window into its output instead of holding them all)."""
        return torch.cat(list(self.decode_chunks(latents)), dim=2)

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """Pixels window by window: windows of ``tile_latents`` latent frames with one latent of overlap (the
        overlap's first frame is dropped), so at most one window's VAE activations exist at a time."""
        t = latents.shape[2]
        a = 0
        while True:
            b = min(t, a + self.tile_latents)
            x = self.vae.decode((latents[:, :, a:b] / self.scale).to(self.device, self.vae.dtype)).sample.float().cpu()
            yield x if a == 0 else x[:, :, 1:]
            if b >= t:
                break
            a = b - 1

    def encode_stream(self, frames: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """Stream uint8 frames [H, W, 3] → model latents window by window (``stream_windows``)."""
        return stream_windows(frames, self.tile_latents, self.encode)


def stream_windows(frames: Iterable[np.ndarray], tile_latents: int, encode, context: int = 2) -> Iterator[torch.Tensor]:
    """Encode a video with a causal 4×-in-time VAE window by window: ``encode`` maps pixels [1, 3, T, H, W] in
    [−1, 1] (T = 1 + 4k) to latents [1, C, 1 + k, h, w]; yields chunks whose concatenation is the video's
    1 + ⌊(T − 1)/4⌋ latent frames, with at most 1 + 4·(K + ``context``) frames in memory (K = ``tile_latents``).

    Window j ≥ 1 encodes the frames of its K latents, (4Kj, 4K(j + 1)], behind ``context`` latents' worth of the
    frames before them (4·context frames, plus the one the VAE reads as an image), and keeps only its own K latents:
    a causal VAE restarted at every window would encode each window's first frames without their past (a seam
    in the latents every K frames). The VAE's causal attention reaches all earlier frames, so a finite context is
    close to, not equal to, one pass over the whole video (tests/test_f1_training.py measures both). Trailing frames
    that do not complete a latent frame are dropped."""
    from .video_io import to_pixels

    span, ctx = 4 * int(tile_latents), 4 * int(context)
    buf: list[np.ndarray] = []
    first, have_ctx = True, 0  # have_ctx: frames of context at the head of buf (before the window's first frame)
    for f in frames:
        buf.append(np.array(f, copy=True))
        if len(buf) == have_ctx + span + 1:
            z = encode(to_pixels(np.stack(buf)))
            yield z if first else z[:, :, 1 + have_ctx // 4:]
            first = False
            keep = min(len(buf), ctx + 1)
            buf, have_ctx = buf[-keep:], keep - 1
    rest = len(buf) - have_ctx - 1  # frames after the window's first frame
    usable = 4 * (rest // 4) if buf else 0
    if first and buf:
        z = encode(to_pixels(np.stack(buf[:1 + usable])))
        yield z
    elif usable > 0:
        z = encode(to_pixels(np.stack(buf[:have_ctx + 1 + usable])))
        yield z[:, :, 1 + have_ctx // 4:]
