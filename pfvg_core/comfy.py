"""The engine side of the ComfyUI nodes: type conversions, safe paths, progress and interrupt hooks.

Nothing here imports ComfyUI at module level; ComfyUI helpers (``folder_paths``, ``comfy.utils``,
``comfy.model_management``, ``server``) are imported lazily with fallbacks, so the nodes import and
are tested without ComfyUI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .model import EMBEDDED_DIR, Conditioning, PFVGModel, load_embedded_model
from .state import MemoryState

DEFAULT_MODEL_DIR = EMBEDDED_DIR
MODEL_FOLDER = "pfvg"  # ComfyUI models/<MODEL_FOLDER>


# --- models ------------------------------------------------------------------------------------
def default_model(dtype=torch.float32) -> PFVGModel:
    """The embedded default model (shipped in the package)."""
    return load_embedded_model(dtype)


def models_root() -> str:
    """ComfyUI's models/pfvg folder (registered on first use), or ./models/pfvg outside ComfyUI."""
    try:
        import folder_paths  # type: ignore

        if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
            path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
            folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([path], {".json", ".safetensors"})
        root = folder_paths.folder_names_and_paths[MODEL_FOLDER][0][0]
    except ImportError:
        root = os.path.abspath(os.path.join("models", MODEL_FOLDER))
    return root


def input_root() -> str:
    try:
        import folder_paths  # type: ignore

        return folder_paths.get_input_directory()
    except ImportError:
        return os.path.abspath("input")


def output_root() -> str:
    try:
        import folder_paths  # type: ignore

        return folder_paths.get_output_directory()
    except ImportError:
        return os.path.abspath("output")


def safe_join(root: str, name: str, what: str = "name") -> str:
    """``root/name`` if it stays inside ``root``: no absolute paths, no ``..``, no links out."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} is empty: give a name inside {root}")
    if os.path.isabs(name) or name.startswith(("~", "\\")) or ":" in name:
        raise ValueError(f"{what} {name!r} must be a relative name inside {root}, not an absolute path")
    parts = name.replace("\\", "/").split("/")
    if any(p in ("..",) for p in parts):
        raise ValueError(f"{what} {name!r} may not contain '..'")
    path = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ValueError(f"{what} {name!r} leads outside {root} (through a link)")
    return path


def list_models() -> list[str]:
    """Model folders (with pfvg.json) and single DiT .safetensors files under models/pfvg."""
    root = models_root()
    out = []
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        p = os.path.join(root, entry)
        if os.path.isdir(p) and (os.path.isfile(os.path.join(p, "pfvg.json")) or os.path.isfile(os.path.join(p, "config.json"))):
            out.append(entry)
        elif entry.endswith(".safetensors"):
            out.append(entry)
    return out + [DIFFUSION_PREFIX + f for f in _diffusion_models()]


DIFFUSION_PREFIX = "diffusion_models/"


def _diffusion_models() -> list[str]:
    """Single-file DiTs in ComfyUI's diffusion_models folder (where FramePack-F1 users keep theirs)."""
    try:
        import folder_paths  # type: ignore

        return [f for f in folder_paths.get_filename_list("diffusion_models") if f.endswith(".safetensors")]
    except Exception:
        return []


def load_named_model(name: str, dtype: torch.dtype = torch.float32, semanticpack: str | None = None) -> PFVGModel:
    """``(embedded default)`` or a name under models/pfvg: a PFVG bundle, a diffusers FramePack-F1
    folder or a single .safetensors DiT (those two get a fresh SemanticPack unless one is given)."""
    from .checkpoint import load_module

    if name == EMBEDDED:
        model = default_model(dtype)
    elif name.startswith(DIFFUSION_PREFIX):
        import folder_paths  # type: ignore

        rel = name[len(DIFFUSION_PREFIX):]
        if rel not in _diffusion_models():
            raise ValueError(f"model {name}: not found in ComfyUI's diffusion_models folder")
        model = _wrap_dit(folder_paths.get_full_path("diffusion_models", rel), name, dtype)
    else:
        path = safe_join(models_root(), name, "model")
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "pfvg.json")):
            model = PFVGModel.load(path, dtype=dtype)
        else:
            model = _wrap_dit(path, name, dtype)
    if semanticpack:
        if model.semanticpack is None:
            raise ValueError(f"model {name} has no SemanticPack to load {semanticpack} into")
        load_module(safe_join(models_root(), semanticpack, "SemanticPack weights"), model.semanticpack, "SemanticPack")
        model.refresh_id()
    return model.eval()


