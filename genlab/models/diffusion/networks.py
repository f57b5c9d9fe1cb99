"""Denoising networks: a U-Net for images (Ho et al. 2020; Dhariwal & Nichol 2021's AdaGN scale-shift
conditioning) and an MLP for vectors and tables. Both map (x_t, t, label) -> a tensor shaped like x_t.

Labels: an embedding table with one extra row, the "no label" token used by classifier-free guidance
(Ho & Salimans 2022); pass label = num_classes for an unconditional prediction.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import GenlabError
from ...nn import Attention, activation, fourier_features, group_norm, zero_


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017) of integer or real t: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class Conditioning(nn.Module):
    """(t, label) -> (B, d_emb): sinusoidal t through a 2-layer MLP, plus a label embedding."""

    def __init__(self, d_base: int, d_emb: int, num_classes: int = 0):
        super().__init__()
        self.d_base = d_base
        self.mlp = nn.Sequential(nn.Linear(d_base, d_emb), nn.SiLU(), nn.Linear(d_emb, d_emb))
        self.label = nn.Embedding(num_classes + 1, d_emb) if num_classes else None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(timestep_embedding(t, self.d_base))
        if self.label is not None:
            emb = emb + self.label(y)
        return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then AdaGN: norm(h) * (1 + scale(emb)) + shift(emb), SiLU, dropout, conv."""

    def __init__(self, c_in: int, c_out: int, d_emb: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(d_emb, 2 * c_out)
        self.norm2 = group_norm(c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = zero_(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


class UNet(nn.Module):
    """(B, C, H, W), t (B,), y (B,) or None -> (B, C, H, W). One level per entry of `mults` (widths
    channels * mult), `res_blocks` residual blocks per level, stride-2 conv down / nearest-neighbour up between
    levels, self-attention at the resolutions listed in `attention` and in the middle."""

    def __init__(self, shape: tuple[int, ...], channels: int = 64, mults: tuple[int, ...] = (1, 2, 2),
                 res_blocks: int = 2, attention: tuple[int, ...] = (7,), dropout: float = 0.1, num_classes: int = 0):
        super().__init__()
        c_img, h, w = shape
        if h % 2 ** (len(mults) - 1) or w % 2 ** (len(mults) - 1):
            raise GenlabError(f"image size {h}x{w} cannot be halved {len(mults) - 1} times; "
                              f"use fewer levels (--set mults=...) or resize the data")
        d_emb = 4 * channels
        self.cond = Conditioning(channels, d_emb, num_classes)
        self.inp = nn.Conv2d(c_img, channels, 3, padding=1)
        self.down, skips, c, res = nn.ModuleList(), [channels], channels, h
        for i, m in enumerate(mults):
            for _ in range(res_blocks):
                self.down.append(self._level_block(c, channels * m, d_emb, dropout, res in attention))
                c = channels * m
                skips.append(c)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, d_emb, dropout), Attention(c), ResBlock(c, c, d_emb, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(res_blocks + 1):
                self.up.append(self._level_block(c + skips.pop(), channels * m, d_emb, dropout, res in attention))
                c = channels * m
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
                res *= 2
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), zero_(nn.Conv2d(c, c_img, 3, padding=1)))

    @staticmethod
    def _level_block(c_in, c_out, d_emb, dropout, attn: bool) -> nn.ModuleList:
        return nn.ModuleList([ResBlock(c_in, c_out, d_emb, dropout)] + ([Attention(c_out)] if attn else []))

    @staticmethod
    def _run(block: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if isinstance(block, nn.ModuleList):  # ResBlock (+ Attention)
            h = block[0](h, emb)
            return block[1](h) if len(block) > 1 else h
        return block(h)  # down- or up-sampling

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.cond(t, y)
        h = self.inp(x)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for block in self.up:
            if isinstance(block, nn.ModuleList):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(block, h, emb)
        return self.out(h)


class MLPDenoiser(nn.Module):
    """(B, D), t (B,), y (B,) or None -> (B, D): Fourier features of x, then hidden layers act(W h + U emb) with
    residual connections where widths match; the output layer starts at zero."""

    def __init__(self, d: int, hidden: tuple[int, ...] = (256, 256, 256), act: str = "silu", num_classes: int = 0,
                 fourier: int = 0):
        super().__init__()
        d_emb = hidden[0]
        self.fourier = fourier
        self.cond = Conditioning(d_emb, d_emb, num_classes)
        dims = [d * (1 + 2 * fourier), *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.embs = nn.ModuleList(nn.Linear(d_emb, b) for b in hidden)
        self.act = activation(act)
        self.out = zero_(nn.Linear(hidden[-1], d))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = F.silu(self.cond(t, y))
        h = fourier_features(x, self.fourier)
        for lin, e in zip(self.layers, self.embs):
            z = self.act(lin(h) + e(emb))
            h = h + z if z.shape == h.shape else z
        return self.out(h)
