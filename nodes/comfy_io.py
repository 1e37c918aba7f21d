"""The one seam to ComfyUI: the only module of the pack that imports ComfyUI.

Model folders and safe paths (``folder_paths``), IMAGE / LATENT / CONDITIONING / CLIP_VISION_OUTPUT
conversions, progress bars, previews and the ``pfvg.progress`` event (``comfy.utils``, ``server``),
interrupts (``comfy.model_management``) and training outside ComfyUI's inference mode. Every ComfyUI
module is imported lazily with a fallback, so the nodes import and are tested without ComfyUI.
Everything else is engine code in ``pfvg_core``.
"""
from __future__ import annotations

import contextlib
import os

import torch

from pfvg_core import operations as ops
from pfvg_core.loop import Cancelled
from pfvg_core.model import load_embedded_model

MODEL_FOLDER = "pfvg"  # ComfyUI models/<MODEL_FOLDER>
EMBEDDED = "(embedded default)"
DIFFUSION_PREFIX = "diffusion_models/"
PROGRESS_EVENT = "pfvg.progress"  # listened to by web/pfvg.js


# --- folders -----------------------------------------------------------------------------------
def _folder_paths():
    try:
        import folder_paths  # type: ignore

        return folder_paths
    except ImportError:
        return None


def register_folders() -> None:
    """models/pfvg as the first ``pfvg`` model folder (``folder_paths.add_model_folder_path``): folders
    configured for ``pfvg`` in extra_model_paths.yaml stay listed after it. Called when the nodes load."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, MODEL_FOLDER)
    if hasattr(fp, "add_model_folder_path"):
        fp.add_model_folder_path(MODEL_FOLDER, default, is_default=True)
    else:  # an older ComfyUI: the same on its table
        paths, _ = fp.folder_names_and_paths.setdefault(MODEL_FOLDER, ([], set()))
        if default in paths:
            paths.remove(default)
        paths.insert(0, default)


def model_roots() -> list[str]:
    """Every ``pfvg`` model folder (ComfyUI's models/pfvg first), or ./models/pfvg outside ComfyUI."""
    fp = _folder_paths()
    if fp is None:
        return [models_root()]
    register_folders()
    return list(fp.folder_names_and_paths[MODEL_FOLDER][0])


def models_root() -> str:
    """Where the pack writes models (trained ones): the first ``pfvg`` folder."""
    if _folder_paths() is None:
        return os.path.abspath(os.path.join("models", MODEL_FOLDER))
    return model_roots()[0]


def find_model_path(name: str, what: str = "model") -> str:
    """``name`` inside the first ``pfvg`` folder that has it (each checked with ``safe_join``)."""
    roots = model_roots()
    for root in roots:
        path = safe_join(root, name, what)
        if os.path.exists(path):
            return path
    raise ValueError(f"{what} {name!r} not found in the pfvg model folders {roots}")


def list_loras() -> list[str]:
    """LoRA .safetensors files in ComfyUI's ``loras`` folders (extra_model_paths.yaml included)."""
    fp = _folder_paths()
    if fp is None:
        root = os.path.abspath(os.path.join("models", "loras"))
        return sorted(f for f in os.listdir(root) if f.endswith(".safetensors")) if os.path.isdir(root) else []
    return [f for f in fp.get_filename_list("loras") if f.endswith(".safetensors")]


def lora_path(name: str) -> str:
    fp = _folder_paths()
    if fp is None:
        return safe_join(os.path.abspath(os.path.join("models", "loras")), name, "LoRA")
    if name not in list_loras():
        raise ValueError(f"LoRA {name!r} not found in ComfyUI's loras folders (only .safetensors files are read)")
    return fp.get_full_path_or_raise("loras", name)


def input_root() -> str:
    try:
        import folder_paths  # type: ignore

        return folder_paths.get_input_directory()
    except ImportError:
        return os.path.abspath("input")


# The templates' start image: the pack's demo image, under this name in ComfyUI's input folder.
DEMO_INPUTS = {"pfvg_start.png": os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demo", "start.png")}


def install_demo_inputs() -> list[str]:
    """Copy the templates' inputs (``DEMO_INPUTS``) into ComfyUI's input folder where absent, so every
    template runs on a fresh install with nothing uploaded (as LoadImage expects: a file in input/).
    A file the user already has under that name is never replaced; each copy is atomic. Called when
    the nodes load; a no-op outside ComfyUI. Returns the paths written."""
    fp = _folder_paths()
    if fp is None or not hasattr(fp, "get_input_directory"):
        return []
    from pfvg_core.atomic import write_bytes

    root, written = fp.get_input_directory(), []
    for name, src in DEMO_INPUTS.items():
        dst = os.path.join(root, name)
        if os.path.lexists(dst) or not os.path.isfile(src):
            continue
        try:
            os.makedirs(root, exist_ok=True)
            with open(src, "rb") as f:
                write_bytes(dst, f.read())
            written.append(dst)
        except OSError as e:  # a read-only input folder: the templates then need the image uploaded
            import logging

            logging.getLogger("pfvg").warning("PFVG: could not copy the demo image to %s (%s); upload %s as %s "
                                              "to run the templates", dst, e, src, name)
    return written


def safe_join(root: str, name: str, what: str = "name") -> str:
    """``root/name`` if it stays inside ``root``: no absolute paths, no ``..``, no links out; its length and
    characters checked first (``validate.path_name``, ``validate.joined_path``)."""
    from pfvg_core.validate import joined_path, path_name, short

    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} is empty: give a name inside {root}")
    if os.path.isabs(name) or name.startswith(("~", "\\")) or ":" in name:
        raise ValueError(f"{what} {short(name)} must be a relative name inside {root}, not an absolute path")
    path_name(what, name)
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError(f"{what} {short(name)} may not contain '..'")
    path = joined_path(what, os.path.join(root, *parts))
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise ValueError(f"{what} {short(name)} leads outside {root} (through a link)")
    return path


def _diffusion_models() -> list[str]:
    """Single-file DiTs in ComfyUI's diffusion_models folder (where FramePack-F1 users keep theirs)."""
    try:
        import folder_paths  # type: ignore

        return [f for f in folder_paths.get_filename_list("diffusion_models") if f.endswith(".safetensors")]
    except Exception:
        return []


def list_models() -> list[str]:
    """Model folders (with pfvg.json or config.json) and single DiT .safetensors files in every ``pfvg``
    folder, then the .safetensors files of ComfyUI's diffusion_models folder."""
    out: list[str] = []
    for root in model_roots():
        for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            p = os.path.join(root, entry)
            if entry in out:
                continue
            if os.path.isdir(p) and (os.path.isfile(os.path.join(p, "pfvg.json")) or os.path.isfile(os.path.join(p, "config.json"))):
                out.append(entry)
            elif entry.endswith(".safetensors"):
                out.append(entry)
    return out + [DIFFUSION_PREFIX + f for f in _diffusion_models()]


def devices() -> tuple[torch.device, torch.device]:
    """(device, offload device): ComfyUI's (``comfy.model_management``), or CUDA when available / the CPU."""
    try:
        import comfy.model_management as mm  # type: ignore

        return torch.device(mm.get_torch_device()), torch.device(mm.unet_offload_device())
    except (ImportError, AttributeError):
        from pfvg_core.backbone import resolve_device

        return resolve_device("auto"), torch.device("cpu")


def _weights_bytes(path: str | None) -> int:
    if path is None or not os.path.exists(path):
        return 0
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f.endswith(".safetensors"))