EMBEDDED = "(embedded default)"


def _wrap_dit(path: str, name: str, dtype) -> PFVGModel:
    """A FramePack-F1 DiT (diffusers folder or single file) with a fresh SemanticPack (gate closed:
    exactly FramePack-F1 until SemanticPack weights are loaded or trained)."""
    from .backbone import load_dit
    from .semanticpack import SemanticPack, SemanticPackConfig

    dit = load_dit(path, dtype=dtype)
    sp = SemanticPack(SemanticPackConfig.for_dit(dict(dit.config))).to(dtype)
    return PFVGModel(dit, sp, meta={"source": name})


# --- ComfyUI types -----------------------------------------------------------------------------
def image_to_pixels(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, 3] in [0, 1] → [B, 3, 1, H, W] in [−1, 1] (first frame per batch item)."""
    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"image: expected a ComfyUI IMAGE [B, H, W, 3], got {getattr(image, 'shape', type(image))}")
    return (image[..., :3].float() * 2 - 1).permute(0, 3, 1, 2)[:, :, None]


def pixels_to_image(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] in [−1, 1] → ComfyUI IMAGE frames [B·T, H, W, 3] in [0, 1]."""
    x = (pixels.float().clamp(-1, 1) + 1) / 2
    return x.permute(0, 2, 3, 4, 1).reshape(-1, *x.shape[3:], 3).contiguous()


