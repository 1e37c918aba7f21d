"""The PFVG model bundle: packed DiT + SemanticPack (+ small encoders and codec), saved as a folder.

Folder layout (safetensors only, one file per module, plus ``pfvg.json`` with every config)::

    pfvg.json  dit.safetensors  semanticpack.safetensors  text_encoder.safetensors
    image_encoder.safetensors  codec.safetensors
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass

import torch
from torch import nn

from . import flow
from .atomic import write_json
from .backbone import (OFFLOAD, build_dit, compute_dtype, dit_config, execution_device, load_dit, place_dit, placed_on,
                       resolve_device, resolve_dtype)
from .checkpoint import (CheckpointError, check_keys, check_weights_reference, load_module, read_safetensors, save_safetensors_atomic,
                         weights_reference)
from .codec import ConvCodec, PatchCodec
from .encoders import ByteTextEncoder, LatentImageEncoder
from .framepack import PackedContext
from .lora import lora_scope
from .rope import TimeIndices
from .semanticpack import MemoryInjector, SemanticPack, SemanticPackConfig
from .speed import cache_scope

BUNDLE_FILE = "pfvg.json"
# HunyuanVideo's VAE (FramePack-F1): the DiT works on raw VAE latents × this scale; 4 video frames per latent frame.
HUNYUAN_VIDEO_SCALE = 0.476986
HUNYUAN_VIDEO_TEMPORAL = 4
EMBEDDED_DIR = os.path.join(os.path.dirname(__file__), "assets", "default")  # the shipped default model
FORMAT = "pfvg-bundle"


def codec_config(codec) -> dict | None:
    if codec is None:
        return None
    if isinstance(codec, ConvCodec):
        return {"type": "conv", "factor": codec.factor, "width": codec.width}
    return {"type": "patch", "factor": codec.factor}


def build_codec(cfg: dict, latent_channels: int):
    if cfg.get("type") == "conv":
        return ConvCodec(latent_channels, cfg["factor"], cfg.get("width", 64))
    if cfg.get("type", "patch") == "patch":
        return PatchCodec(latent_channels, cfg["factor"])
    raise CheckpointError(f"unknown codec type {cfg.get('type')!r}")


@dataclass(frozen=True)
class Conditioning:
    """What one prompt + reference image give the DiT.

    prompt_embeds [B, L, text_dim], prompt_mask [B, L] bool, pooled [B, pooled_dim],
    image_embeds [B, N, image_dim]."""

    prompt_embeds: torch.Tensor
    prompt_mask: torch.Tensor
    pooled: torch.Tensor
    image_embeds: torch.Tensor


def stack_prompts(embeds: list[torch.Tensor], masks: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt features of different lengths [L_i, D] (with their masks [L_i], all True when None) → one batch
    [B, L, D] and mask [B, L] (bool), padded to the longest with masked-out zeros."""
    n = max(e.shape[0] for e in embeds)
    masks = masks or [torch.ones(e.shape[0], dtype=torch.bool) for e in embeds]
    emb = torch.stack([nn.functional.pad(e, (0, 0, 0, n - e.shape[0])) for e in embeds])
    mask = torch.stack([nn.functional.pad(m.bool(), (0, n - m.shape[0])) for m in masks])
    return emb, mask