def _make_room(path: str | None, device: torch.device, offload: str) -> None:
    """Before loading: ask ComfyUI to unload other models until the weights fit, and free its cache."""
    try:
        import comfy.model_management as mm  # type: ignore
    except ImportError:
        return
    if device.type != "cpu" and offload == "none":
        mm.free_memory(int(_weights_bytes(path) * 1.2) + 2 * 2**30, device)  # weights + working memory
    mm.soft_empty_cache()


# --- the model in ComfyUI's memory manager -------------------------------------------------------
class HeldModel(torch.nn.Module):
    """What ComfyUI's ``ModelPatcher`` holds: the PFVG model as a submodule (its weights are this module's), with
    the plain ``device`` attribute ComfyUI reads and writes (``PFVGModel.device`` is computed from its DiT)."""

    def __init__(self, model, device: torch.device):
        super().__init__()
        self.pfvg = model
        self.device = device


def _model_patcher_class():
    try:
        from comfy.model_patcher import ModelPatcher  # type: ignore

        return ModelPatcher
    except ImportError:
        return None


def managed(model, offload: str = "none"):
    """The PFVG_MODEL a loader returns: in ComfyUI a ``comfy.model_patcher.ModelPatcher`` holding the model, so
    ComfyUI's memory manager loads it before it runs (``load_models_gpu``), offloads it when the text encoders
    or the VAE need the card, and unloads it on "Unload models" / ``/free``; outside ComfyUI the model itself.
    With ``offload='group'`` the DiT's blocks are moved by their own hooks: ComfyUI keeps the model on its
    offload device (it never moves what the hooks place)."""
    patcher_cls = _model_patcher_class()
    if patcher_cls is None:
        return model
    load_device, offload_device = devices()
    if offload != "none":
        load_device = offload_device
    held = HeldModel(model, model.device)
    return patcher_cls(held, load_device=load_device, offload_device=offload_device)


