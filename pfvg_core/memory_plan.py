"""GPU memory of each setting, computed from the architecture (not measured): the full-size packed DiT is built on
the ``meta`` device (no weights, no memory), each setting's storage rules are applied with diffusers' own calls, and
activations are traced at the setting's token count.

- **weights**: bytes per dtype after ``enable_layerwise_casting`` (fp8 storage keeps diffusers' skipped modules — every
  ``norm``, the embedders, ``proj_out`` — in the compute dtype), SemanticPack beside them;
- **inference working set**: the peak of live intermediate tensors during one DiT forward of a segment (its packed
  context, ψ and the prompt included), tracked op by op (``LiveBytes``);
- **training**: trainable state (fp32 weight + gradient + AdamW's two moments = 16 B per trained parameter), the
  tensors autograd keeps for backward over the whole DiT (with per-block checkpointing: each block's inputs), and the
  recomputation of the largest block in backward (everything it keeps, as without checkpointing);
- **block offload** (the ``24gb`` plan): the DiT's weights outside the transformer blocks plus its two largest blocks.

Run ``python -m pfvg_core.memory_plan`` to print ``docs/memory.md``; a test checks the page is what this computes.
CUDA's context and the allocator's slack (≈ 1–3 GB) come on top of every figure.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

GiB = 2**30


@dataclass(frozen=True)
class Size:
    """A segment's shape: pixels, latent frames of the window, prompt and image tokens (FramePack-F1 at 640×480:
    9 latent frames, LLaMA prompt ≤ 256 tokens, SigLIP 27×27 = 729 image tokens)."""

    width: int = 640
    height: int = 480
    window: int = 9
    prompt_tokens: int = 256
    image_tokens: int = 729
    history: int = 19  # latent frames already made (the packed context is full from here on)


class LiveBytes(TorchDispatchMode):
    """Bytes of tensors made inside the mode that are still alive, and their peak (storages counted once)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        key = s._cdata
        if key in self._seen:
            return
        self._seen.add(key)
        n = s.nbytes()
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(t, self._free, key, n)

    def _free(self, key: int, n: int) -> None:
        if key in self._seen:
            self._seen.discard(key)
            self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