def latent_samples(latent) -> torch.Tensor:
    """A ComfyUI LATENT dict → its 5-D video samples [B, C, T, H, W]."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError("latent: expected a ComfyUI LATENT (a dict with 'samples')")
    s = latent["samples"]
    if s.ndim == 4:  # an image latent [B, C, H, W]
        s = s[:, :, None]
    if s.ndim != 5:
        raise ValueError(f"latent: expected video samples [B, C, T, H, W], got {tuple(s.shape)}")
    return s


def encode_start(model: PFVGModel, image: torch.Tensor | None = None, latent=None) -> torch.Tensor:
    """The start latent [B, C, 1, H, W] from an IMAGE (with the model's codec) or a LATENT."""
    if latent is not None:
        s = latent_samples(latent)[:, :, :1].float()
    elif image is not None:
        if model.codec is None:
            raise ValueError("this model has no codec: give the start image as a LATENT (e.g. from a VAE Encode node)")
        pixels = image_to_pixels(image)
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


def conditioning_from_comfy(model: PFVGModel, conditioning, start_latent: torch.Tensor, image_embeds=None) -> Conditioning:
    """ComfyUI CONDITIONING ([[tokens [B, L, D], {"pooled_output": …}], …]) → our Conditioning."""
    try:
        tokens, extra = conditioning[0][0], conditioning[0][1]
    except (TypeError, IndexError, KeyError) as e:
        raise ValueError("conditioning: expected ComfyUI CONDITIONING") from e
    d = model.dit.config.text_embed_dim
    if tokens.shape[-1] != d:
        raise ValueError(f"conditioning: token width {tokens.shape[-1]}, this model expects {d} (HunyuanVideo text encoder)")
    pooled = extra.get("pooled_output")
    if pooled is None or pooled.shape[-1] != model.dit.config.pooled_projection_dim:
        raise ValueError(f"conditioning: needs pooled_output of width {model.dit.config.pooled_projection_dim}")
    if image_embeds is None:
        if model.image_encoder is None:
            raise ValueError("this model needs image features: connect a CLIP_VISION_OUTPUT (SigLIP)")
        with torch.no_grad():
            image_embeds = model.image_encoder(start_latent.to(model.device, model.dtype))
    mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
    return Conditioning(tokens.float(), mask, pooled.float(), image_embeds.float())


def clip_vision_embeds(clip_vision_output) -> torch.Tensor | None:
    if clip_vision_output is None:
        return None
    emb = getattr(clip_vision_output, "last_hidden_state", None)
    if emb is None and isinstance(clip_vision_output, dict):
        emb = clip_vision_output.get("last_hidden_state")
    if emb is None:
        raise ValueError("clip_vision_output: no last_hidden_state")
    return emb.float()


@dataclass(frozen=True)
class Memory:
    """What flows on a PFVG_MEMORY link: the memory state plus what later prompts need."""

    state: MemoryState
    image_embeds: torch.Tensor | None
    start_latent: torch.Tensor
    fps: float


# --- progress and interrupt --------------------------------------------------------------------
def interrupted() -> bool:
    """True when the user pressed Cancel in ComfyUI (False outside ComfyUI)."""
    try:
        import comfy.model_management as mm  # type: ignore

        return bool(mm.processing_interrupted())
    except ImportError:
        return False


def raise_if_interrupted() -> None:
    try:
        import comfy.model_management as mm  # type: ignore

        mm.throw_exception_if_processing_interrupted()
    except ImportError:
        return


class Progress:
    """One ComfyUI progress bar over a whole job (fallback: a no-op), with optional previews and a
    custom ``pfvg.progress`` event for the web extension."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total, self.value, self.node_id = total, 0, node_id
        try:
            from comfy.utils import ProgressBar  # type: ignore

            self.bar = ProgressBar(total)
        except ImportError:
            self.bar = None

    def update(self, k: int = 1, preview=None) -> None:
        self.value = min(self.total, self.value + k)
        if self.bar is not None:
            self.bar.update_absolute(self.value, self.total, ("JPEG", preview, 512) if preview is not None else None)

    def event(self, data: dict) -> None:
        try:
            from server import PromptServer  # type: ignore

            PromptServer.instance.send_sync("pfvg.progress", {"node": self.node_id, **data})
        except Exception:  # no server (tests, CLI): nothing to tell
            pass


def preview_image(model: PFVGModel, latents: torch.Tensor):
    """A PIL image of the last frame of a segment, for the progress preview (None without a codec)."""
    if model.codec is None:
        return None
    from PIL import Image

    with torch.no_grad():
        px = model.codec.decode(latents[:, :, -1:].to(model.device, model.dtype))
    arr = ((px[0, :, 0].permute(1, 2, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
    return Image.fromarray(arr)



# --- operations behind the nodes ---------------------------------------------------------------
def make_conditioning(model: PFVGModel, memory_or_start, prompt: str | None = None, conditioning=None,
                      image_embeds=None) -> Conditioning:
    start = memory_or_start.start_latent if isinstance(memory_or_start, Memory) else memory_or_start
    if image_embeds is None and isinstance(memory_or_start, Memory):
        image_embeds = memory_or_start.image_embeds
    if conditioning is not None:
        return conditioning_from_comfy(model, conditioning, start, image_embeds)
    if prompt is None:
        raise ValueError("give a prompt (text) or a CONDITIONING")
    return model.conditioning(prompt, start.to(model.device), image_embeds)


def encode_memory(model: PFVGModel, *, image=None, latent=None, prompt: str | None = None, conditioning=None,
                  clip_vision_output=None, seed: int = 0, window: int = 9, schedule: str = "td_f16k4f2k2f1k1",
                  rope: str = "video", memory: str = "on", fps: float = 8.0) -> Memory:
    """Encode ψ₀ (PFVG §3.1): start latent + prompt/image features → the initial memory state."""
    from .framepack import Schedule
    from .state import MemoryConfig, init_state

    start = encode_start(model, image, latent)
    embeds = clip_vision_embeds(clip_vision_output)
    cond = make_conditioning(model, start, prompt, conditioning, embeds)
    cfg = MemoryConfig(window=window, schedule=Schedule.parse(schedule), rope=rope, memory=memory)
    state = init_state(model, start, cond, seed=seed, config=cfg)
    return Memory(state, embeds if embeds is not None else cond.image_embeds, start, fps)


def check_memory(memory) -> Memory:
    if not isinstance(memory, Memory):
        raise ValueError(f"memory: expected a PFVG memory state, got {type(memory).__name__}")
    return memory


def sample_next(model: PFVGModel, memory: Memory, cond: Conditioning, seed: int, options, negative=None,
                progress: Progress | None = None) -> torch.Tensor:
    """The next segment's latents [B, C, W, H, W] (Segment Sampler)."""
    from .loop import Cancelled, sample_segment

    memory = check_memory(memory)
    state = memory.state.replace(seed=int(seed))
    try:
        return sample_segment(model, state, cond, negative, options,
                              on_step=(lambda e: progress.update()) if progress else None, cancel=interrupted)
    except Cancelled:
        raise_if_interrupted()
        raise


def step_memory(model: PFVGModel, memory: Memory, segment: torch.Tensor) -> Memory:
    """MemoryPack Step: a new Memory with the segment appended and ψ updated (input untouched)."""
    from .state import step

    memory = check_memory(memory)
    return Memory(step(model, memory.state, segment), memory.image_embeds, memory.start_latent, memory.fps)


def long_video(model: PFVGModel, memory: Memory, *, segments: int, seed: int, options, prompt_schedule: str | None = None,
               conditioning=None, negative: str | None = None, node_id: str | None = None):
    """Long Video Loop: returns (latents [B, C, T, H, W], memory after the last segment).
    One progress bar over all segments × steps, a preview per segment, stops on interrupt."""
    from .loop import PromptSchedule

    memory = check_memory(memory)
    schedule = PromptSchedule.parse(prompt_schedule) if prompt_schedule and prompt_schedule.strip() else None
    if schedule is None and conditioning is None:
        raise ValueError("give a prompt schedule (text) or a CONDITIONING")
    tf = getattr(model.codec, "temporal_factor", 1) if model.codec is not None else 1
    progress = Progress(segments * options.steps, node_id)
    cache: dict[str, Conditioning] = {}
    neg = make_conditioning(model, memory, negative) if negative and options.cfg != 1.0 else None
    chunks = []
    for n in range(segments):
        seconds_at = (memory.state.next_index - 1) * tf / memory.fps
        if schedule is not None:
            p = schedule.prompt_at(seconds_at)
            if p not in cache:
                cache[p] = make_conditioning(model, memory, p)
            cond = cache[p]
        else:
            cond = cache.setdefault("", make_conditioning(model, memory, conditioning=conditioning))
        x = sample_next(model, memory, cond, seed, options, neg, progress)
        memory = step_memory(model, memory, x)
        chunks.append(x.cpu())
        progress.update(0, preview_image(model, x))
        progress.event({"segment": n + 1, "segments": segments, "seconds": memory.state.next_index * tf / memory.fps,
                        "memory_tokens": memory.state.memory_tokens, "history_frames": int(memory.state.history.frames.shape[2])})
    return torch.cat(chunks, dim=2), memory


def decode(model: PFVGModel, latents: torch.Tensor, include_start: torch.Tensor | None = None) -> torch.Tensor:
    """Latents [B, C, T, H, W] → IMAGE frames [B·T, H, W, 3] with the model's codec."""
    if model.codec is None:
        raise ValueError("this model has no codec: decode with a VAE node (e.g. HunyuanVideo VAE Decode)")
    x = latents if include_start is None else torch.cat([include_start.to(latents), latents], dim=2)
    with torch.no_grad():
        px = model.codec.decode(x.to(model.device, model.dtype))
    return pixels_to_image(px.cpu())


def evaluate_images(images: torch.Tensor, fps: float) -> tuple[str, torch.Tensor]:
    """Drift / consistency report (text) and a plot (IMAGE) for ComfyUI IMAGE frames."""
    import tempfile

    import numpy as np
    from PIL import Image

    from .metrics import evaluate, plot_metrics

    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError("images: expected ComfyUI IMAGE frames [T, H, W, 3]")
    frames = (images[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    res = evaluate(frames, fps=fps)
    per = res.pop("per_frame")
    with tempfile.TemporaryDirectory() as d:
        path = plot_metrics(per, os.path.join(d, "plot.png"), fps=fps)
        plot = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)[None]
    lines = [f"{k}: {v:.5g}" if isinstance(v, float) else f"{k}: {v}" for k, v in res.items()]
    return "\n".join(lines), plot


def write_world_videos(folder_name: str, count: int, seconds: float, fps: float, seed: int, size: int = 64) -> str:
    """Render ``count`` world videos (frames as animated WebP + prompt .txt) into input/<folder_name>."""
    from .video_io import write_video
    from .world import make_video

    folder = safe_join(input_root(), folder_name, "folder")
    os.makedirs(folder, exist_ok=True)
    for k in range(count):
        v = make_video(seed + k, seconds=seconds, fps=fps, view=size)
        name = f"world_{seed + k:05d}"
        write_video(v.frames, os.path.join(folder, name + ".webp"), fps)
        with open(os.path.join(folder, name + ".txt"), "w") as f:
            f.write(v.prompt)
    return folder


def train_model(model: PFVGModel, *, dataset: str, output_name: str, stage1_steps: int, stage2_steps: int, lr: float,
                stage2_params: str, window: int, fps: float, seed: int, resume: bool, node_id: str | None = None):
    """Direct Forcing Train: encode the dataset if needed, run the paper's two stages, save to
    models/pfvg/<output_name>. Returns (trained model, its folder)."""
    from .data import build_dataset
    from .train import StageConfig, TrainConfig

    src = safe_join(input_root(), dataset, "dataset")
    if not os.path.isdir(src):
        raise ValueError(f"dataset folder not found: {src} (put videos, frame folders or latents under ComfyUI's input folder)")
    out = safe_join(models_root(), output_name, "output name")
    data = src
    if not any(f.endswith(".safetensors") for f in os.listdir(src)):
        if model.codec is None:
            raise ValueError("the dataset holds no latents and this model has no codec to encode it")
        data = os.path.join(out, "latents")
        h, w = model.meta.get("resolution", [64, 64])
        report = build_dataset(src, data, model.codec, size=(w, h), fps=fps, window=window, log=lambda m: None)
        if not any(v == "ok" for v in report.values()):
            raise ValueError(f"no usable video in {src}: " + "; ".join(f"{k}: {v}" for k, v in report.items())[:500])
    stages = [s for s in (StageConfig("stage1-teacher", "teacher", "all", stage1_steps) if stage1_steps else None,
                          StageConfig("stage2-direct", "direct", stage2_params, stage2_steps) if stage2_steps else None) if s]
    if not stages:
        raise ValueError("stage1_steps and stage2_steps are both 0: nothing to train")
    cfg = TrainConfig(model="(node)", data=data, out=os.path.join(out, "run"), stages=stages, lr=lr, window=window,
                      seed=seed, save_every=max(1, (stage1_steps + stage2_steps) // 10))
    # ComfyUI runs nodes under torch.inference_mode(): train outside it, on a copy with ordinary tensors
    # (never the input model in place: ComfyUI caches it).
    with torch.inference_mode(False), torch.enable_grad():
        return _train(model, cfg, resume, node_id, out)


def trainable_copy(model: PFVGModel) -> PFVGModel:
    """A deep copy whose parameters and buffers are ordinary tensors (not inference tensors)."""
    import copy

    m = copy.deepcopy(model)
    for mod in m.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[name] = torch.nn.Parameter(p.detach().clone(), requires_grad=True)
        for name, b in list(mod._buffers.items()):
            if b is not None:
                mod._buffers[name] = b.detach().clone()
    return m


def _train(model, cfg, resume, node_id, out):
    from .loop import Cancelled
    from .train import Trainer

    trainer = Trainer(cfg, model=trainable_copy(model))
    if resume:
        trainer.resume()
    progress = Progress(trainer.total_steps(), node_id)
    progress.update(trainer.pos.global_step)
    try:
        trainer.run(on_step=lambda rec: (progress.update(), progress.event({"train_step": rec["global_step"], "loss": rec["loss"]})),
                    cancel=interrupted)
    except Cancelled:
        trainer.save_checkpoint()  # nothing is lost: the next run resumes here
        raise_if_interrupted()
        raise
    trained = trainer.model
    trained.meta.update({k: v for k, v in model.meta.items() if k not in trained.meta})
    trained.meta.pop("placeholder", None)
    trained.save(out)
    trained.refresh_id()
    return trained.eval(), out


def placeholder_image() -> torch.Tensor:
    """One black 64×64 frame: the IMAGE output of models without a codec (decode the LATENT with a VAE)."""
    return torch.zeros(1, 64, 64, 3)