class PFVGModel(nn.Module):
    def __init__(self, dit, semanticpack: SemanticPack | None = None, text_encoder: ByteTextEncoder | None = None,
                 image_encoder: LatentImageEncoder | None = None, codec: PatchCodec | None = None, meta: dict | None = None):
        super().__init__()
        self.dit = dit
        self.semanticpack = semanticpack
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.codec = codec
        self.meta = dict(meta or {})
        self.injector = MemoryInjector.for_dit(dit) if semanticpack is not None else None
        self._id: str | None = None
        self.id_tags: list[str] = []  # run-time changes that are not in the weights (LoRAs: lora.with_loras)
        self.loras: tuple = ()  # ((Lora, strength), …) active while this model evaluates its DiT
        # run-time prompt encoder when the bundle has none (FramePack-F1: ``F1Encoders.encode_prompt``): prompts →
        # (features [B, L, D], mask [B, L], pooled [B, P]); not part of the weights or the fingerprint
        self.prompt_encoder = None
        # sampler and steps used when the caller gives none (the CLI, the nodes' defaults)
        self.sampling_defaults = {"sampler": self.meta.get("sampler", "euler"), "steps": int(self.meta.get("steps", 25))}

    # identity ---------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """A fingerprint of the configs and weights (a sample of every tensor), cached."""
        if self._id is None:
            h = hashlib.sha256(json.dumps(self.bundle_config(), sort_keys=True).encode())
            for tag in self.id_tags:
                h.update(tag.encode())
            for name, p in self.state_dict().items():
                p = p.to_local() if hasattr(p, "to_local") else p  # FSDP-sharded (DTensor): this rank's shard
                h.update(name.encode())
                h.update(str(tuple(p.shape)).encode())
                h.update(p.detach().flatten()[:64].float().cpu().numpy().tobytes())
            self._id = h.hexdigest()[:16]
        return self._id

    def refresh_id(self) -> None:
        """Forget the cached fingerprint (after the weights changed, e.g. training)."""
        self._id = None

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (with fp8 storage the DiT's weights are stored in fp8, computed in this)."""
        return compute_dtype(self.dit)

    @property
    def device(self) -> torch.device:
        """Where the model computes (with group offload the DiT's weights rest on the CPU)."""
        return execution_device(self.dit)

    def place_parts(self) -> "PFVGModel":
        """SemanticPack, the encoders and the codec where the DiT computes (``device``). Needed after whoever moves
        the whole model puts them elsewhere — with offload 'group' ComfyUI's full load moves every module to its
        offload device, where the DiT's weights rest between blocks but where nothing of a step computes."""
        dev = self.device
        for name in ("semanticpack", "text_encoder", "image_encoder", "codec"):
            mod = getattr(self, name)
            if mod is not None and not placed_on(mod, dev):
                mod.to(dev)
        return self

    @property
    def latent_channels(self) -> int:
        return self.dit.config.in_channels

    @property
    def latent_scale(self) -> float:
        """Model latents = the VAE's raw latents × this (ComfyUI's LATENT holds raw latents). The bundle records
        it (``meta['latent_scale']``); the embedded codec's latents are the model's (1); a 16-channel DiT without
        a codec is FramePack-F1 on HunyuanVideo's VAE (0.476986)."""
        if "latent_scale" in self.meta:
            return float(self.meta["latent_scale"])
        return 1.0 if self.codec is not None or self.latent_channels != 16 else HUNYUAN_VIDEO_SCALE

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame: the codec's, else the bundle's record, else HunyuanVideo's 4 for a
        16-channel DiT (FramePack-F1), else 1."""
        if self.codec is not None:
            return int(getattr(self.codec, "temporal_factor", 1))
        if "temporal_factor" in self.meta:
            return int(self.meta["temporal_factor"])
        return HUNYUAN_VIDEO_TEMPORAL if self.latent_channels == 16 else 1

    # conditioning -----------------------------------------------------------------------------
    def encode_prompt(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.text_encoder is None and self.prompt_encoder is not None:
            return self.prompt_encoder(prompts)
        if self.text_encoder is None:
            raise ValueError("this model has no text encoder: pass prompt features (e.g. ComfyUI CONDITIONING) "
                             "or, on the command line, --encoders FOLDER")
        return self.text_encoder(prompts)

    @torch.no_grad()
    def conditioning(self, prompt: str | list[str], start_latent: torch.Tensor, image_embeds: torch.Tensor | None = None) -> Conditioning:
        """Conditioning from a prompt and the start latent [B, C, 1, H, W] (or given image features).

        Always computed without gradient, so that the same inputs give bit-identical features
        wherever they are computed (PyTorch's transformer fast path differs in the last bits)."""
        emb, mask, pooled = self.encode_prompt(prompt)
        if image_embeds is None:
            if self.image_encoder is None:
                raise ValueError("this model has no image encoder: pass image features (e.g. CLIP_VISION_OUTPUT)")
            image_embeds = self.image_encoder(start_latent.to(self.device))
        b = start_latent.shape[0]
        if emb.shape[0] != b:
            emb, mask, pooled = emb.expand(b, -1, -1), mask.expand(b, -1), pooled.expand(b, -1)
        return Conditioning(emb, mask, pooled, image_embeds)

    # one DiT evaluation -----------------------------------------------------------------------
    def predict_flow(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, packed: PackedContext,
                     indices: TimeIndices, psi_tokens: torch.Tensor | None = None, psi_mask: torch.Tensor | None = None,
                     guidance: float | None = None) -> torch.Tensor:
        """The DiT's flow prediction ε − x at noise level ``sigma`` [B] (σ = 1 is noise), given the FramePack
        context, ψ and the prompt: the sampler's convention (``flow`` module docstring).

        ``x`` [B, C, W, H, Wd] is the window being denoised. The DiT's timestep σ·1000 is formed here only."""
        b = x.shape[0]
        dt = self.dtype
        g = None
        if self.dit.config.guidance_embeds:
            g = torch.full((b,), 1000.0 * (guidance if guidance is not None else 1.0), device=x.device, dtype=dt)

        def cast(v):
            return v.to(device=x.device, dtype=dt)

        kwargs = dict(
            hidden_states=cast(x), timestep=(sigma.to(x.device) * flow.DIT_TIMESTEPS).to(dt),
            encoder_hidden_states=cast(cond.prompt_embeds), encoder_attention_mask=cond.prompt_mask.to(x.device).long(),
            pooled_projections=cast(cond.pooled), image_embeds=cast(cond.image_embeds), guidance=g,
            indices_latents=indices.latents,
            latents_clean=cast(packed.clean.latents), indices_latents_clean=indices.clean,
            latents_history_2x=cast(packed.history_2x.latents), indices_latents_history_2x=indices.history_2x,
            latents_history_4x=cast(packed.history_4x.latents), indices_latents_history_4x=indices.history_4x,
            return_dict=False,
        )
        with contextlib.ExitStack() as scope:
            if self.dit.is_cache_enabled:  # step cache (speed.py): one per segment context and conditioning
                scope.enter_context(cache_scope(self.dit, packed, f"cond-{id(cond)}"))
            if self.loras:
                scope.enter_context(lora_scope(self.dit, self.loras))
            if self.injector is not None and psi_tokens is not None:
                scope.enter_context(self.injector.inject(cast(psi_tokens), self.semanticpack.log_gate, psi_mask))
            out = self.dit(**kwargs)[0]
        return out.float()

    def predict_velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning, packed: PackedContext,
                         indices: TimeIndices, psi_tokens: torch.Tensor | None = None, psi_mask: torch.Tensor | None = None,
                         guidance: float | None = None) -> torch.Tensor:
        """v_θ(x_t, t | FramePack context, ψ, prompt) in the paper's convention (x − ε, t = 1 is data; PFVG eq. 5),
        for training. ``t`` [B]."""
        out = self.predict_flow(x_t, flow.sigma_of(t), cond, packed, indices, psi_tokens, psi_mask, guidance)
        return flow.velocity_of(out)

    # building, saving, loading ----------------------------------------------------------------
    @classmethod
    def build(cls, dit: str | dict = "tiny", semanticpack: bool | dict = True, encoders: bool = True, codec_factor: int | None = 8,
              seed: int = 0, dtype=torch.float32) -> "PFVGModel":
        """A randomly initialised model of a named or given DiT config (tests, training from scratch)."""
        cfg = dit_config(dit)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            d = build_dit(cfg, seed=None, dtype=dtype)
            sp = None
            if semanticpack:
                sp = SemanticPack(SemanticPackConfig.for_dit(cfg, **(semanticpack if isinstance(semanticpack, dict) else {}))).to(dtype)
            te = ByteTextEncoder(cfg["text_embed_dim"], cfg["pooled_projection_dim"]).to(dtype) if encoders else None
            ie = LatentImageEncoder(cfg["in_channels"], cfg["image_proj_dim"]).to(dtype) if encoders else None
            codec = PatchCodec(cfg["in_channels"], codec_factor).to(dtype) if codec_factor else None
        return cls(d, sp, te, ie, codec).eval()

    def bundle_config(self) -> dict:
        from .backbone import _plain_config

        out = {"format": FORMAT, "version": 1, "dit": _plain_config(self.dit), "meta": self.meta}
        out["semanticpack"] = self.semanticpack.config.to_dict() if self.semanticpack is not None else None
        te = self.text_encoder
        out["text_encoder"] = ({"max_len": te.max_len, "layers": len(te.encoder.layers), "heads": te.encoder.layers[0].self_attn.num_heads}
                               if te is not None else None)
        out["image_encoder"] = {"patch": self.image_encoder.proj.kernel_size[0]} if self.image_encoder is not None else None
        out["codec"] = codec_config(self.codec)
        return out

    @property
    def trained_dit_keys(self) -> list[str] | None:
        """With base weights referenced (``meta['base']``, a DiT loaded from FramePack-F1 files): the DiT tensors
        that were trained (stage 2: ``norm_out.linear``, ``proj_out``); None when the whole DiT is saved."""
        base = self.meta.get("base")
        keys = base.get("trained_dit") if isinstance(base, dict) else None
        return None if keys is None else list(keys)

    def save(self, folder: str, state: dict[str, torch.Tensor] | None = None) -> None:
        """Every module as ``<name>.safetensors`` + ``pfvg.json``. A model trained on referenced base weights
        (``trained_dit_keys``) stores only the DiT tensors that trained (``dit_trained.safetensors``, MBs instead
        of the 26 GB DiT) and the reference (path, size, fingerprint) in ``pfvg.json``'s meta. ``state``: the
        whole model's weights (names as ``self.state_dict()``) to write instead of the modules' own, e.g. a
        sharded model's weights gathered by ``distributed.full_state_dict``."""
        os.makedirs(folder, exist_ok=True)
        trained = self.trained_dit_keys
        for name in ("dit", "semanticpack", "text_encoder", "image_encoder", "codec"):
            mod = getattr(self, name)
            if mod is None:
                continue
            sd = mod.state_dict() if state is None else {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            if name == "dit" and trained is not None:
                save_safetensors_atomic({k: sd[k] for k in trained}, os.path.join(folder, TRAINED_DIT_FILE))
            else:
                save_safetensors_atomic(sd, os.path.join(folder, f"{name}.safetensors"))
        write_json(os.path.join(folder, BUNDLE_FILE), self.bundle_config(), indent=1)

    def load_weights(self, folder: str) -> None:
        """Load a bundle folder's weights into this model in place (same configs; e.g. resuming training): the
        frozen base stays where and as it is, each tensor is cast to the dtype of the tensor it replaces."""
        for name in ("semanticpack", "text_encoder", "image_encoder", "codec"):
            mod, path = getattr(self, name), os.path.join(folder, f"{name}.safetensors")
            if mod is not None and os.path.isfile(path):
                load_module(path, mod, name)
        full = os.path.join(folder, "dit.safetensors")
        overlay_dit(self.dit, full if os.path.isfile(full) else os.path.join(folder, TRAINED_DIT_FILE), partial=not os.path.isfile(full))
        self.refresh_id()

    def set_gradient_checkpointing(self, on: bool = True) -> None:
        """Gradient checkpointing per DiT block (diffusers' switch) with ψ kept in the recomputation
        (``MemoryInjector.checkpoint_function``): activations of one block at a time in the backward pass."""
        if on:
            self.dit.enable_gradient_checkpointing(self.injector.checkpoint_function() if self.injector is not None else None)
        else:
            self.dit.disable_gradient_checkpointing()

    @classmethod
    def load(cls, folder: str, dtype=torch.float32, device="cpu", storage: str | torch.dtype | None = "auto",
             offload: str = "none", offload_device="cpu") -> "PFVGModel":
        """Load a bundle folder straight to ``device`` in ``dtype`` (the DiT with ``storage`` / ``offload``
        as ``backbone.load_dit``); every failure names the file and the problem."""
        dtype, dev = resolve_dtype(dtype), resolve_device(device)  # argument errors stay ValueErrors
        if offload not in OFFLOAD:
            raise ValueError(f"offload must be one of {OFFLOAD}, got {offload!r}")
        try:
            return cls._load(folder, dtype, dev, storage, offload, offload_device)
        except (TypeError, KeyError, AttributeError, ValueError) as e:  # a pfvg.json of the wrong structure
            raise CheckpointError(f"{os.path.join(folder, BUNDLE_FILE)}: invalid model config "
                                  f"({type(e).__name__}: {str(e)[:200]})") from e

    @classmethod
    def _load(cls, folder: str, dtype, dev, storage, offload, offload_device) -> "PFVGModel":
        cfg_path = os.path.join(folder, BUNDLE_FILE)
        if not os.path.isdir(folder):
            raise CheckpointError(f"{folder}: model folder not found")
        if not os.path.isfile(cfg_path):
            raise CheckpointError(f"{folder}: not a PFVG model folder (no {BUNDLE_FILE})")
        try:
            with open(cfg_path) as f:
                cfg = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{cfg_path}: unreadable model config: {e}") from e
        check_bundle_config(cfg, cfg_path)
        if cfg.get("format") != FORMAT:
            raise CheckpointError(f"{cfg_path}: format {cfg.get('format')!r}, expected {FORMAT!r}")
        try:
            dcfg = dit_config(cfg["dit"])
        except (TypeError, KeyError, AttributeError, ValueError) as e:
            raise CheckpointError(f"{cfg_path}: invalid 'dit' config ({str(e)[:200]})") from e
        meta = cfg.get("meta") or {}
        dit_file = os.path.join(folder, "dit.safetensors")
        if os.path.isfile(dit_file) or not isinstance(meta.get("base"), dict):
            d = load_dit(dit_file, config=dcfg, dtype=dtype, device=dev, storage=storage, offload=offload, offload_device=offload_device)
        else:  # trained on referenced base weights: the base, then what trained over it
            base = check_weights_reference(meta["base"], f"{cfg_path}: base weights (meta.base)")
            # trained layers go in before group offload is enabled: its hooks onload the copies taken then
            group = offload == "group"
            d = load_dit(base, config=dcfg, dtype=dtype, device=torch.device(offload_device) if group else dev, storage=storage)
            overlay_dit(d, os.path.join(folder, TRAINED_DIT_FILE), partial=True)
            if group:
                place_dit(d, dev, dtype, None, offload, offload_device)
        return cls(d, *cls.load_parts(folder, cfg, dtype, dev), cfg.get("meta")).eval()

    @staticmethod
    def load_parts(folder: str, cfg: dict, dtype, dev) -> list:
        """The bundle's small modules (SemanticPack, text / image encoders, codec; None where absent) on ``dev``."""
        dcfg = dit_config(cfg["dit"])
        sp = te = ie = codec = None
        if cfg.get("semanticpack"):
            sp = load_module(os.path.join(folder, "semanticpack.safetensors"), SemanticPack(SemanticPackConfig.from_dict(cfg["semanticpack"])).to(dtype), "SemanticPack")
        if cfg.get("text_encoder"):
            t = cfg["text_encoder"]
            te = load_module(os.path.join(folder, "text_encoder.safetensors"),
                             ByteTextEncoder(dcfg["text_embed_dim"], dcfg["pooled_projection_dim"], t["max_len"], t["layers"], t["heads"]).to(dtype), "text encoder")
        if cfg.get("image_encoder"):
            ie = load_module(os.path.join(folder, "image_encoder.safetensors"),
                             LatentImageEncoder(dcfg["in_channels"], dcfg["image_proj_dim"], cfg["image_encoder"]["patch"]).to(dtype), "image encoder")
        if cfg.get("codec"):
            codec = load_module(os.path.join(folder, "codec.safetensors"), build_codec(cfg["codec"], dcfg["in_channels"]).to(dtype), "codec")
        return [m.to(dev) if m is not None else None for m in (sp, te, ie, codec)]


TRAINED_DIT_FILE = "dit_trained.safetensors"


def overlay_dit(dit, path: str, partial: bool) -> None:
    """Load ``path`` into the DiT in place: all its tensors, or (``partial``) a subset of them (the layers a
    stage trained), each checked by name and shape and cast to the dtype of the tensor it replaces. Refused under
    diffusers' group offload, whose hooks onload the copies taken when it was enabled (overlay before placing)."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    if _is_group_offload_enabled(dit):
        raise CheckpointError(f"{path}: cannot load weights into a DiT placed with offload 'group' (its offload keeps "
                              "copies taken when it was enabled): load the model again with these weights")
    state = read_safetensors(path, "trained DiT layers" if partial else "packed DiT")
    expected = dit.state_dict()
    if partial:
        unknown = sorted(set(state) - set(expected))
        if unknown:
            raise CheckpointError(f"{path}: {len(unknown)} tensors are not in the base DiT (e.g. {unknown[:3]})")
        expected = {k: expected[k] for k in state}
    check_keys(path, {k: tuple(v.shape) for k, v in state.items()}, expected, "packed DiT")
    with torch.no_grad():
        for k, v in state.items():
            expected[k].copy_(v.to(expected[k].dtype) if v.dtype != expected[k].dtype and v.dtype.is_floating_point else v)


BUNDLE_KEYS = {"format": str, "version": int, "dit": (dict, str), "meta": (dict, type(None)), "semanticpack": (dict, type(None)),
               "text_encoder": (dict, type(None)), "image_encoder": (dict, type(None)), "codec": (dict, type(None))}


def check_bundle_config(cfg, path: str) -> None:
    """``pfvg.json`` structure: an object with the known keys of the right types and a ``dit``."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: expected a JSON object with the model configs, got a {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(BUNDLE_KEYS))
    if unknown:
        raise CheckpointError(f"{path}: unknown keys {[k[:40] for k in unknown][:5]}; known: {sorted(BUNDLE_KEYS)}")
    if "dit" not in cfg:
        raise CheckpointError(f"{path}: no 'dit' config")
    for k, v in cfg.items():
        if not isinstance(v, BUNDLE_KEYS[k]) or isinstance(v, bool):
            raise CheckpointError(f"{path}: '{k}' has the wrong type ({type(v).__name__})")


# The embedded default's sampler when its bundle names none: the fewest UniPC steps whose video is within
# the benchmark's tolerance of 12 Euler steps (``python -m bench steps``: UniPC 9 steps, error to
# a 48-step reference 1.21 vs Euler-12's 1.33 (pixel MAE), 0.66× the sampling time, 2-core CPU).
EMBEDDED_SAMPLING = {"sampler": "unipc", "steps": 9}


def embedded_resolution() -> tuple[int, int]:
    """(W, H) the embedded default was trained at (its bundle's ``meta.resolution``), read without loading it."""
    try:
        with open(os.path.join(EMBEDDED_DIR, "pfvg.json")) as f:
            return tuple(json.load(f).get("meta", {}).get("resolution", (64, 64)))
    except (OSError, ValueError):
        return (64, 64)


def load_embedded_model(dtype=torch.float32, device="cpu") -> PFVGModel:
    """The embedded default model shipped in ``pfvg_core/assets/default``; its ``sampling_defaults`` are
    ``EMBEDDED_SAMPLING`` unless the bundle's meta names a sampler."""
    model = PFVGModel.load(EMBEDDED_DIR, dtype=dtype, device=device)
    if "sampler" not in model.meta:
        model.sampling_defaults = dict(EMBEDDED_SAMPLING)
    return model


def resolve_model(spec: str, dtype=torch.float32, device="cpu", storage: str | torch.dtype | None = "auto",
                  offload: str = "none") -> PFVGModel:
    """``default`` (the embedded default model), ``random:<config>`` (randomly initialised) or a PFVG model folder,
    on ``device`` (``auto``: CUDA when available) in compute ``dtype``."""
    if spec == "default":
        return load_embedded_model(dtype, device)
    if spec.startswith("random:"):
        from .backbone import place_dit, resolve_storage

        model = PFVGModel.build(spec.split(":", 1)[1], seed=0, dtype=resolve_dtype(dtype))
        dev = resolve_device(device)
        place_dit(model.dit, dev, resolve_dtype(dtype), resolve_storage(storage), offload)
        for m in (model.semanticpack, model.text_encoder, model.image_encoder, model.codec):
            if m is not None:
                m.to(dev)
        return model
    return PFVGModel.load(spec, dtype=dtype, device=device, storage=storage, offload=offload)


def wrap_dit(path: str, source: str, dtype: torch.dtype = torch.float32, device="cpu", storage="auto",
             offload: str = "none", offload_device="cpu") -> PFVGModel:
    """A FramePack-F1 DiT (diffusers folder or single file) with a fresh SemanticPack (gate closed:
    exactly FramePack-F1 until SemanticPack weights are loaded or trained). The bundle records what plain
    F1 weights expect: HunyuanVideo's latent scale and temporal factor, F1's per-segment RoPE layout."""

    dit = load_dit(path, dtype=dtype, device=device, storage=storage, offload=offload, offload_device=offload_device)
    sp = SemanticPack(SemanticPackConfig.for_dit(dict(dit.config))).to(execution_device(dit), dtype)
    meta = {"source": source, "rope": "local", "base": weights_reference(path)}
    if dit.config.in_channels == 16:  # HunyuanVideo's VAE latents
        meta.update(latent_scale=HUNYUAN_VIDEO_SCALE, temporal_factor=HUNYUAN_VIDEO_TEMPORAL, latent_format="hunyuan_video")
    return PFVGModel(dit, sp, meta=meta)


def load_model_path(path: str, source: str, dtype: torch.dtype = torch.float32, semanticpack: str | None = None,
                    device="cpu", storage="auto", offload: str = "none", offload_device="cpu") -> PFVGModel:
    """A PFVG bundle folder, or a FramePack-F1 DiT (diffusers folder or .safetensors file, wrapped with a
    fresh SemanticPack); ``semanticpack``: a .safetensors file of SemanticPack weights loaded over it.
    ``device``, ``storage`` (fp8), ``offload`` (group) to ``offload_device``: ``backbone.load_dit``."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, BUNDLE_FILE)):
        model = PFVGModel.load(path, dtype=dtype, device=device, storage=storage, offload=offload, offload_device=offload_device)
    else:
        model = wrap_dit(path, source, dtype, device, storage, offload, offload_device)
    return with_semanticpack(model, semanticpack, source) if semanticpack else model.eval()


def with_semanticpack(model: PFVGModel, path: str, source: str) -> PFVGModel:
    """``model`` with the SemanticPack weights of ``path`` loaded (in place)."""
    from .checkpoint import load_module

    if model.semanticpack is None:
        raise ValueError(f"model {source} has no SemanticPack to load {os.path.basename(path)} into")
    load_module(path, model.semanticpack, "SemanticPack")
    model.refresh_id()
    return model.eval()
