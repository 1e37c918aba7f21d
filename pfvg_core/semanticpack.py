"""SemanticPack: the long-term memory ψ of MemoryPack (PFVG §3.1, appendix A.1 structure A).

    ψ₀      = [proj(prompt tokens) ; proj(reference-image tokens)]
    ψₙ₊₁    = Squeeze(ψₙ, Memorize(xⁿ))
    Memorize: self-attention inside windows of the segment's latent tokens, then attention pooling
              to a fixed number of memory tokens (a compact embedding);
    Squeeze : cross-attention with query = Memorize(xⁿ), key/value = ψₙ (structure A).

ψ enters the DiT as extra context tokens placed before the text (``MemoryInjector``). Their weight in
every attention of the DiT is multiplied by a gate g = exp(``log_gate``); ``log_gate`` starts at −∞
(g = 0), so an untrained SemanticPack leaves the DiT's output exactly unchanged, and training opens
the gate (``open_gate``) before it learns. It opens to g = 1 (log 0): ψ tokens are then plain extra
context, as in the paper. (An early choice, g = e⁻⁴, starved the memory: with 16 ψ tokens among
~500 keys their attention share was ~0.06 %, and Adam moves a scalar by ~lr per step, so the gate
barely opened in training: −4 → −3.5 over 1800 steps.)

After the first update ψ has a fixed number of tokens, so one update costs the same whatever the
number of segments before it: O(1) per segment, O(n) for the whole video.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SemanticPackConfig:
    latent_channels: int
    text_dim: int
    image_dim: int
    context_dim: int  # width of the DiT (heads × head dim)
    dim: int = 64
    heads: int = 4
    patch: int = 2
    memorize_window: int = 64  # latent tokens per Memorize window (not a segment's latent frames)
    memory_tokens: int = 16

    RENAMED = {"window": "memorize_window"}  # keys of bundles saved before a rename → today's names

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SemanticPackConfig":
        """The config saved in a bundle's pfvg.json (older key names accepted)."""
        return cls(**{cls.RENAMED.get(k, k): v for k, v in data.items()})

    @classmethod
    def for_dit(cls, dit_config: dict, **kw) -> "SemanticPackConfig":
        return cls(
            latent_channels=dit_config["in_channels"],
            text_dim=dit_config["text_embed_dim"],
            image_dim=dit_config["image_proj_dim"],
            context_dim=dit_config["num_attention_heads"] * dit_config["attention_head_dim"],
            **kw,
        )


