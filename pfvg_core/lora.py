"""LoRA for the packed DiT: HunyuanVideo / FramePack LoRAs as people publish them.

A LoRA adds a low-rank update to a linear layer: y = W·x + s·(α/r)·B·A·x (Hu et al. 2021), with A
[r, in] ("lora_A" / "lora_down"), B [out, r] ("lora_B" / "lora_up"), α the stored alpha (default r)
and s the strength. Key layouts read:

- diffusers / PEFT names of this DiT: ``transformer.transformer_blocks.0.attn.to_q.lora_A.weight``
  (``transformer.`` / ``base_model.model.`` prefixes optional);
- kohya / musubi-tuner (FramePack LoRAs): ``lora_unet_transformer_blocks_0_attn_to_q.lora_down.weight``
  + ``….alpha``;
- the original HunyuanVideo names used by ComfyUI and musubi's HunyuanVideo LoRAs
  (``diffusion_model.double_blocks.0.img_attn_qkv.lora_A.weight``,
  ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight``): converted to diffusers names with
  diffusers' own ``_convert_hunyuan_video_lora_to_diffusers`` (fused qkv / linear1 split into q, k, v
  (, mlp)); the single blocks' ``linear1`` is split here with this DiT's width (diffusers assumes 3072).

LoRAs run as a side branch on the layer output (forward hooks active only while a model made by
``with_loras`` evaluates its DiT; not merged into the weights): any strength, several chained (their
updates add), the base model unchanged, and they work with fp8 storage and group offload. peft is not
needed. Safetensors only.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .backbone import compute_dtype, execution_device
from .checkpoint import CheckpointError, read_safetensors

# the original HunyuanVideo block layers (Tencent's MMDoubleStreamBlock / MMSingleStreamBlock names)
_DOUBLE = ("img_mod.linear", "img_attn_qkv", "img_attn_proj", "img_mlp.fc1", "img_mlp.fc2",
           "txt_mod.linear", "txt_attn_qkv", "txt_attn_proj", "txt_mlp.fc1", "txt_mlp.fc2")
_SINGLE = ("linear1", "linear2", "modulation.linear")
_UNSUPPORTED = ("dora_scale", "hada_", "lokr_", ".diff", "diff_b", ".oft_")


@dataclass(frozen=True)
class LoraLayer:
    down: torch.Tensor  # A [r, in]
    up: torch.Tensor  # B·(α/r) [out, r]
    bias: torch.Tensor | None = None  # lora_B.bias [out], rare

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·B·A [out, in] at strength 1."""
        return self.up.float() @ self.down.float()


@dataclass(frozen=True)
class Lora:
    name: str
    layers: dict[str, LoraLayer]  # DiT module name → update
    layout: str  # "diffusers", "kohya", "hunyuan-original"
    digest: str  # sha256 of the tensors (part of the model id while applied)


def parse_lora_arg(text: str) -> tuple[str, float]:
    """``FILE`` or ``FILE:STRENGTH`` (the CLI's ``--lora``)."""
    path, strength = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            strength = float(tail)
            path = head
        except ValueError:
            pass
    if strength != strength or abs(strength) > 100:
        raise ValueError(f"--lora {text}: strength must be a finite number in [-100, 100]")
    return path, strength


def load_lora(path: str, dit: torch.nn.Module) -> Lora:
    """Read a LoRA ``.safetensors`` file and match it to ``dit``'s linear layers (errors name the file)."""
    if os.path.splitext(path)[1].lower() != ".safetensors":
        raise ValueError(f"LoRA {path}: expected a .safetensors file (pickled .pt/.ckpt files are not read)")
    sd = read_safetensors(path, "LoRA")
    try:
        return convert_lora(sd, dit, os.path.basename(path))
    except CheckpointError as e:
        raise CheckpointError(f"LoRA {path}: {e}") from e


