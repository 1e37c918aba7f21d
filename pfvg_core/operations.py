"""What a front end does with a model, in engine terms: load a file, start a video, decode, evaluate,
render training videos, train. The ComfyUI nodes call these through ``nodes/comfy_io.py`` (which turns
ComfyUI's types and folders into the plain tensors, arrays and paths used here); nothing here knows
ComfyUI.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

# wrap_dit, load_model_path and with_semanticpack live in model.py (the trainer loads FramePack-F1 weights the same
# way); the front ends reach them here
from .model import Conditioning, PFVGModel, load_model_path, with_semanticpack, wrap_dit  # noqa: F401
from .options import check_limits, option
from .state import MemoryConfig, MemoryState, init_state
from .validate import SAMPLING, STAGE, TRAINING, Limit


# --- models ------------------------------------------------------------------------------------
# --- starting a video --------------------------------------------------------------------------
def encode_start(model: PFVGModel, pixels: torch.Tensor | None = None, latent: torch.Tensor | None = None) -> torch.Tensor:
    """The start latent [B, C, 1, H, W] from pixels [B, 3, 1, H, W] in [−1, 1] (with the model's codec)
    or from latents [B, C, T, H, W] (their first frame)."""
    if latent is not None:
        s = latent[:, :, :1].float()
    elif pixels is not None:
        if model.codec is None:
            raise ValueError("this model has no codec: give the start image as a LATENT (e.g. from a VAE Encode node)")
        f = model.codec.factor
        h, w = pixels.shape[-2:]
        if h % f or w % f:
            raise ValueError(f"image: {w}x{h} is not a multiple of {f} (the codec's factor); resize it first")
        with torch.no_grad():
            s = model.codec.encode(pixels.to(model.device, model.dtype)).float()
    else:
        raise ValueError("give a start image (IMAGE) or a start LATENT")
    if s.shape[1] != model.latent_channels:
        raise ValueError(f"latent has {s.shape[1]} channels, the model expects {model.latent_channels}")
    return s


def conditioning_from_features(model: PFVGModel, tokens: torch.Tensor, pooled: torch.Tensor | None,
                               start_latent: torch.Tensor, image_embeds: torch.Tensor | None = None) -> Conditioning:
    """Conditioning from prompt features of an external text encoder (HunyuanVideo's: tokens [B, L, D],
    pooled [B, P]); image features from ``image_embeds`` or the model's image encoder on the start latent."""
    d = model.dit.config.text_embed_dim
    if tokens.shape[-1] != d:
        raise ValueError(f"conditioning: token width {tokens.shape[-1]}, this model expects {d} (HunyuanVideo text encoder)")
    if pooled is None or pooled.shape[-1] != model.dit.config.pooled_projection_dim:
        raise ValueError(f"conditioning: needs pooled_output of width {model.dit.config.pooled_projection_dim}")
    if image_embeds is None:
        if model.image_encoder is None:
            raise ValueError("this model needs image features: connect a CLIP_VISION_OUTPUT (SigLIP)")
        with torch.no_grad():
            image_embeds = model.image_encoder(start_latent.to(model.device, model.dtype))
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
    return Conditioning(tokens.float(), mask, pooled.float(), image_embeds.float())


def start_conditioning(model: PFVGModel, start_latent: torch.Tensor, prompt: str | None = None,
                       features: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                       image_embeds: torch.Tensor | None = None) -> Conditioning:
    """Conditioning from external prompt ``features`` (tokens, pooled) or a ``prompt`` (the model's text
    encoder), with image features from ``image_embeds`` or the start latent."""
    if features is not None:
        return conditioning_from_features(model, *features, start_latent, image_embeds)
    if prompt is None:
        raise ValueError("give a prompt (text) or a CONDITIONING")
    return model.conditioning(prompt, start_latent.to(model.device), image_embeds)


def segment_conditioning(model: PFVGModel, state: MemoryState, prompt: str | None = None,
                         features: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> Conditioning:
    """A later segment's conditioning: a prompt (the model's text encoder) or external prompt ``features``
    (tokens, pooled), with the start image's features the state carries."""
    return start_conditioning(model, state.start_latent, prompt, features, state.image_embeds)


def encode_psi0(model: PFVGModel, config: MemoryConfig, fps: float, *, pixels: torch.Tensor | None = None,
                latent: torch.Tensor | None = None, prompt: str | None = None,
                features: tuple[torch.Tensor, torch.Tensor | None] | None = None,
                image_embeds: torch.Tensor | None = None) -> MemoryState:
    """Encode ψ₀ (PFVG §3.1): start latent + prompt and image features → the state before segment 0."""
    start = encode_start(model, pixels, latent)
    cond = start_conditioning(model, start, prompt, features, image_embeds)
    return init_state(model, start, cond, config=config, fps=fps)


def loop_prompt(model: PFVGModel, state: MemoryState, *, schedule_text: str | None = None, prompts=None,
                features: tuple[torch.Tensor, torch.Tensor | None] | None = None):
    """The long-video loop's prompt, from the first given of: an encoded schedule ``prompts``
    (``PromptSchedule`` of features), fixed prompt ``features``, or a text schedule. Returns
    (prompt or schedule, fixed conditioning or None) as ``loop.generate_long_video`` takes them."""
    from .loop import PromptSchedule

    if prompts is not None:
        return prompts.with_prompts([segment_conditioning(model, state, features=f) for _, f in prompts.entries]), None
    if features is not None:
        return "", segment_conditioning(model, state, features=features)
    if schedule_text and schedule_text.strip():
        return PromptSchedule.parse(schedule_text), None
    raise ValueError("give a prompt schedule (text), an encoded prompt schedule (prompts) or a CONDITIONING")


def long_video(model: PFVGModel, state: MemoryState, num_segments: int, prompt, *, seed: int, options,
               fixed: Conditioning | None = None, negative_prompt: str | None = None, on_step=None,
               cancel=None, on_segment=None) -> tuple[torch.Tensor, MemoryState]:
    """Run ``loop.generate_long_video`` from ``state`` and collect its segments: (latents [B, C, T, H, W] on
    the CPU, the final state). Only the latest state is kept while iterating (memory stays bounded)."""
    from .loop import generate_long_video

    chunks, last = [], state
    for r in generate_long_video(model, state, prompt, num_segments, seed=seed, options=options,
                                 negative_prompt=negative_prompt or None, conditioning=fixed, on_step=on_step,
                                 cancel=cancel, on_segment=on_segment):
        chunks.append(r.latents.cpu())
        last = r.state
    return torch.cat(chunks, dim=2), last


# --- decoding and evaluating -------------------------------------------------------------------
def decode(model: PFVGModel, latents: torch.Tensor, include_start: torch.Tensor | None = None, layout: str = "pixels",
           on_chunk=None):
    """Latents [B, C, T, H, W] → the video (on the CPU) with the model's codec, ``include_start`` [B, C, 1, H, W]
    first. Decoded in bounded chunks into one preallocated output (``decoding.decode_video``: peak memory is the
    output plus one chunk), as ``layout``: "pixels" [B, 3, T(+1), H, W] in [−1, 1], "image" (ComfyUI IMAGE
    [B·T(+1), H, W, 3] in [0, 1]) or "uint8" [T(+1), H, W, 3]."""
    from .decoding import decode_video

    if model.codec is None:
        raise ValueError("this model has no codec: decode with a VAE node (e.g. HunyuanVideo VAE Decode)")
    start = include_start.to(latents) if include_start is not None else None
    return decode_video(model.codec, latents, start=start, layout=layout, device=model.device, dtype=model.dtype,
                        on_chunk=on_chunk)


def preview_frame(model: PFVGModel, latents: torch.Tensor) -> np.ndarray | None:
    """The last frame of a segment as uint8 [H, W, 3] (None without a codec)."""
    from .video_io import to_uint8_frames

    if model.codec is None:
        return None
    with torch.no_grad():
        px = model.codec.decode(latents[:, :, -1:].to(model.device, model.dtype))
    return to_uint8_frames(px)[-1]


def evaluate_frames(frames: np.ndarray, fps: float) -> tuple[str, np.ndarray]:
    """Drift / consistency report (text) and its plot (float RGB [H, W, 3] in [0, 1]) for uint8 frames [T, H, W, 3]."""
    import tempfile

    from PIL import Image

    from .metrics import evaluate, plot_metrics
    from .validate import SAMPLING, format_metric, number

    fps = number("fps", fps, SAMPLING["fps"])
    res = evaluate(frames, fps=fps)
    per = res.pop("per_frame")
    with tempfile.TemporaryDirectory() as d:
        path = plot_metrics(per, os.path.join(d, "plot.png"), fps=fps)
        plot = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    lines = [format_metric(k, v) for k, v in res.items()]  # no bare nan/inf in what the page shows
    return "\n".join(lines), plot


def write_world_videos(folder: str, count: int, seconds: float, fps: float, seed: int, size: int = 64) -> str:
    """Render ``count`` world videos (frames as animated WebP + prompt .txt) into ``folder``."""
    from .atomic import write_text
    from .validate import SAMPLING, Limit, number
    from .video_io import write_video
    from .world import make_video

    count = number("count", count, Limit(1, 100_000, integer=True))
    seconds, fps = number("seconds", seconds, SAMPLING["seconds"]), number("fps", fps, SAMPLING["fps"])
    seed, size = number("seed", seed, SAMPLING["seed"]), number("size", size, Limit(8, 1024, integer=True))
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        v = make_video(seed + k, seconds=seconds, fps=fps, view=size)
        name = f"world_{seed + k:05d}"
        write_text(os.path.join(folder, name + ".txt"), v.prompt)  # the prompt first: a video is listed by its .webp
        write_video(v.frames, os.path.join(folder, name + ".webp"), fps)
    return folder


# --- training ----------------------------------------------------------------------------------
TRAIN_STEPS = Limit(0, STAGE["steps"].hi, integer=True)  # a stage's optimizer steps (0: skip the stage)
STAGE2_PARAMS = ("last-layers+semanticpack", "last-layers", "semanticpack", "all")
EXISTING = ("new", "refuse", "resume", "overwrite")  # what training does with a model or run already in its output folder
COUNTER_DIGITS = 5  # <name>_00001: ComfyUI's counter in output names


@dataclass(frozen=True)
class TrainOptions:
    """The paper's two-stage recipe (PFVG §4.1) as a front end offers it."""

    stage1_steps: int = option(20, "Teacher-forcing optimizer steps (one video each).", limit=TRAIN_STEPS)
    stage2_steps: int = option(20, "Direct Forcing optimizer steps.", limit=TRAIN_STEPS)
    learning_rate: float = option(1e-4, "Learning rate (AdamW).", limit=Limit(1e-7, 1.0), step=1e-5)
    stage2_params: str = option("last-layers+semanticpack", "Parameters stage 2 trains.", choices=STAGE2_PARAMS)
    window: int = option(9, "Latent frames per training clip.", limit=TRAINING["window"])
    fps: float = option(8.0, "Frame rate the dataset's videos are read at.", limit=SAMPLING["fps"])
    seed: int = option(0, "Training seed (data order, noise, t).", limit=Limit(0, 2**31 - 1, integer=True),
                       control_after_generate=True)
    gradient_checkpointing: str = option("auto", "Recompute each DiT block in the backward pass instead of keeping its "
                                         "activations (auto: on for a full-size DiT; needed to fit FramePack-F1 on one GPU).",
                                         choices=("auto", "on", "off"))
    existing: str = option("new", "When the output folder already holds a model or a training run: new (save under the "
                           "first free <output_name>_00001, _00002, …; nothing is overwritten and a rerun never fails), "
                           "refuse (stop with an error), resume its training from the last checkpoint, or overwrite it "
                           "(its checkpoints are deleted; its model is replaced when the new one is saved).", choices=EXISTING)

    def __post_init__(self):
        check_limits(self)  # every number: finite, in its widget's range (options.py)
        if self.stage2_params not in STAGE2_PARAMS:
            raise ValueError(f"stage2_params: expected one of {STAGE2_PARAMS}, got {self.stage2_params!r}")
        if self.existing not in EXISTING:
            raise ValueError(f"existing: expected one of {EXISTING}, got {self.existing!r}")

    def stages(self):
        from .train import paper_stages

        if not (self.stage1_steps or self.stage2_steps):
            raise ValueError("stage1_steps and stage2_steps are both 0: nothing to train")
        s1, s2 = paper_stages(max(1, self.stage1_steps), max(1, self.stage2_steps))
        return ([s1] if self.stage1_steps else []) + ([dataclasses.replace(s2, params=self.stage2_params)] if self.stage2_steps else [])


@dataclass(frozen=True)
class DatasetOptions:
    """Build Training Dataset: how videos become a cached FramePack-F1 training dataset (``data.build_f1_dataset``)."""

    resolution: int = option(640, "FramePack resolution bucket: each video is resized and centre-cropped to the bucket "
                             "(multiples of 16) nearest its aspect ratio at about this many pixels a side (640 as FramePack).",
                             limit=SAMPLING["resolution"], step=16)
    fps: float = option(30.0, "Frame rate the videos are resampled to (FramePack-F1 was trained at 30).", limit=SAMPLING["fps"])
    window: int = option(9, "Latent frames per training clip: shorter videos (1 + one clip) are skipped, by name.",
                         limit=SAMPLING["window"])
    crop: str = option("center", "CLIP vision crop of the start frame: use the same as the CLIP Vision Encode node of your "
                       "generation workflow, so that training sees the features generation gives.", choices=("center", "none"))

    def __post_init__(self):
        check_limits(self)  # every number: finite, in its widget's range (options.py)
        if self.resolution % 16:
            raise ValueError(f"resolution: expected a multiple of 16, got {self.resolution}")
        if self.crop not in ("center", "none"):
            raise ValueError(f"crop: expected 'center' or 'none', got {self.crop!r}")


def build_training_dataset(encoders, videos: str, out: str, options: DatasetOptions, cancel=None, on_video=None) -> dict:
    """Encode the videos in ``videos`` into the cached dataset ``out`` with ``encoders`` (the interface of
    ``f1_encoders.F1Encoders``: ComfyUI's VAE / CLIP / CLIP vision adapted by ``nodes/comfy_io``)."""
    from .data import build_f1_dataset

    if not os.path.isdir(videos):
        raise ValueError(f"videos: folder not found: {videos} (put the training videos, each with a .txt prompt beside it, "
                         "in a folder under ComfyUI's input folder)")
    report = build_f1_dataset(videos, out, encoders, resolution=options.resolution, fps=options.fps, window=options.window,
                              log=lambda m: None, cancel=cancel, on_video=on_video)
    if not any(v == "ok" for v in report.values()):
        raise ValueError(f"no usable video in {videos}: " + ("; ".join(f"{k}: {v}" for k, v in report.items())[:500] or "empty folder"))
    return report


def trainable_copy(model: PFVGModel) -> PFVGModel:
    """A deep copy whose parameters and buffers are ordinary tensors (also when ``model`` holds inference
    tensors), so training never changes the given model."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[name] = torch.nn.Parameter(p.detach().clone(), requires_grad=True)
        for name, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[name] = b.detach().clone()
    return m


def trainable_view(model: PFVGModel) -> PFVGModel:
    """For stage 2 on a big model (no deep copy of 26 GB): a model sharing ``model``'s frozen DiT blocks, with
    its own trainable copies of what stage 2 trains (``norm_out``, ``proj_out``, the SemanticPack), so that
    training never changes the given model."""
    def plain(mod):
        return None if mod is None else trainable_copy(mod)

    dit = copy.copy(model.dit)  # shares the blocks; its own module table, flags and trained layers
    dit._modules = dict(model.dit._modules)
    dit._parameters = dict(model.dit._parameters)
    dit.__dict__.pop("_pfvg_injector", None)
    dit.__dict__["_pfvg_injector"] = model.dit.__dict__.get("_pfvg_injector")
    for name in ("norm_out", "proj_out"):
        dit._modules[name] = plain(model.dit._modules[name])
    view = PFVGModel(dit, plain(model.semanticpack), meta=copy.deepcopy(model.meta))
    view.loras = model.loras
    return view


def shares_weights(a: PFVGModel, b: PFVGModel) -> bool:
    """True when ``a`` is a training view of ``b`` (``trainable_view``: the same frozen DiT blocks)."""
    return a is not b and a.dit is not b.dit and a.dit._modules.get("transformer_blocks") is b.dit._modules.get("transformer_blocks")


def _stage2_only(stages) -> bool:
    return all({g.strip() for g in s.params.split("+")} <= {"last-layers", "semanticpack"} for s in stages)


def output_taken(out: str) -> bool:
    """True when folder ``out`` holds a model, a training run or encoded training latents."""
    from .model import BUNDLE_FILE

    return any(os.path.exists(os.path.join(out, sub)) for sub in (BUNDLE_FILE, "run", "latents"))


def training_output(out: str, existing: str) -> str:
    """The folder a training with ``existing`` writes to: ``out`` itself, except for "new" when ``out`` is taken
    (``output_taken``): then the first free ``<out>_00001``, ``<out>_00002``, … (ComfyUI's counter convention),
    so a rerun never fails and never touches an earlier model."""
    from .validate import MAX_NAME_BYTES

    if existing not in EXISTING:
        raise ValueError(f"existing: expected one of {EXISTING}, got {existing!r}")
    if existing != "new" or not output_taken(out):
        return out
    head, name = os.path.split(os.path.normpath(out))
    if len(name.encode("utf-8")) + 1 + COUNTER_DIGITS > MAX_NAME_BYTES:
        raise ValueError(f"output_name: {name[:40]!r}… is taken and too long for a counter to be added "
                         f"(at most {MAX_NAME_BYTES - 1 - COUNTER_DIGITS} bytes): choose another name")
    for k in range(1, 10**COUNTER_DIGITS):
        candidate = os.path.join(head, f"{name}_{k:0{COUNTER_DIGITS}d}")
        if not output_taken(candidate):
            return candidate
    raise ValueError(f"output_name: {name!r} and all its numbered folders are taken: choose another name")


def train_model(model: PFVGModel, dataset: str, out: str, options: TrainOptions,
                on_start: Callable[[int, int], None] | None = None, on_step: Callable[[dict], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> PFVGModel:
    """Direct Forcing training (PFVG §3.2, §4.1) of a copy of ``model`` on the videos in ``dataset`` (encoded
    into ``out``/latents first unless it holds latents), saved to ``out``. ``on_start(total, done)`` once,
    ``on_step(log record)`` per optimizer step; on cancel — also an interrupt raised inside ``on_step`` — the
    last finished step is checkpointed (the next run resumes) and the exception goes on.
    A model or run already in ``out`` is left alone (a numbered folder beside it: ``training_output``), refused,
    resumed or overwritten as ``options.existing`` says."""
    import shutil

    from .data import build_dataset
    from .model import BUNDLE_FILE
    from .train import FULL_SIZE_PARAMS, Trainer, TrainConfig, _skip_whole_net_stages

    if not os.path.isdir(dataset):
        raise ValueError(f"dataset folder not found: {dataset} (put videos, frame folders or latents under ComfyUI's input folder)")
    stages = options.stages()
    out = training_output(out, options.existing)  # "new": a free folder beside a taken one
    has_model = os.path.isfile(os.path.join(out, BUNDLE_FILE))
    has_run = os.path.isdir(os.path.join(out, "run"))
    if (has_model or has_run) and options.existing == "refuse":
        raise ValueError(f"{out} already holds a {'model' if has_model else 'training run'}: set existing to 'resume' to "
                         "continue its training or 'overwrite' to replace it, or choose another output name")
    if options.existing == "overwrite":  # the old model stays until the new one replaces it
        for sub in ("run", "latents"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    data = dataset
    if not any(f.endswith(".safetensors") for f in os.listdir(dataset)):
        if model.codec is None:
            raise ValueError(f"{dataset} holds videos, not a training dataset, and this model has no codec to encode them: "
                             "build one first with the Build Training Dataset node (ComfyUI's VAE, CLIP and CLIP vision) "
                             "or `python -m pfvg_core dataset build --encoders`")
        data = os.path.join(out, "latents")
        h, w = model.meta.get("resolution", [64, 64])
        report = build_dataset(dataset, data, model.codec, size=(w, h), fps=options.fps, window=options.window, log=lambda m: None)
        if not any(v == "ok" for v in report.values()):
            raise ValueError(f"no usable video in {dataset}: " + "; ".join(f"{k}: {v}" for k, v in report.items())[:500])
    total = options.stage1_steps + options.stage2_steps
    cfg = TrainConfig(model="(node)", data=data, out=os.path.join(out, "run"), stages=stages, lr=options.learning_rate,
                      window=options.window, seed=options.seed, save_every=max(1, total // 10),
                      gradient_checkpointing=options.gradient_checkpointing, device=str(model.device))
    big = isinstance(model.meta.get("base"), dict)  # FramePack-F1 weights: share the frozen base, copy what trains
    full = sum(p.numel() for p in model.dit.parameters()) >= FULL_SIZE_PARAMS
    cfg = _skip_whole_net_stages(cfg, full, 1)  # (stage 1 of a full-size DiT does not fit one GPU: decided before copying)
    inference = any(p.is_inference() for p in model.dit.parameters())
    view = big and _stage2_only(cfg.stages) and not inference
    trainer = Trainer(cfg, model=trainable_view(model) if view else trainable_copy(model))
    if options.existing == "resume" and not trainer.resume() and (has_model or trainer.existing_run()):
        raise ValueError(f"{out} holds a model but no training checkpoint to resume: set existing to 'overwrite' to "
                         "replace it, or choose another output name")
    if on_start is not None:
        on_start(trainer.total_steps(), trainer.pos.global_step)
    trainer.run(on_step=on_step, cancel=cancel)  # saves the last finished step on cancel/interrupt (Trainer.run)
    trained = trainer.model
    trained.meta.update({k: v for k, v in model.meta.items() if k not in trained.meta})
    trained.meta.pop("placeholder", None)
    trained.save(out)
    trained.refresh_id()
    return trained.eval()