class _FusedAttention(torch.autograd.Function):
    """What a fused attention kernel (flash, cuDNN, memory-efficient: torch's SDPA picks one on a GPU) holds: the output,
    and for backward q, k, v, the output and the softmax's log-sum-exp — never the N × N weights. (On the meta device
    SDPA takes its math path, which materialises them.)"""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty(q.shape[:-1] + v.shape[-1:])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class _FullSlices(TorchFunctionMode):
    """Tracing on the meta device: a slice bound read from a tensor (diffusers cuts the prompt at its mask's length) has
    no value, so take the whole axis (every prompt token valid, the largest case); attention as a fused kernel."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.scaled_dot_product_attention:
            kwargs = kwargs or {}
            qkv = list(args[:3]) + [kwargs[k] for k in ("query", "key", "value")[len(args[:3]):]]
            return _FusedAttention.apply(*qkv)
        if getattr(func, "__name__", "") == "__getitem__" and len(args) == 2:
            index = args[1]

            def one(i):
                if isinstance(i, slice) and any(isinstance(b, torch.Tensor) and b.is_meta for b in (i.start, i.stop, i.step)):
                    return slice(*(None if isinstance(b, torch.Tensor) and b.is_meta else b for b in (i.start, i.stop, i.step)))
                return i
            args = (args[0], tuple(one(i) for i in index) if isinstance(index, tuple) else one(index))
        return func(*args, **(kwargs or {}))


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for backward while ``fn()`` runs."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s._cdata] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def weight_bytes(module: torch.nn.Module) -> dict[str, int]:
    """Bytes of ``module``'s parameters and buffers per dtype name."""
    out: dict[str, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        name = str(t.dtype).replace("torch.", "")
        out[name] = out.get(name, 0) + t.numel() * t.element_size()
    return out


def full_size_model(config: str = "hunyuan-f1", dtype=torch.bfloat16, storage: torch.dtype | None = None):
    """The PFVG model of ``config`` on the meta device (SemanticPack in ``dtype`` beside the DiT), with fp8 ``storage``
    as ``backbone.place_dit`` applies it."""
    from .backbone import DiT, dit_config
    from .model import PFVGModel
    from .semanticpack import SemanticPack, SemanticPackConfig

    cfg = dit_config(config)
    with torch.device("meta"):
        dit = DiT.from_config(cfg)
        torch.nn.Module.to(dit, dtype)
        sp = SemanticPack(SemanticPackConfig.for_dit(dict(dit.config))).to(dtype)
    if storage is not None:
        dit.enable_layerwise_casting(storage_dtype=storage, compute_dtype=dtype)
    dit._pfvg_compute_dtype = dtype
    # an open, trained gate (g ≠ 1: the gated attention path), held on the host so that its value can be read
    sp.log_gate = torch.nn.Parameter(torch.tensor(-0.04, dtype=dtype))
    return PFVGModel(dit, sp, meta={"rope": "local"})


def _segment(model, size: Size):
    """Inputs of one segment's DiT forward on the meta device: window, packed context, RoPE indices, ψ, prompt."""
    from .framepack import pack_history
    from .model import Conditioning
    from .rope import time_indices
    from .state import History, MemoryConfig

    c = model.latent_channels
    h, w = size.height // 8, size.width // 8
    meta = torch.device("meta")
    dt = model.dtype
    cond = Conditioning(torch.zeros(1, size.prompt_tokens, model.dit.config.text_embed_dim, device=meta, dtype=dt),
                        torch.ones(1, size.prompt_tokens, dtype=torch.bool),
                        torch.zeros(1, model.dit.config.pooled_projection_dim, device=meta, dtype=dt),
                        torch.zeros(1, size.image_tokens, model.dit.config.image_proj_dim, device=meta, dtype=dt))
    cfg = MemoryConfig(window=size.window, rope="local")
    history = History(torch.zeros(1, c, size.history, h, w, device=meta, dtype=dt), torch.arange(size.history))
    start = torch.zeros(1, c, 1, h, w, device=meta, dtype=dt)
    packed = pack_history(history, start, cfg.schedule)
    idx = time_indices(cfg.rope, packed, size.history, cfg.window)
    sp = model.semanticpack
    psi = torch.zeros(1, sp.config.memory_tokens, sp.config.dim, device=meta, dtype=dt)
    psi_tokens = sp.context_tokens(psi)
    x = torch.zeros(1, c, size.window, h, w, device=meta, dtype=dt)
    return x, cond, packed, idx, psi_tokens


def _forward(model, inputs):
    x, cond, packed, idx, psi_tokens = inputs
    sigma = torch.full((1,), 0.5, device=x.device)
    with _FullSlices():
        return model.predict_flow(x, sigma, cond, packed, idx, psi_tokens, None, 10.0)


def inference_working_set(model, size: Size) -> int:
    """Peak bytes of the intermediate tensors of one DiT forward (inputs and weights not counted)."""
    inputs = _segment(model, size)
    with torch.no_grad(), LiveBytes() as live:
        _forward(model, inputs)
    return live.peak


def training_activations(model, size: Size, checkpointing: bool) -> tuple[int, int]:
    """(bytes kept for backward over the whole DiT, bytes one block keeps when recomputed in backward), stage 2
    (output layers + SemanticPack trained, the rest frozen)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for mod in (model.dit.norm_out, model.dit.proj_out, model.semanticpack):
        for p in mod.parameters():
            p.requires_grad_(True)
    inputs = _segment(model, size)
    model.set_gradient_checkpointing(checkpointing)
    kept = saved_bytes(lambda: _forward(model, inputs))
    model.set_gradient_checkpointing(False)
    per_block = 0
    if checkpointing:
        # one dual-stream block without checkpointing: what its recomputation keeps (the largest kind of block)
        block = model.dit.transformer_blocks[0]
        captured = {}

        def grab(mod, args, kwargs):
            captured["args"], captured["kwargs"] = args, kwargs

        h = block.register_forward_pre_hook(grab, with_kwargs=True)
        with torch.no_grad():
            _forward(model, inputs)
        h.remove()
        args = [a.detach().requires_grad_(a.is_floating_point()) if torch.is_tensor(a) else a for a in captured["args"]]
        kwargs = {k: (v.detach().requires_grad_(v.is_floating_point()) if torch.is_tensor(v) else v)
                  for k, v in captured["kwargs"].items()}
        with _FullSlices():
            per_block = saved_bytes(lambda: block(*args, **kwargs))
    return kept, per_block


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def block_bytes(dit) -> list[int]:
    return [sum(t.numel() * t.element_size() for t in b.parameters()) for b in
            list(dit.transformer_blocks) + list(dit.single_transformer_blocks)]


def inference_rows(size: Size = Size(), config: str = "hunyuan-f1") -> list[dict]:
    """Load Packed DiT settings → weights on the card, working set, total (bytes)."""
    rows = []
    for label, storage, offload in (("dtype bf16", None, False), ("dtype bf16, storage fp8_e4m3fn", torch.float8_e4m3fn, False),
                                    ("dtype bf16, storage fp8_e4m3fn, offload group", torch.float8_e4m3fn, True)):
        model = full_size_model(config, torch.bfloat16, storage)
        wb = weight_bytes(model.dit)
        sp = sum(weight_bytes(model.semanticpack).values())
        on_card = sum(wb.values()) + sp
        if offload:  # group offload, block level: one block at a time, plus everything outside the blocks
            blocks = block_bytes(model.dit)
            on_card = sum(wb.values()) - sum(blocks) + max(blocks) * 2 + sp  # the block running and the next
        work = inference_working_set(model, size)
        rows.append(dict(setting=label, weights=wb, semanticpack=sp, weights_on_card=on_card, working_set=work,
                         total=on_card + work))
    return rows


def training_rows(size: Size = Size(), config: str = "hunyuan-f1") -> list[dict]:
    """Stage-2 memory plans (``train.PLANS``) → frozen weights on the card, trainable state, activations, total (bytes)."""
    rows = []
    for label, storage, ckpt, offload in (("bf16, no checkpointing", None, False, False),
                                          ("80gb: bf16 + checkpointing", None, True, False),
                                          ("fp8 storage + checkpointing", torch.float8_e4m3fn, True, False),
                                          ("24gb: fp8 + checkpointing + block offload", torch.float8_e4m3fn, True, True)):
        model = full_size_model(config, torch.bfloat16, storage)
        kept, block = training_activations(model, size, ckpt)
        n_train = trainable_params(model)
        frozen = sum(t.numel() * t.element_size() for t in model.parameters() if not t.requires_grad)
        frozen += sum(t.numel() * t.element_size() for t in model.buffers())
        if offload:
            blocks = block_bytes(model.dit)
            frozen = frozen - sum(blocks) + 2 * max(blocks)
        state = 16 * n_train  # fp32 weight + gradient + AdamW moments
        rows.append(dict(plan=label, frozen_on_card=frozen, trainable=n_train, trainable_state=state, activations=kept,
                         recompute=block, total=frozen + state + kept + block))
    return rows


def _gb(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def page(size: Size = Size(), config: str = "hunyuan-f1") -> str:
    """docs/memory.md: the computed tables."""
    return render(inference_rows(size, config), training_rows(size, config), size, config)


def render(inf: list[dict], tr: list[dict], size: Size = Size(), config: str = "hunyuan-f1") -> str:
    """The page for rows computed by ``inference_rows`` and ``training_rows``."""
    lines = ["# GPU memory, computed", "",
             f"Computed by `python -m pfvg_core.memory_plan` (`pfvg_core/memory_plan.py`) from the FramePack-F1 architecture "
             f"(`{config}`) built on the meta device: weights per dtype after each setting's storage rules, activations "
             f"traced op by op at {size.width}×{size.height}, {size.window} latent frames per segment, a full packed "
             f"context, {size.prompt_tokens} prompt and {size.image_tokens} image tokens, ψ open. Not measured: add CUDA's "
             "context and the allocator's slack (≈ 1–3 GB); the text encoders, SigLIP and the VAE are ComfyUI's and come "
             "on top. A test regenerates this page and compares.", "",
             "## Inference (Load Packed DiT)", "",
             "| setting | weights on the card | of which bf16 / fp8 | working set of one forward | total |",
             "|---|---|---|---|---|"]
    for r in inf:
        w = r["weights"]
        lines.append(f"| {r['setting']} | {_gb(r['weights_on_card'])} | {_gb(w.get('bfloat16', 0))} / "
                     f"{_gb(w.get('float8_e4m3fn', 0))} | {_gb(r['working_set'])} | **{_gb(r['total'])}** |")
    lines += ["", "With offload group the card holds everything outside the transformer blocks and two blocks (the one "
              "running and the next); the other blocks rest in RAM.", "",
              "## Training, stage 2 (`plan =`)", "",
              "Stage 2 trains the output layers and SemanticPack "
              f"({tr[0]['trainable'] / 1e6:.0f} M parameters, fp32 with AdamW: 16 B each); the rest is frozen.", "",
              "| plan | frozen weights on the card | trainable state | kept for backward | one block recomputed | total |",
              "|---|---|---|---|---|---|"]
    for r in tr:
        lines.append(f"| {r['plan']} | {_gb(r['frozen_on_card'])} | {_gb(r['trainable_state'])} | {_gb(r['activations'])} | "
                     f"{_gb(r['recompute'])} | **{_gb(r['total'])}** |")
    lines += ["", "The `80gb` plan targets ≤ 40 GiB and the `24gb` plan ≤ 14 GiB on the card: compare with the totals "
              "above (plus CUDA's context)."]
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- memory table: python -m pfvg_core.memory_plan --readme -->", "<!-- end of memory table -->"


def readme_table(inf: list[dict], tr: list[dict]) -> str:
    """The README's short table (between ``README_BEGIN`` and ``README_END``): the totals of docs/memory.md."""
    rows = [f"| FramePack-F1 inference, {r['setting']} | {_gb(r['total'])} |" for r in inf]
    rows += [f"| stage-2 training, {r['plan']} | {_gb(r['total'])} |" for r in tr if "no checkpointing" not in r["plan"]]
    return "\n".join([README_BEGIN, "| 640×480, 9 latent frames a segment (computed, not measured) | GPU memory |", "|---|---|",
                      *rows, README_END])


if __name__ == "__main__":
    import sys

    if "--readme" in sys.argv:
        print(readme_table(inference_rows(), training_rows()))
        raise SystemExit(0)
    print(page(), end="")