def unwrap(model):
    """A PFVG_MODEL (a ``ModelPatcher`` in ComfyUI, or the model) → the engine's ``PFVGModel``, not loaded."""
    from pfvg_core.model import PFVGModel

    if isinstance(model, PFVGModel):
        return model
    held = getattr(model, "model", None)
    if isinstance(getattr(held, "pfvg", None), PFVGModel):
        return getattr(model, "attachments", {}).get("pfvg", held.pfvg)  # a LoRA view of the same weights
    raise ValueError(f"model: expected a PFVG model (PFVG_MODEL, from Load Packed DiT), got {type(model).__name__}")


def with_view(model, view):
    """The PFVG_MODEL for ``view``, a model sharing every weight with ``model`` (a LoRA view): a clone of its
    patcher in ComfyUI (clones share weights: ComfyUI loads one of them at a time), else ``view``."""
    if hasattr(model, "clone") and hasattr(model, "attachments"):
        clone = model.clone()
        clone.attachments["pfvg"] = view
        return clone
    return view


def load_for_run(model):
    """Ask ComfyUI to load the model on its device (``comfy.model_management.load_models_gpu``: other models are
    offloaded or unloaded first when memory is short) and return the engine's ``PFVGModel``. A partial (lowvram)
    load is completed: the pack's layers are plain torch modules, which ComfyUI cannot cast on the fly."""
    engine = unwrap(model)
    if engine is model:
        return engine
    import comfy.model_management as mm  # type: ignore  (a ModelPatcher means ComfyUI is there)
    from pfvg_core.backbone import placed_on

    with torch.inference_mode(False):  # moved weights stay ordinary tensors (training shares them: no inference tensors)
        mm.load_models_gpu([model])
        # ComfyUI counts a load as partial (model_lowvram) only for modules it can cast on the fly (comfy_cast_weights);
        # the pack's plain torch modules that did not fit are simply left on the offload device: look at the weights
        if not placed_on(model.model, model.load_device):
            mm.load_models_gpu([model], force_full_load=True)
        if not placed_on(model.model, model.load_device):
            raise ValueError(f"model: ComfyUI could not put all of its weights on {model.load_device} (the card has no "
                             "room left): free memory (Unload models) or load it with offload 'group' or fp8 storage")
        engine.place_parts()  # offload 'group': the DiT's hooks place its blocks; the small modules go where it computes
    _apply_deferred(engine)
    return engine


def placed_by_comfy(offload: str) -> bool:
    """True when ComfyUI's memory manager keeps the model on its offload device until a node runs it."""
    return _model_patcher_class() is not None and offload == "none"


def defer_until_loaded(model, compute: str, compile_mode: str) -> None:
    """fp8 compute (and the compile after it) need the model where it computes: in ComfyUI that is after its first
    ``load_models_gpu``, so they are applied there (``load_for_run``); the card is checked now, so a card without
    fp8 tensor cores still fails at the loader, naming the input (``auto`` never fails: dtype there)."""
    from pfvg_core.speed import fp8_compute_unavailable

    device, _ = devices()
    why = fp8_compute_unavailable(device)
    if why is not None and compute != "auto":  # (auto: the compute dtype where fp8 cannot run)
        raise ValueError(f"compute {compute}: {why}")
    model._pfvg_deferred = (compute, compile_mode)


def _apply_deferred(engine) -> None:
    deferred = getattr(engine, "_pfvg_deferred", None)
    if deferred is None:
        return
    from pfvg_core.speed import compile_blocks, set_compute

    compute, compile_mode = deferred
    with torch.inference_mode(False):
        set_compute(engine, compute)
    compile_blocks(engine, compile_mode)
    engine._pfvg_deferred = None


