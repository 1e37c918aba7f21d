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

LoRAs run as a side branch on the layer output (forward hooks, not merged into the weights): any
strength, several chained (their updates add), removable, and they work with fp8 storage and group
offload. peft is not needed. Safetensors only.
"""
from __future__ import annotations

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


class LoraHandle:
    """Applied LoRAs; ``remove()`` takes them off again (the DiT is then exactly as before)."""

    def __init__(self, model, hooks, tag):
        self.model, self.hooks, self.tag = model, hooks, tag

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []
        tags = getattr(self.model, "id_tags", None)
        if tags is not None and self.tag in tags:
            tags.remove(self.tag)
            self.model.refresh_id()


def _hook(layer: LoraLayer, strength: float, device, dtype):
    down, up = layer.down.to(device, dtype), (layer.up * strength).to(device, dtype)
    bias = None if layer.bias is None else (layer.bias * strength).to(device, dtype)

    def hook(module, args, out):
        x = args[0]
        return out + F.linear(F.linear(x.to(dtype), down), up, bias).to(out.dtype)

    return hook


def apply_loras(model, loras: list[tuple[Lora, float]]) -> LoraHandle:
    """Add ``strength``·ΔW of each LoRA to the DiT's layers (a ``PFVGModel`` or a bare DiT). Strength 0
    adds nothing; chained LoRAs add up. On a ``PFVGModel`` the model id changes with the LoRAs and
    strengths (memory states made without them are refused)."""
    dit = getattr(model, "dit", model)
    dev, dt = execution_device(dit), compute_dtype(dit)
    linears = _linear_names(dit)
    hooks = []
    for lora, strength in loras:
        if not isinstance(lora, Lora):
            raise TypeError(f"expected a Lora, got {type(lora).__name__}")
        if strength == 0:
            continue
        for name, layer in lora.layers.items():
            if name not in linears:
                raise CheckpointError(f"LoRA {lora.name}: layer {name} is not in this DiT")
            hooks.append(linears[name].register_forward_hook(_hook(layer, float(strength), dev, dt)))
    tag = "lora:" + ",".join(f"{lora.digest}@{float(s):g}" for lora, s in loras if s != 0)
    if hooks and hasattr(model, "id_tags"):
        model.id_tags.append(tag)
        model.refresh_id()
    return LoraHandle(model, hooks, tag)
