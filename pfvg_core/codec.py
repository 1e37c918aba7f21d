"""Latent codecs: pixels [B, 3, T, H, W] in [-1, 1] ↔ latents [B, C, T', H/f, W/f].

``PatchCodec`` is a small learned patch codec (one strided conv each way). Initialised as a box
filter (latent channels 0–2 = mean colour of each f×f patch, the rest zero; decoding repeats the
colour), so even untrained it gives a faithful low-resolution video. Larger learned codecs (e.g.
diffusers' ``AutoencoderKLHunyuanVideo`` at a small config) fit the same interface.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def saturated_mask(pixels: torch.Tensor, dilate: int = 1) -> torch.Tensor:
    """Pixels of saturated colour (a channel ≥ 225 or ≤ 35 of 255) in ``pixels`` [N, 3, H, W] in [-1, 1]: the
    world's sprites (its backgrounds stay in [40, 215]), grown by ``dilate`` pixels to take in their edges.
    Returns [N, 1, H, W] float (1 on sprites)."""
    hi = pixels.amax(1, keepdim=True) >= 225 / 127.5 - 1
    lo = pixels.amin(1, keepdim=True) <= 35 / 127.5 - 1
    m = (hi | lo).float()
    return F.max_pool2d(m, 2 * dilate + 1, 1, dilate) if dilate else m


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, sprite_weight: float = 0.0) -> torch.Tensor:
    """L1 + MSE per pixel, weighted 1 + ``sprite_weight`` on saturated (sprite) pixels (the codec must
    keep each sprite's colour, which covers ~3 % of the pixels and is lost under an unweighted loss)."""
    per = (rec - x).abs().mean(1, keepdim=True) + ((rec - x) ** 2).mean(1, keepdim=True)
    if not sprite_weight:
        return per.mean()
    w = 1 + sprite_weight * saturated_mask(x)
    return (per * w).sum() / w.sum()


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


class ConvCodec(nn.Module):
    """A small learned convolutional autoencoder: 64×64 RGB ↔ 16×16×C (factor 4), per frame.

    ``latent_scale``/``latent_shift`` (buffers, set after training) make the latents roughly zero-mean
    and unit-variance for the flow model."""

    temporal_factor = 1

    def __init__(self, latent_channels: int = 4, factor: int = 4, width: int = 64):
        super().__init__()
        if factor not in (2, 4, 8):
            raise ValueError("ConvCodec factor must be 2, 4 or 8")
        self.factor, self.latent_channels, self.width = factor, latent_channels, width
        downs = {2: 1, 4: 2, 8: 3}[factor]
        enc = [nn.Conv2d(3, width, 3, padding=1), nn.SiLU()]
        for _ in range(downs):
            enc += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(width, latent_channels, 3, padding=1)]
        dec = [nn.Conv2d(latent_channels, width, 3, padding=1), nn.SiLU()]
        for _ in range(downs):
            dec += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.SiLU()]
        dec += [nn.Conv2d(width, 3, 3, padding=1)]
        self.enc, self.dec = nn.Sequential(*enc), nn.Sequential(*dec)
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("latent_shift", torch.zeros(()))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = pixels.shape
        if h % self.factor or w % self.factor:
            raise ValueError(f"image size {h}x{w} must be a multiple of {self.factor}")
        x = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, 3, h, w).to(self.latent_scale.dtype)
        z = (self.enc(x) - self.latent_shift) / self.latent_scale
        return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = latents.shape
        z = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).to(self.latent_scale.dtype)
        x = self.dec(z * self.latent_scale + self.latent_shift).clamp(-1, 1)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