# The CLI's default --threads (pfvg_core/cli.py): on a shared or busy CPU, one intra-op thread was many
# times faster than torch's default (one per core). A user's own setting wins: PFVG_THREADS, or
# OMP_NUM_THREADS / MKL_NUM_THREADS (torch's own variables) left as torch read them.
DEFAULT_CPU_THREADS = 1
THREADS_ENV = "PFVG_THREADS"


def cpu_threads_wanted(environ=os.environ) -> int | None:
    """The thread rule for a CPU run: PFVG_THREADS if set (a whole number ≥ 1), None (leave torch's setting) if
    the user set OMP_NUM_THREADS or MKL_NUM_THREADS, else the CLI's default of 1."""
    text = environ.get(THREADS_ENV)
    if text is not None:
        from pfvg_core.validate import Limit, number

        return number(THREADS_ENV, text.strip(), Limit(1, 1024, integer=True))
    if environ.get("OMP_NUM_THREADS") or environ.get("MKL_NUM_THREADS"):
        return None
    return DEFAULT_CPU_THREADS


@contextlib.contextmanager
def cpu_threads(device: torch.device):
    """While the pack computes on the CPU: torch's intra-op threads by ``cpu_threads_wanted``; restored after, so
    ComfyUI's other nodes keep their setting."""
    want = cpu_threads_wanted() if torch.device(device).type == "cpu" else None
    before = torch.get_num_threads()
    if want is not None and want != before:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def use(model):
    """``with use(model) as m``: ``m`` is the engine's model, loaded by ComfyUI's memory manager, computing with
    the CPU thread rule. Every node that computes with the model runs inside this."""
    engine = load_for_run(model)
    with cpu_threads(engine.device):
        yield engine


def load_model(name: str, dtype: torch.dtype | str = torch.float32, semanticpack: str | None = None, storage: str = "auto",
               offload: str = "none", attention: str = "native"):
    """``(embedded default)``, a name in a ``pfvg`` model folder or ``diffusion_models/<file>``, on ComfyUI's device
    (``comfy.model_management``: torch device, offload device for ``offload='group'``, memory freed before
    loading); ``dtype`` ``auto``: bfloat16 on a GPU, float32 on the CPU; ``storage`` fp8 and ``offload``
    group: ``pfvg_core.backbone.load_dit``; ``attention``: native / flash / sage."""
    with torch.inference_mode(False):  # ordinary tensors: a training view can share the frozen weights (no copy)
        return _load_model(name, dtype, semanticpack, storage, offload, attention)


def _load_model(name, dtype, semanticpack, storage, offload, attention):
    from pfvg_core.backbone import resolve_dtype, set_attention_backend
    from pfvg_core.semanticpack import gated_attention_problem

    device, offload_device = devices()
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    dtype = resolve_dtype(dtype)
    if _model_patcher_class() is not None and offload == "none":
        device = offload_device  # ComfyUI's memory manager moves it to its device when a node runs (load_for_run)
    sp = find_model_path(semanticpack, "SemanticPack weights") if semanticpack else None
    if name == EMBEDDED:
        model = load_embedded_model(dtype, device)
        model = ops.with_semanticpack(model, sp, name) if sp else model.eval()
    else:
        if name.startswith(DIFFUSION_PREFIX):
            import folder_paths  # type: ignore

            rel = name[len(DIFFUSION_PREFIX):]
            if rel not in _diffusion_models():
                raise ValueError(f"model {name}: not found in ComfyUI's diffusion_models folder")
            path = folder_paths.get_full_path("diffusion_models", rel)
        else:
            path = find_model_path(name)
        if _model_patcher_class() is None or offload != "none":
            _make_room(path, device, offload)
        model = ops.load_model_path(path, name, dtype, sp, device=device, storage=storage, offload=offload,
                                    offload_device=offload_device)
    if attention != "native":
        why = gated_attention_problem(model, attention)
        if why is not None:
            raise ValueError(f"attention {attention}: {why}")
        set_attention_backend(model.dit, attention)
    return model


