"""Where a training run's model lives and in which dtypes: loading what ``TrainConfig.model`` names (FramePack-F1 as
published, a bundle, the embedded default) with the plan's frozen-base storage and block offload, trainable
layers in fp32, the dataset's latent format checked against the model, and the writer of the trained bundle.
The loop that uses them is ``train.py``."""
from __future__ import annotations

import dataclasses
import json
import os
import warnings

import torch

from .backbone import resolve_dtype
from .data import LatentDataset
from .model import PFVGModel, resolve_model
from .train_config import FULL_SIZE_PARAMS, TrainConfig


def save_model(model: PFVGModel, folder: str, state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the trained model's bundle: the one writer of the single-process run's final model and of the
    distributed run's consolidated export (``state``: the weights ``distributed.full_state_dict`` gathered)."""
    model.save(folder, state)


def load_training_model(cfg: TrainConfig, device: torch.device) -> PFVGModel:
    """The model ``cfg.model`` names: ``random:<config>``, ``default``, a PFVG bundle folder, or FramePack-F1 as
    published (a diffusers transformer folder or one ``.safetensors`` file, fp8 files included: wrapped with a
    fresh SemanticPack and a reference to the base weights, so that only what trains is saved). Frozen weights
    in ``base_dtype`` (auto: bf16 for a full-size DiT) with ``base_storage`` / ``offload``."""
    from .backbone import resolve_storage
    from .checkpoint import safetensors_dtypes
    from .model import BUNDLE_FILE
    from .model import load_model_path

    spec = cfg.model
    if spec == "default" or spec.startswith("random:"):
        return resolve_model(spec).to(device)
    if not os.path.exists(spec):
        raise FileNotFoundError(f"training option model: {spec} not found (a PFVG model folder, a FramePack-F1 diffusers "
                                "folder or .safetensors file, or random:<config>)")
    files = [spec] if os.path.isfile(spec) else [os.path.join(spec, f) for f in os.listdir(spec) if f.endswith(".safetensors")]
    if os.path.isfile(os.path.join(spec, BUNDLE_FILE)) and not os.path.isfile(os.path.join(spec, "dit.safetensors")):
        with open(os.path.join(spec, BUNDLE_FILE)) as f:
            base = (json.load(f).get("meta") or {}).get("base") or {}
        from .checkpoint import _weight_files

        files = _weight_files(base["path"]) if os.path.exists(base.get("path", "")) else files
    n = 0
    for f in files:
        if f.endswith(".safetensors") and os.path.isfile(f) and not f.endswith(("semanticpack.safetensors", "codec.safetensors")):
            for _, shape in safetensors_dtypes(f).values():
                n += int(torch.tensor(shape).prod()) if shape else 1
    dtype = cfg.base_dtype if cfg.base_dtype != "auto" else ("bfloat16" if n >= FULL_SIZE_PARAMS else "float32")
    storage = cfg.base_storage if resolve_storage(cfg.base_storage) is not None else "compute"
    if cfg.offload == "group":  # frozen blocks rest on the CPU, each on the GPU only while it runs (offload.py)
        return with_block_offload(load_model_path(spec, os.path.basename(spec.rstrip("/")), resolve_dtype(dtype), device="cpu",
                                                  storage=storage), device)
    return load_model_path(spec, os.path.basename(spec.rstrip("/")), resolve_dtype(dtype), device=device, storage=storage).to(device)


def with_block_offload(model: PFVGModel, device: torch.device) -> PFVGModel:
    """``model`` (on the CPU) with its DiT's blocks offloaded for training (``offload.BlockOffload``) and the rest on
    ``device``: the 24 GB plan's block offload that also works under backward with gradient checkpointing."""
    from .offload import BlockOffload

    BlockOffload(model.dit, device)
    for m in (model.semanticpack, model.text_encoder, model.image_encoder, model.codec):
        if m is not None:
            m.to(device)
    return model


def trainable_in_fp32(model: PFVGModel, params: list[torch.nn.Parameter]) -> None:
    """Trainable weights in fp32 (master weights; bf16 autocast computes), frozen ones as loaded (bf16 / fp8).
    A trainable layer under fp8 layerwise casting is taken out of it (diffusers' hook would store it back in fp8)."""
    chosen = {id(p) for p in params}
    for mod in model.modules():
        own = list(mod.parameters(recurse=False))
        if not any(id(p) in chosen for p in own):
            continue
        reg = getattr(mod, "_diffusers_hook", None)
        hook = reg.get_hook("layerwise_casting") if reg is not None else None
        if hook is not None:  # (diffusers cannot remove it) make its casts no-ops: the layer stays fp32
            hook.storage_dtype = hook.compute_dtype = torch.float32
        for p in own:
            if id(p) in chosen and p.dtype != torch.float32:
                p.data = p.data.float()


def _skip_whole_net_stages(cfg: TrainConfig, full_size: bool, world: int) -> TrainConfig:
    """PFVG §4.1 stage 1 trains the whole net: for a full-size DiT (12.9 B parameters; AdamW's state alone
    ≈ 206 GB) in one process it cannot fit one GPU, so with ``whole_net_stages = 'auto'`` such stages are
    skipped, with a message saying why; several GPUs run them under torchrun (docs/training.md)."""
    if not full_size or world > 1 or cfg.whole_net_stages != "auto":
        return cfg
    whole = [s for s in cfg.stages if {"all", "dit"} & {g.strip() for g in s.params.split("+")}]
    if not whole:
        return cfg
    kept = [s for s in cfg.stages if s not in whole]
    msg = (f"stage(s) {', '.join(repr(s.name) for s in whole)} train the whole DiT: at full size that needs ≈ 206 GB of "
           "optimizer state alone, more than one GPU holds, so they are skipped in a single process (run them on several "
           "GPUs under torchrun, or set whole_net_stages = 'on')")
    if not kept:
        raise ValueError(msg.replace("so they are skipped", "and no other stage is left") )
    warnings.warn(msg, stacklevel=3)
    print(f"note: {msg}", flush=True)
    return dataclasses.replace(cfg, stages=kept)


def _check_dataset_fits(model: PFVGModel, data: LatentDataset) -> None:
    """A cached F1 dataset's latent scale / temporal factor must be the model's (recorded on the model when it
    has none, e.g. a tiny test DiT)."""
    meta = data.meta(0) if len(data) else {}
    if "latent_scale" not in meta:
        return
    for key, have in (("latent_scale", model.meta.get("latent_scale")), ("temporal_factor", model.meta.get("temporal_factor"))):
        want = meta.get(key)
        if want is None:
            continue
        if have is None:
            model.meta[key] = want
        elif abs(float(have) - float(want)) > 1e-6:
            raise ValueError(f"dataset {data.folder}: {key} {want} differs from the model's {have} (encoded with another VAE?)")
    if meta.get("fps"):  # generation then runs at the rate the model was trained at
        model.meta.setdefault("fps", float(meta["fps"]))