def _linear_names(dit: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    return {n: m for n, m in dit.named_modules() if isinstance(m, torch.nn.Linear)}


def _kohya_names(dit: torch.nn.Module) -> dict[str, str]:
    """kohya's flattened names (``.`` → ``_``) → dotted names, for this DiT's layers and the original
    HunyuanVideo layers of the same depth."""
    out = {n.replace(".", "_"): n for n in _linear_names(dit)}
    cfg = dit.config
    for i in range(cfg.num_layers):
        for t in _DOUBLE:
            out[f"double_blocks_{i}_{t}".replace(".", "_")] = f"double_blocks.{i}.{t}"
    for i in range(cfg.num_single_layers):
        for t in _SINGLE:
            out[f"single_blocks_{i}_{t}".replace(".", "_")] = f"single_blocks.{i}.{t}"
    return out


_SUFFIX = re.compile(r"^(.*)\.(lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.(weight|bias)$")


def convert_lora(sd: dict[str, torch.Tensor], dit: torch.nn.Module, name: str = "lora") -> Lora:
    """A LoRA state dict in any layout above → per-layer updates of ``dit`` (α/r folded into B)."""
    bad = sorted(k for k in sd if any(u in k for u in _UNSUPPORTED))
    if bad:
        raise CheckpointError(f"{len(bad)} keys of a LoRA variant that is not read (DoRA, LoHa, LoKr, full diffs), "
                              f"e.g. {bad[0]!r}; only plain LoRA (A/B or down/up, alpha) is supported")
    kohya = _kohya_names(dit)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    layout = "diffusers"
    unknown = []
    for k, v in sd.items():
        if k.endswith(".alpha"):
            mod, part = k[: -len(".alpha")], "alpha"
        else:
            m = _SUFFIX.match(k)
            if not m:
                unknown.append(k)
                continue
            mod, part = m.group(1), {"lora_down": "A", "lora_A": "A", "lora_up": "B", "lora_B": "B"}[m.group(2)]
            part += ".bias" if m.group(3) == "bias" else ""
        for prefix in ("base_model.model.", "transformer.", "diffusion_model.", "model.diffusion_model."):
            if mod.startswith(prefix):
                mod = mod[len(prefix):]
        if mod.startswith("lora_unet_"):
            flat = mod[len("lora_unet_"):]
            if flat not in kohya:
                unknown.append(k)
                continue
            mod, layout = kohya[flat], "kohya"
        groups.setdefault(mod, {})[part] = v
    if unknown:
        raise CheckpointError(f"{len(unknown)} keys are not LoRA weights of this DiT, e.g. {sorted(unknown)[:3]} "
                              "(expected …lora_A/lora_B or …lora_down/lora_up, diffusers, kohya/musubi or HunyuanVideo names)")
    # fold α/r into B, then hand the original HunyuanVideo names to diffusers' converter
    flat: dict[str, torch.Tensor] = {}
    for mod, parts in groups.items():
        if "A" not in parts or "B" not in parts:
            raise CheckpointError(f"layer {mod}: needs both the down (A) and the up (B) matrix, found {sorted(parts)}")
        a, b = parts["A"].float(), parts["B"].float()
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"layer {mod}: A {tuple(a.shape)} and B {tuple(b.shape)} are not a rank-r pair "
                                  "([r, in] and [out, r]; conv LoRAs are not read)")
        alpha = float(parts["alpha"]) if "alpha" in parts else float(a.shape[0])
        flat[f"{mod}.lora_A.weight"] = a
        flat[f"{mod}.lora_B.weight"] = b * (alpha / a.shape[0])
        if "B.bias" in parts:
            flat[f"{mod}.lora_B.bias"] = parts["B.bias"].float()
    original = any(k.startswith(("double_blocks.", "single_blocks.", "final_layer.", "txt_in.", "img_in."))
                   for k in flat)
    if original:
        layout = "hunyuan-original"
        flat = _from_original(flat, dit)
    layers = _match(flat, dit)
    h = hashlib.sha256()
    for k in sorted(layers):
        h.update(k.encode())
        for t in (layers[k].down, layers[k].up):
            h.update(t.contiguous().numpy().tobytes())
    return Lora(name, layers, layout, h.hexdigest()[:16])


def _from_original(flat: dict[str, torch.Tensor], dit) -> dict[str, torch.Tensor]:
    """Original HunyuanVideo names → diffusers names (diffusers' converter; linear1 split here)."""
    from diffusers.loaders.lora_conversion_utils import _convert_hunyuan_video_lora_to_diffusers

    hidden = dit.config.num_attention_heads * dit.config.attention_head_dim
    out, rest = {}, {}
    for k, v in flat.items():
        m = re.match(r"^single_blocks\.(\d+)\.linear1\.lora_(A|B)\.(weight|bias)$", k)
        if not m:
            rest[k] = v
            continue
        base = f"single_transformer_blocks.{m.group(1)}"
        names = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
        if m.group(2) == "A":  # shared down matrix
            parts = [v] * 4
        else:
            if v.shape[0] <= 3 * hidden:
                raise CheckpointError(f"{k}: {v.shape[0]} rows, expected q, k, v ({hidden} each) and the MLP")
            parts = torch.split(v, (hidden, hidden, hidden, v.shape[0] - 3 * hidden), dim=0)
        for n, p in zip(names, parts):
            out[f"{base}.{n}.lora_{m.group(2)}.{m.group(3)}"] = p
    conv = _convert_hunyuan_video_lora_to_diffusers(rest)
    out.update({k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in conv.items()})
    return out