# --- latents: ComfyUI's LATENT holds the VAE's raw latents ---------------------------------------
def latent_scale(model) -> float:
    """Model latents = raw VAE latents × this: ComfyUI's own latent format's scale for HunyuanVideo when
    ComfyUI is there, else the model bundle's record (``PFVGModel.latent_scale``; the embedded codec's is 1)."""
    if model.meta.get("latent_format") == "hunyuan_video":
        return hunyuan_video_scale()
    return model.latent_scale


def hunyuan_video_scale() -> float:
    """ComfyUI's HunyuanVideo latent format's scale (0.476986), or the same constant without ComfyUI."""
    try:
        from comfy.latent_formats import HunyuanVideo  # type: ignore

        return float(HunyuanVideo.scale_factor)
    except (ImportError, AttributeError):
        from pfvg_core.model import HUNYUAN_VIDEO_SCALE

        return HUNYUAN_VIDEO_SCALE


def latent_in(model, latent) -> torch.Tensor:
    """A LATENT (raw VAE latents, ComfyUI's convention) → model latents [B, C, T, H, W]."""
    return latent_samples(latent).float() * latent_scale(model)


def latent_out(model, samples: torch.Tensor) -> dict:
    """Model latents → a LATENT of raw VAE latents (on the CPU), as VAE Decode expects."""
    return {"samples": samples.float().cpu() / latent_scale(model)}


# --- types -------------------------------------------------------------------------------------
def image_to_pixels(image: torch.Tensor) -> torch.Tensor:
    """IMAGE [B, H, W, 3] in [0, 1] → [B, 3, 1, H, W] in [−1, 1] (first frame per batch item)."""
    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"image: expected a ComfyUI IMAGE [B, H, W, 3], got {getattr(image, 'shape', type(image))}")
    return (image[..., :3].float() * 2 - 1).permute(0, 3, 1, 2)[:, :, None]


def pixels_to_image(pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] in [−1, 1] → IMAGE frames [B·T, H, W, 3] in [0, 1]."""
    x = (pixels.float().clamp(-1, 1) + 1) / 2
    return x.permute(0, 2, 3, 4, 1).reshape(-1, *x.shape[3:], 3).contiguous()


def model_size(model, height: int, width: int, resolution: int) -> tuple[int, int]:
    """(W, H) the model works at for an input of that size (``pfvg_core.sizing.model_size``: the CLI's rule)."""
    from pfvg_core.sizing import model_size as size_rule

    return size_rule(model.meta, model.codec.factor if model.codec is not None else None, height, width, resolution)


def fit_image(model, image: torch.Tensor, fit: str, resolution: int, what: str = "image") -> torch.Tensor:
    """IMAGE frames [N, H, W, 3] → the same frames at the model's size (``pfvg_core.sizing``: crop or stretch)."""
    from pfvg_core.sizing import fit_pixels

    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"{what}: expected a ComfyUI IMAGE [B, H, W, 3], got {getattr(image, 'shape', type(image))}")
    return fit_pixels(image, model_size(model, int(image.shape[1]), int(image.shape[2]), resolution), fit)


def fit_frames(model, image: torch.Tensor, fit: str, resolution: int, what: str = "image"):
    """IMAGE frames [N, H, W, 3] → uint8 frames at the model's size, streamed (``sizing.iter_fit_uint8``: no
    whole-video copy)."""
    from pfvg_core.sizing import iter_fit_uint8

    if not torch.is_tensor(image) or image.ndim != 4 or image.shape[-1] < 3:
        raise ValueError(f"{what}: expected a ComfyUI IMAGE [B, H, W, 3], got {getattr(image, 'shape', type(image))}")
    return iter_fit_uint8(image, model_size(model, int(image.shape[1]), int(image.shape[2]), resolution), fit)


