"""Latent codecs: pixels [B, 3, T, H, W] in [-1, 1] ↔ latents [B, C, T', H/f, W/f].

``PatchCodec`` is a small learned patch codec (one strided conv each way). Initialised as a box
filter (latent channels 0–2 = mean colour of each f×f patch, the rest zero; decoding repeats the
colour), so even untrained it gives a faithful low-resolution video. Larger learned codecs (e.g.
diffusers' ``AutoencoderKLHunyuanVideo`` at a small config) fit the same interface.
"""
from __future__ import annotations

import torch
from torch import nn


class PatchCodec(nn.Module):
    temporal_factor = 1

    def __init__(self, latent_channels: int, factor: int = 8):
        super().__init__()
        if latent_channels < 3:
            raise ValueError("PatchCodec needs at least 3 latent channels")
        self.factor = factor
        self.latent_channels = latent_channels
        self.enc = nn.Conv2d(3, latent_channels, factor, stride=factor)
        self.dec = nn.ConvTranspose2d(latent_channels, 3, factor, stride=factor)
        with torch.no_grad():
            self.enc.weight.zero_(); self.enc.bias.zero_(); self.dec.weight.zero_(); self.dec.bias.zero_()
            for c in range(3):
                self.enc.weight[c, c] = 1.0 / factor**2
                self.dec.weight[c, c] = 1.0

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [-1, 1] → [B, C, T, H/f, W/f]."""
        b, _, t, h, w = pixels.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"image size {h}x{w} must be a multiple of {self.factor}")
        x = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w).to(self.enc.weight.dtype)
        z = self.enc(x)
        return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, C, T, h, w] → [B, 3, T, h·f, w·f], clamped to [-1, 1]."""
        b, c, t, h, w = latents.shape
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).to(self.dec.weight.dtype)
        x = self.dec(z).clamp(-1, 1)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