class _CrossBlock(nn.Module):
    """Pre-norm attention (query attends to key/value) + MLP, residual on the query."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_padding: torch.Tensor | None = None) -> torch.Tensor:
        kv_n = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kv_n, kv_n, key_padding_mask=kv_padding, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class SemanticPack(nn.Module):
    def __init__(self, config: SemanticPackConfig):
        super().__init__()
        c = self.config = config
        self.text_proj = nn.Linear(c.text_dim, c.dim)
        self.image_proj = nn.Linear(c.image_dim, c.dim)
        self.patch_embed = nn.Conv3d(c.latent_channels, c.dim, (1, c.patch, c.patch), stride=(1, c.patch, c.patch))
        self.window_block = nn.TransformerEncoderLayer(c.dim, c.heads, 4 * c.dim, dropout=0.0, batch_first=True, norm_first=True)
        self.pool_queries = nn.Parameter(torch.randn(c.memory_tokens, c.dim) * 0.02)
        self.pool = _CrossBlock(c.dim, c.heads)
        self.squeeze_block = _CrossBlock(c.dim, c.heads)
        self.out_norm = nn.LayerNorm(c.dim)
        self.out_proj = nn.Linear(c.dim, c.context_dim)
        self.log_gate = nn.Parameter(torch.tensor(-math.inf))

    # ψ₀ --------------------------------------------------------------------------------------
    def init_memory(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor, text_mask: torch.Tensor | None = None,
                    zero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """ψ₀ = [proj(text) ; proj(image)] (PFVG §3.1 initialisation). Returns (ψ₀ [B, L, dim], mask [B, L]).

        ``zero=True`` gives ψ₀ = 0 of the same shape (the zero-MemoryPack ablation)."""
        w = self.text_proj.weight  # features may come from elsewhere (ComfyUI's CONDITIONING is on the CPU)
        text_embeds, image_embeds = text_embeds.to(w.device, w.dtype), image_embeds.to(w.device, w.dtype)
        psi = torch.cat([self.text_proj(text_embeds), self.image_proj(image_embeds)], dim=1)
        b = psi.shape[0]
        if text_mask is None:
            text_mask = torch.ones(text_embeds.shape[:2], dtype=torch.bool, device=psi.device)
        mask = torch.cat([text_mask.to(psi.device).bool(), torch.ones(b, image_embeds.shape[1], dtype=torch.bool, device=psi.device)], 1)
        if zero:
            psi = torch.zeros_like(psi)
        return psi, mask

    # Memorize ---------------------------------------------------------------------------------
    def memorize(self, segment: torch.Tensor) -> torch.Tensor:
        """Memorize(xⁿ): windowed self-attention over the segment's tokens, pooled to M tokens.

        ``segment`` [B, C, T, H, W] → [B, M, dim]. Windows hold ``config.memorize_window`` consecutive tokens
        (raster order over T, H, W), so cost is linear in the segment size."""
        tokens = self.patch_embed(segment.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)  # [B, N, d]
        b, n, d = tokens.shape
        w = self.config.memorize_window
        pad = (-n) % w
        padding = torch.zeros(b, n + pad, dtype=torch.bool, device=tokens.device)
        if pad:
            tokens = F.pad(tokens, (0, 0, 0, pad))
            padding[:, n:] = True
        windows = tokens.reshape(b * (n + pad) // w, w, d)
        win_pad = padding.reshape(-1, w)
        windows = self.window_block(windows, src_key_padding_mask=win_pad if pad else None)
        windows = windows.reshape(b, n + pad, d)
        queries = self.pool_queries.unsqueeze(0).expand(b, -1, -1)
        return self.pool(queries, windows, padding if pad else None)

    # Squeeze ----------------------------------------------------------------------------------
    def squeeze(self, psi: torch.Tensor, memorized: torch.Tensor, psi_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Squeeze(ψₙ, m): cross-attention, query = m = Memorize(xⁿ), key/value = ψₙ (structure A)."""
        kv_padding = None if psi_mask is None or bool(psi_mask.all()) else ~psi_mask.bool()
        return self.squeeze_block(memorized, psi, kv_padding)

    def update(self, psi: torch.Tensor, segment: torch.Tensor, psi_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ψₙ₊₁ = Squeeze(ψₙ, Memorize(xⁿ)) (PFVG §3.1). Output [B, M, dim], whatever ψₙ's length."""
        return self.squeeze(psi, self.memorize(segment), psi_mask)

    # Into the DiT -----------------------------------------------------------------------------
    def context_tokens(self, psi: torch.Tensor) -> torch.Tensor:
        """ψ as DiT context tokens [B, L, context_dim]."""
        return self.out_proj(self.out_norm(psi))

    @property
    def gate_open(self) -> bool:
        return bool(torch.isfinite(self.log_gate))

    @torch.no_grad()
    def open_gate(self, log_gate: float = 0.0) -> None:
        """Open a closed gate to ``exp(log_gate)`` so that training gets gradients (no-op if open)."""
        if not self.gate_open:
            self.log_gate.fill_(log_gate)


def gate_channels(device: torch.device) -> int:
    """Extra head channels carrying the gate: 8 on a GPU (head sizes stay multiples of 8, as flash / sage
    kernels need), 1 on the CPU (its SDPA takes any head size)."""
    return 1 if device.type == "cpu" else 8


SAGE_MAX_HEAD_DIM = 128  # SageAttention's kernels take head sizes up to 128


def gated_attention_problem(model, backend: str) -> str | None:
    """Why ψ's gated attention cannot run with ``backend`` on this model, or None. A trained gate (g ≠ 1) adds
    ``gate_channels`` head channels (``_GatedMemoryAttnProcessor``): FramePack-F1's 128 + 8 = 136 is past
    SageAttention's 128. Checked when the backend is chosen, so the run is refused before its first step."""
    sp = getattr(model, "semanticpack", None)
    if backend != "sage" or sp is None or not sp.gate_open or float(sp.log_gate.detach()) == 0.0:
        return None
    head = model.dit.config.attention_head_dim
    if head + gate_channels(torch.device("cuda")) > SAGE_MAX_HEAD_DIM:
        return (f"attention backend 'sage' cannot carry this model's memory gate (g = {math.exp(float(sp.log_gate)):.3f}: "
                f"head size {head} + {gate_channels(torch.device('cuda'))} gate channels > {SAGE_MAX_HEAD_DIM}, SageAttention's "
                "limit): use attention 'flash' or 'native', or memory_mode 'off'")
    return None


class _GatedMemoryAttnProcessor:
    """Wraps a diffusers attention processor so that ψ's gate g reaches the attention of every block
    (PFVG Fig. 1: ψ as context tokens; the gate multiplies their softmax weight by g = exp(log_gate)).

    The form is chosen so that the attention backend stays free (native SDPA, flash, sage):
    - no ψ, or g = 1 with no padded ψ token (the trained case): the diffusers processor as it is, no mask;
    - g ≠ 1 without a DiT mask (batch 1): log g is carried in ``gate_channels`` extra head channels,
      q' = [q, 1, 0…], k' = [k, log g / scale on ψ keys (0 elsewhere), 0…], v' = [v, 0…], with the
      softmax scale of the real head size, so q'·k'·scale = q·k·scale + log g exactly; no mask;
    - a DiT mask (batch > 1 with padded prompts, where diffusers itself passes one) or padded ψ tokens at
      batch > 1: the same gate channels, with the padding as a boolean key mask. A boolean mask needs no
      gradient, so SDPA keeps its fused kernel; an additive mask carrying log g (which trains) would send every
      training forward to SDPA's math path, which materialises the [B, H, N, N] scores (on a CPU the embedded
      recipe's step then takes 1.08× as long: ``python -m bench world-train``). ``force_mask`` selects that additive
      form (log g on the ψ keys, −∞ on padding), kept as the reference the tests compare with.
    Padded ψ tokens at batch 1 are dropped before the DiT sees them (same result as −∞ logits)."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, inner, injector: "MemoryInjector"):
        self.inner = inner
        self.injector = injector

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        inj = self.injector
        self.inner._attention_backend = self._attention_backend  # set_attention_backend reaches this wrapper
        self.inner._parallel_config = self._parallel_config
        if inj.active is None or encoder_hidden_states is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        n_lat, n_ctx = hidden_states.shape[1], encoder_hidden_states.shape[1]
        if not inj.force_mask:
            if inj.gate_is_one:  # (no padded ψ token: the DiT's own mask, if any, is all there is to apply)
                return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
            bias = inj.key_bias(n_lat, n_ctx, torch.float32, hidden_states.device)[:, 0, 0]  # [B, N]: −∞ on padded ψ
            key_mask = None
            if attention_mask is not None or inj.active[2] is not None:
                keep = torch.isfinite(bias)
                if attention_mask is not None:
                    keep = keep & attention_mask.bool().reshape(keep.shape[0], -1)
                bias, key_mask = bias.masked_fill(~keep, 0.0), keep[:, None, None, :]
            return self._gated(attn, hidden_states, encoder_hidden_states, image_rotary_emb, bias, key_mask)
        bias = inj.key_bias(n_lat, n_ctx, hidden_states.dtype, hidden_states.device)  # [B, 1, 1, N]
        if attention_mask is not None:
            bias = bias.masked_fill(~attention_mask.bool(), float("-inf"))
        return self.inner(attn, hidden_states, encoder_hidden_states, bias, image_rotary_emb)

    def _gated(self, attn, hidden_states, encoder_hidden_states, image_rotary_emb, bias, key_mask=None):
        """The steps of diffusers' ``HunyuanVideoAttnProcessor2_0`` with the gate in extra head channels
        (``bias`` [B, N]: log g on the ψ keys, 0 elsewhere) and ``key_mask`` [B, 1, 1, N] (True: attend) or None."""
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        n_ctx = encoder_hidden_states.shape[1]
        single = attn.add_q_proj is None
        x = torch.cat([hidden_states, encoder_hidden_states], dim=1) if single else hidden_states
        q, k, v = (proj(x).unflatten(2, (attn.heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            if single:
                q = torch.cat([apply_rotary_emb(q[:, :-n_ctx], image_rotary_emb, sequence_dim=1), q[:, -n_ctx:]], dim=1)
                k = torch.cat([apply_rotary_emb(k[:, :-n_ctx], image_rotary_emb, sequence_dim=1), k[:, -n_ctx:]], dim=1)
            else:
                q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
                k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        if not single:
            eq, ek, ev = (proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                          for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                eq = attn.norm_added_q(eq)
            if attn.norm_added_k is not None:
                ek = attn.norm_added_k(ek)
            q, k, v = torch.cat([q, eq], dim=1), torch.cat([k, ek], dim=1), torch.cat([v, ev], dim=1)
        b, n, h, d = q.shape
        scale = d ** -0.5
        pad = gate_channels(q.device)
        qa = q.new_zeros(b, n, h, pad)
        qa[..., 0] = 1
        ka = k.new_zeros(b, n, h, pad)
        ka[..., 0] = (bias / scale).to(k.dtype)[:, :, None]
        out = dispatch_attention_fn(torch.cat([q, qa], -1), torch.cat([k, ka], -1), torch.cat([v, torch.zeros_like(ka)], -1),
                                    attn_mask=key_mask, dropout_p=0.0, is_causal=False, scale=scale,
                                    backend=self._attention_backend, parallel_config=self._parallel_config)
        out = out[..., :d].flatten(2, 3).to(q.dtype)
        out, ctx = out[:, :-n_ctx], out[:, -n_ctx:]
        if getattr(attn, "to_out", None) is not None:
            out = attn.to_out[1](attn.to_out[0](out))
        if getattr(attn, "to_add_out", None) is not None:
            ctx = attn.to_add_out(ctx)
        return out, ctx


class MemoryInjector:
    """Puts ψ tokens into the packed DiT as extra context tokens, without changing the DiT class.

    The tokens are appended to the output of ``image_projection`` (a forward hook), i.e. after the
    image tokens and before the text: at batch 1 the diffusers class keeps only the first
    ``mask.sum()`` context tokens, so tokens appended after the text would be dropped silently."""

    @classmethod
    def for_dit(cls, transformer: nn.Module) -> "MemoryInjector":
        """The DiT's injector: made once per DiT and shared by every model built on it (a training view that
        shares the frozen blocks with the loaded model keeps one hook and one set of processors)."""
        inj = getattr(transformer, "_pfvg_injector", None)
        if inj is None:
            inj = cls(transformer)
            transformer._pfvg_injector = inj
        return inj

    def __init__(self, transformer: nn.Module):
        if getattr(transformer, "image_projection", None) is None:
            raise ValueError("the packed DiT has no image_projection (has_image_proj=False): cannot inject ψ")
        self.transformer = transformer
        self.active = None  # (tokens [B, M, D], log_gate, mask [B, M]) during an injected forward
        self.gate_is_one = False  # log_gate == 0 and no padded ψ token: no mask needed at all
        self.force_mask = False  # always use the additive-mask form (tests compare the forms)
        self._n_img = 0
        self._handle = transformer.image_projection.register_forward_hook(self._hook)
        for block in list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks):
            proc = block.attn.processor
            if not isinstance(proc, _GatedMemoryAttnProcessor):
                block.attn.set_processor(_GatedMemoryAttnProcessor(proc, self))

    def _hook(self, module, inputs, output):
        if self.active is None:
            return output
        tokens = self.active[0]
        self._n_img = output.shape[1]
        return torch.cat([output, tokens.to(output.dtype)], dim=1)

    def key_bias(self, n_lat: int, n_ctx: int, dtype, device) -> torch.Tensor:
        tokens, log_gate, mask = self.active
        b, m = tokens.shape[:2]
        start = n_lat + self._n_img
        gate = log_gate.to(dtype).expand(b, m)
        if mask is not None:
            gate = gate.masked_fill(~mask.bool(), float("-inf"))
        before = torch.zeros(b, start, dtype=dtype, device=device)
        after = torch.zeros(b, n_lat + n_ctx - start - m, dtype=dtype, device=device)
        return torch.cat([before, gate.to(device), after], dim=1)[:, None, None, :]

    # gradient checkpointing --------------------------------------------------------------------
    def _snapshot(self) -> tuple:
        return self.active, self.gate_is_one, self.force_mask, self._n_img

    @contextlib.contextmanager
    def _restored(self, snap: tuple):
        saved = self._snapshot()
        self.active, self.gate_is_one, self.force_mask, self._n_img = snap
        try:
            yield
        finally:
            self.active, self.gate_is_one, self.force_mask, self._n_img = saved

    def checkpoint_function(self):
        """diffusers' ``gradient_checkpointing_func`` for the DiT's blocks that keeps ψ: torch's non-reentrant
        checkpoint of the block, run (and re-run in the backward pass, after ``inject`` has exited) with the
        injector's state as it was at the forward — ψ's gate, mask and token positions — so the
        recomputation takes the same path and gives the same tensors (gradients equal to no checkpointing).
        ψ tokens reach the blocks as their context input; the gate tensor is captured, so its gradient flows."""
        from torch.utils.checkpoint import checkpoint

        def run_checkpointed(block, *args):
            snap = self._snapshot()
            offload = getattr(self.transformer, "_pfvg_block_offload", None)  # offload.BlockOffload (24 GB plan)
            calls = [0]

            def run(*a):
                calls[0] += 1
                if offload is not None and calls[0] > 1:  # the recomputation: keep the weights for the backward
                    offload.keep(offload.index(block))
                with self._restored(snap):
                    return block(*a)

            out = checkpoint(run, *args, use_reentrant=False)
            if offload is not None:
                offload.release_after_backward(offload.index(block), args)
            return out

        return run_checkpointed

    @contextlib.contextmanager
    def inject(self, tokens: torch.Tensor | None, log_gate: torch.Tensor | None, mask: torch.Tensor | None = None):
        """Within the block, DiT forwards see ``tokens`` as memory context (nothing if the gate is closed)."""
        if tokens is None or log_gate is None or not bool(torch.isfinite(log_gate)):
            yield
            return
        if mask is not None:  # read where the state keeps it (the CPU): no wait for the card
            mask = mask.bool()
            if bool(mask.all()):
                mask = None
            elif tokens.shape[0] == 1:  # drop padded ψ tokens (= −∞ logits) so that no mask is needed
                keep = torch.nonzero(mask[0].cpu()).flatten().to(tokens.device)
                tokens, mask = tokens.index_select(1, keep), None
            else:
                mask = mask.to(tokens.device)
        self.active = (tokens, log_gate, mask)
        # the gate's gradient (training) needs it in the graph: the mask-free shortcut is for inference
        self.gate_is_one = (mask is None and float(log_gate.detach()) == 0.0
                            and not (torch.is_grad_enabled() and log_gate.requires_grad))
        try:
            yield
        finally:
            self.active = None
            self.gate_is_one = False