def vae_encode(model, vae, image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """IMAGE frames → model latents [B, C, T, H, W] with ComfyUI's ``VAE`` (as VAE Encode, then × the latent
    scale): the image path of a model without its own codec (FramePack-F1 with HunyuanVideo's VAE)."""
    if vae is None or not hasattr(vae, "encode"):
        raise ValueError(f"{what}: this model has no codec of its own: connect its VAE (HunyuanVideo's, from "
                         "Load VAE) to the vae input, or give a LATENT instead")
    return latent_in(model, {"samples": vae.encode(image[..., :3])})


def image_to_uint8(images: torch.Tensor):
    """IMAGE frames [T, H, W, 3] → uint8 numpy frames."""
    if not torch.is_tensor(images) or images.ndim != 4:
        raise ValueError("images: expected ComfyUI IMAGE frames [T, H, W, 3]")
    return (images[..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()


def latent_samples(latent) -> torch.Tensor:
    """A LATENT dict → its 5-D video samples [B, C, T, H, W]."""
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError("latent: expected a ComfyUI LATENT (a dict with 'samples')")
    s = latent["samples"]
    if s.ndim == 4:  # an image latent [B, C, H, W]
        s = s[:, :, None]
    if s.ndim != 5:
        raise ValueError(f"latent: expected video samples [B, C, T, H, W], got {tuple(s.shape)}")
    return s


def prompt_features(conditioning) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """CONDITIONING ([[tokens [B, L, D], {"pooled_output": …}], …]) → (tokens, pooled); None stays None."""
    if conditioning is None:
        return None
    try:
        tokens, extra = conditioning[0][0], conditioning[0][1]
        return tokens, extra.get("pooled_output")
    except (TypeError, IndexError, KeyError, AttributeError) as e:
        raise ValueError("conditioning: expected ComfyUI CONDITIONING") from e


def clip_vision_embeds(clip_vision_output) -> torch.Tensor | None:
    """CLIP_VISION_OUTPUT → its last hidden state [B, N, D] (SigLIP features for FramePack-F1)."""
    if clip_vision_output is None:
        return None
    emb = getattr(clip_vision_output, "last_hidden_state", None)
    if emb is None and isinstance(clip_vision_output, dict):
        emb = clip_vision_output.get("last_hidden_state")
    if emb is None:
        raise ValueError("clip_vision_output: no last_hidden_state")
    return emb.float()


def placeholder_image() -> torch.Tensor:
    """One black 64×64 frame: the IMAGE output of models without a codec (decode the LATENT with a VAE)."""
    return torch.zeros(1, 64, 64, 3)


# --- progress, previews, interrupt -------------------------------------------------------------
def interrupted() -> bool:
    """True when the user pressed Cancel in ComfyUI (False outside ComfyUI)."""
    try:
        import comfy.model_management as mm  # type: ignore

        return bool(mm.processing_interrupted())
    except ImportError:
        return False


@contextlib.contextmanager
def interruptible():
    """Turns the engine's Cancelled (raised when ``interrupted()`` said so) into ComfyUI's interrupt."""
    try:
        yield
    except Cancelled:
        try:
            import comfy.model_management as mm  # type: ignore

            mm.throw_exception_if_processing_interrupted()
        except ImportError:
            pass
        raise


def job_address() -> tuple[str | None, str | None]:
    """(client id, prompt id) of the job being executed: ComfyUI's PromptServer keeps them in
    ``client_id`` (from the queued prompt's extra data) and ``last_prompt_id`` while it runs."""
    try:
        from server import PromptServer  # type: ignore

        server = PromptServer.instance
        return getattr(server, "client_id", None), getattr(server, "last_prompt_id", None)
    except Exception:
        return None, None


class Progress:
    """One ComfyUI progress bar over a whole job (fallback: a no-op), with optional previews and the
    ``pfvg.progress`` event for the web extension."""

    def __init__(self, total: int, node_id: str | None = None, done: int = 0, segments: int = 0, model=None):
        self.total, self.value, self.node_id, self.segments = total, 0, node_id, segments
        self.previewer = step_previewer(model) if model is not None else None
        self.client_id, self.prompt_id = job_address()
        try:
            from comfy.utils import ProgressBar  # type: ignore

            self.bar = ProgressBar(total)
        except ImportError:
            self.bar = None
        if done:
            self.update(done)

    def update(self, k: int = 1, preview=None) -> None:
        """Advance by ``k``; ``preview``: a uint8 [H, W, 3] frame, or a ready ("JPEG", image, size) preview."""
        self.value = min(self.total, self.value + k)
        if self.bar is not None:
            if preview is not None and not isinstance(preview, tuple):
                from PIL import Image

                preview = ("JPEG", Image.fromarray(preview), 512)
            self.bar.update_absolute(self.value, self.total, preview)

    def step(self, event) -> None:
        """After a sampling step: advance, with a preview of the step's denoised estimate."""
        preview = None
        if self.previewer is not None and getattr(event, "denoised", None) is not None:
            preview = self.previewer(event.denoised)
        self.update(1, preview)

    def event(self, data: dict) -> None:
        """``pfvg.progress`` to the client that queued this job only, with its prompt id (as ComfyUI
        sends its own progress): never broadcast, so other users' pages never draw it."""
        if self.client_id is None:  # no client to address (or no server: tests, CLI)
            return
        try:
            from server import PromptServer  # type: ignore

            from pfvg_core.validate import json_safe  # strict JSON: a NaN loss goes out as null

            PromptServer.instance.send_sync(PROGRESS_EVENT, json_safe({"node": self.node_id, "prompt_id": self.prompt_id, **data}),
                                            self.client_id)
        except Exception:  # the server went away: nothing to tell
            pass

    def segment_done(self, result) -> None:
        """After a segment of the long-video loop: the web event (the previews come with every step)."""
        state = result.state
        self.event({"segment": result.index + 1, "segments": self.segments, "seconds": result.seconds,
                    "memory_tokens": state.memory_tokens, "history_frames": int(state.history.frames.shape[2])})


def step_previewer(model):
    """x₀ of a sampling step (model latents [B, C, T, H, W]) → a preview of its last frame: ComfyUI's latent
    preview (``latent_preview.get_previewer``) with HunyuanVideo's latent format (RGB factors) for a
    HunyuanVideo-latent model, the model's own codec otherwise; None when neither is there."""
    if model.meta.get("latent_format") == "hunyuan_video" or (model.codec is None and model.latent_channels == 16):
        try:
            import latent_preview  # type: ignore
            from comfy.latent_formats import HunyuanVideo  # type: ignore

            previewer = latent_preview.get_previewer(devices()[0], HunyuanVideo())
        except (ImportError, AttributeError):
            return None
        if previewer is None:  # previews switched off in ComfyUI
            return None
        return lambda x0: previewer.decode_latent_to_preview_image("JPEG", x0[:, :, -1:])
    if model.codec is not None:
        return lambda x0: ops.preview_frame(model, x0)
    return None


def encode_prompts(clip, text: str):
    """A ``0: … / [12s] …`` schedule → the same schedule with each line encoded by ComfyUI's ``CLIP`` (the
    text encoders CLIPTextEncode uses) into prompt features (tokens, pooled)."""
    from pfvg_core.loop import PromptSchedule

    if clip is None or not hasattr(clip, "tokenize"):
        raise ValueError("clip: expected a ComfyUI CLIP (e.g. from DualCLIPLoader with type hunyuan_video)")
    schedule = PromptSchedule.parse(text)
    features = []
    for _, line in schedule.entries:
        tokens = clip.tokenize(line)
        encode = getattr(clip, "encode_from_tokens_scheduled", None)
        if encode is not None:
            features.append(prompt_features(encode(tokens)))
        else:
            cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
            features.append((cond, pooled))
    return PromptSchedule(tuple((t, f) for (t, _), f in zip(schedule.entries, features)),
                          tuple(line for _, line in schedule.entries))


# --- training ----------------------------------------------------------------------------------
class ComfyEncoders:
    """ComfyUI's VAE, CLIP and CLIP vision in the interface of ``pfvg_core.f1_encoders.F1Encoders``, so that a
    dataset built in ComfyUI holds exactly what the inference nodes feed the model: latents = raw VAE latents ×
    the latent scale (``latent_in``), prompt features as CLIP Text Encode gives them (``encode_prompts``,
    unpadded, mask all ones, as ``conditioning_from_features``), SigLIP features as CLIP Vision Encode gives
    them with crop ``none`` (``clip_vision_embeds``): the frame squashed to SigLIP's square, as FramePack and
    diffusers' FramePack pipeline do (``SiglipImageProcessor`` resizes to 384×384, no crop) and as the F1 template
    encodes its start image. ``crop`` is how the video frames are fitted to the bucket, before that.)"""

    def __init__(self, vae, clip, clip_vision, crop: str = "center", tile_latents: int = 8):
        for name, obj, attr in (("vae", vae, "encode"), ("clip", clip, "tokenize"), ("clip_vision", clip_vision, "encode_image")):
            if obj is None or not hasattr(obj, attr):
                raise ValueError(f"{name}: expected a ComfyUI {name.upper()} (HunyuanVideo's VAE, its text encoders, SigLIP)")
        self.vae, self.clip, self.clip_vision, self.crop, self.tile_latents = vae, clip, clip_vision, crop, tile_latents

    def codec(self):
        return _ComfyVideoCodec(self.vae, self.tile_latents)

    def encode_prompt(self, prompts: list[str]):
        rows = []
        for text in prompts:
            tokens, pooled = encode_prompts(self.clip, text).entries[0][1]
            if pooled is None:
                raise ValueError("clip: its conditioning has no pooled_output (use HunyuanVideo's text encoders)")
            rows.append((tokens[0].float(), pooled[0].float()))
        from pfvg_core.model import stack_prompts

        emb, mask = stack_prompts([t for t, _ in rows])
        return emb, mask, torch.stack([p for _, p in rows])

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        image = ((pixels.float() + 1) / 2).permute(0, 2, 3, 1)  # [B, H, W, 3] in [0, 1], a ComfyUI IMAGE
        return clip_vision_embeds(self.clip_vision.encode_image(image, crop=False))  # (FramePack's squash, not a crop)


class _ComfyVideoCodec:
    """ComfyUI's video VAE streamed window by window (``f1_encoders.stream_windows``): IMAGE frames in, raw
    latents out (ComfyUI's convention), × the model latent scale."""

    factor, temporal_factor = 8, 4

    def __init__(self, vae, tile_latents: int):
        self.vae, self.tile_latents, self.scale = vae, tile_latents, hunyuan_video_scale()

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        frames = ((pixels[0].float() + 1) / 2).permute(1, 2, 3, 0)  # [T, H, W, 3]
        return latent_samples({"samples": self.vae.encode(frames)}).float() * self.scale

    def encode_stream(self, frames):
        from pfvg_core.f1_encoders import stream_windows

        return stream_windows(frames, self.tile_latents, self.encode)


def build_dataset(vae, clip, clip_vision, videos: str, output_name: str, options, node_id: str | None = None) -> str:
    """Build Training Dataset: the videos in ``videos`` (a folder under the input folder) → the cached dataset
    input/``output_name`` that Direct Forcing Train reads. Returns its name."""
    src = safe_join(input_root(), videos, "videos")
    out = safe_join(input_root(), output_name, "output_name")
    if os.path.abspath(src) == os.path.abspath(out):
        raise ValueError("output_name: choose another folder than the videos' (the dataset is written beside them)")
    n = len([f for f in os.listdir(src) if not f.endswith(".txt") and not f.startswith(".")]) if os.path.isdir(src) else 0
    progress = Progress(max(1, n), node_id)
    with interruptible():
        ops.build_training_dataset(ComfyEncoders(vae, clip, clip_vision, options.crop), src, out, options, cancel=interrupted,
                                   on_video=lambda name, status: progress.update())
    return output_name


def _unload_other_models() -> None:
    """Training a big model wants the whole card: ComfyUI's other models (text encoders, VAE, …) are unloaded first."""
    try:
        import comfy.model_management as mm  # type: ignore
    except ImportError:
        return
    with torch.inference_mode(False):
        mm.unload_all_models()
    mm.soft_empty_cache()


def train(model, dataset: str, output_name: str, options: ops.TrainOptions, node_id: str | None = None):
    """Direct Forcing Train: ``dataset`` under the input folder, saved to models/pfvg/<output_name>.
    ComfyUI runs nodes under torch.inference_mode(): training runs outside it (on a copy: ComfyUI caches
    the input model)."""
    src = safe_join(input_root(), dataset, "dataset")
    out = ops.training_output(safe_join(models_root(), output_name, "output_name"), options.existing)
    holder = {}

    def start(total, done):
        holder["p"] = Progress(total, node_id, done)

    def step(rec):
        holder["p"].update()
        holder["p"].event({"train_step": rec["global_step"], "loss": rec["loss"]})

    if isinstance(unwrap(model).meta.get("base"), dict):  # FramePack-F1 weights
        _unload_other_models()  # (ComfyUI then loads this model alone, in use())
    with use(model) as engine, torch.inference_mode(False), torch.enable_grad(), interruptible():
        trained = ops.train_model(engine, src, out, options, on_start=start, on_step=step, cancel=interrupted)
    if ops.shares_weights(trained, engine):  # a training view of F1: one ComfyUI model for both (as LoRA views)
        return with_view(model, trained), out
    return managed(trained), out