def _match(flat: dict[str, torch.Tensor], dit) -> dict[str, LoraLayer]:
    linears = _linear_names(dit)
    mods = sorted({k.rsplit(".lora_", 1)[0] for k in flat})
    missing = [m for m in mods if m not in linears]
    if missing:
        raise CheckpointError(f"{len(missing)} of {len(mods)} LoRA layers match no linear layer of this DiT, e.g. "
                              f"{missing[:3]} (a LoRA for another model or a deeper DiT?)")
    layers = {}
    for m in mods:
        a, b = flat[f"{m}.lora_A.weight"], flat[f"{m}.lora_B.weight"]
        w = linears[m].weight
        if a.shape[1] != w.shape[1] or b.shape[0] != w.shape[0]:
            raise CheckpointError(f"layer {m}: LoRA update {b.shape[0]}×{a.shape[1]} does not fit the weight "
                                  f"{w.shape[0]}×{w.shape[1]}")
        layers[m] = LoraLayer(a.contiguous(), b.contiguous(), flat.get(f"{m}.lora_B.bias"))
    if not layers:
        raise CheckpointError("no LoRA layers found")
    return layers


def _install(dit: torch.nn.Module, names) -> None:
    """One forward hook per named linear layer (once per DiT): it adds the updates active on the DiT
    (``dit._pfvg_lora_active``: layer name → [(LoraLayer, strength)]), nothing when none is."""
    installed = dit.__dict__.setdefault("_pfvg_lora_hooked", set())
    linears = _linear_names(dit)
    for name in names:
        if name in installed:
            continue
        if name not in linears:
            raise CheckpointError(f"LoRA layer {name} is not in this DiT")

        def hook(module, args, out, name=name):
            active = dit.__dict__.get("_pfvg_lora_active")
            if not active or name not in active:
                return out
            x = args[0]
            for down, up, bias in active[name]:
                out = out + F.linear(F.linear(x.to(down.dtype), down), up, bias).to(out.dtype)
            return out

        linears[name].register_forward_hook(hook)
        installed.add(name)


def _prepared(dit, loras: tuple) -> dict:
    """layer name → [(A, s·B, s·bias)] on the DiT's execution device and compute dtype (cached per LoRA set)."""
    cache = dit.__dict__.setdefault("_pfvg_lora_prepared", {})
    dev, dt = execution_device(dit), compute_dtype(dit)  # where the DiT computes now (ComfyUI moves it between runs)
    key = (str(dev), dt) + tuple((lora.digest, float(s)) for lora, s in loras)
    if key not in cache:
        active: dict[str, list] = {}
        for lora, s in loras:
            for name, layer in lora.layers.items():
                bias = None if layer.bias is None else (layer.bias * s).to(dev, dt)
                active.setdefault(name, []).append((layer.down.to(dev, dt), (layer.up * s).to(dev, dt), bias))
        cache.clear()  # one LoRA set kept: switching sets costs a copy of the small matrices
        cache[key] = active
    return cache[key]


@contextlib.contextmanager
def lora_scope(dit: torch.nn.Module, loras: tuple):
    """Run the DiT with ``loras`` ((Lora, strength), …) added; the DiT is unchanged outside the block."""
    if not loras:
        yield
        return
    _install(dit, {n for lora, _ in loras for n in lora.layers})
    prev = dit.__dict__.get("_pfvg_lora_active")
    dit.__dict__["_pfvg_lora_active"] = _prepared(dit, loras)
    try:
        yield
    finally:
        dit.__dict__["_pfvg_lora_active"] = prev


def with_loras(model, loras) -> object:
    """A model that shares every module and weight with ``model`` and runs its DiT with ``loras``
    ([(Lora, strength)], added to those it already has): ``strength``·ΔW per LoRA, strength 0 adds
    nothing, chained LoRAs add up. ``model`` itself is unchanged (ComfyUI shares a loader's output
    between branches). The new model's id includes the LoRAs, so memory states made without them are refused."""
    for lora, strength in loras:
        if not isinstance(lora, Lora):
            raise TypeError(f"expected a Lora, got {type(lora).__name__}")
        if not isinstance(strength, (int, float)) or strength != strength:
            raise ValueError(f"LoRA {lora.name}: strength must be a number, got {strength!r}")
    active = tuple((lora, float(s)) for lora, s in loras if s != 0)
    if not active:
        return model
    _install(model.dit, {n for lora, _ in active for n in lora.layers})
    view = copy.copy(model)  # shares modules (ComfyUI never mutates a model: only attributes below are new)
    view.loras = tuple(getattr(model, "loras", ())) + active
    view.id_tags = list(model.id_tags) + ["lora:" + ",".join(f"{lora.digest}@{s:g}" for lora, s in active)]
    view.meta = dict(model.meta)
    view.sampling_defaults = dict(model.sampling_defaults)
    view.refresh_id()
    return view
