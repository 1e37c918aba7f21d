"""Small condition encoders for models that ship without HunyuanVideo's LLaMA / SigLIP encoders.

The real FramePack-F1 takes prompt features from the HunyuanVideo text encoders and image features
from SigLIP (in ComfyUI: ``CONDITIONING`` and ``CLIP_VISION_OUTPUT``). Small models (tests, the
embedded default) use these learned encoders instead, with weights in the model bundle.
"""
from __future__ import annotations

import torch
from torch import nn


class ByteTextEncoder(nn.Module):
    """UTF-8 bytes → token features [B, L, text_dim] + pooled [B, pooled_dim] (a learned encoder)."""

    def __init__(self, text_dim: int, pooled_dim: int, max_len: int = 77, layers: int = 1, heads: int = 2):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(257, text_dim)  # 256 bytes + padding (id 256)
        self.pos = nn.Parameter(torch.randn(max_len, text_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(text_dim, heads, 2 * text_dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pooled = nn.Linear(text_dim, pooled_dim)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.full((len(prompts), self.max_len), 256, dtype=torch.long)
        for i, p in enumerate(prompts):
            b = list(p.encode("utf-8"))[: self.max_len] or [32]
            ids[i, : len(b)] = torch.tensor(b)
        return ids, ids != 256

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (tokens [B, L, text_dim], mask [B, L] bool, pooled [B, pooled_dim])."""
        ids, mask = self.tokenize(prompts)
        dev = self.pos.device
        ids, mask = ids.to(dev), mask.to(dev)
        h = self.encoder(self.embed(ids) + self.pos, src_key_padding_mask=~mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = self.pooled((h * m).sum(1) / m.sum(1).clamp(min=1))
        return h, mask, pooled


class LatentImageEncoder(nn.Module):
    """Reference-image tokens from the start latent: a patchify projection to ``image_dim``.

    Stands in for SigLIP image features (FramePack's ``image_embeds``) in small models."""

    def __init__(self, latent_channels: int, image_dim: int, patch: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(latent_channels, image_dim, patch, stride=patch)

    def forward(self, start_latent: torch.Tensor) -> torch.Tensor:
        """``start_latent`` [B, C, 1, H, W] → [B, N, image_dim]."""
        x = start_latent[:, :, 0].to(self.proj.weight.dtype)
        return self.proj(x).flatten(2).transpose(1, 2)
