"""Building blocks shared by the families: MLP, conv encoder/decoder, self-attention, norms and init helpers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GenlabError
from .transformer import CrossAttention

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
               "none": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise GenlabError(f"unknown activation '{name}': use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def fourier_features(x: torch.Tensor, n: int) -> torch.Tensor:
    """x with sin and cos of 2^k pi x, k < n, per coordinate (Mildenhall et al. 2020; Tancik et al. 2020):
    (B, D) -> (B, D (1 + 2n)). Lets an MLP resolve detail far finer than the data's scale."""
    if n == 0:
        return x
    freqs = math.pi * 2.0 ** torch.arange(n, device=x.device, dtype=x.dtype)
    args = (x[:, :, None] * freqs).flatten(1)
    return torch.cat([x, torch.sin(args), torch.cos(args)], dim=1)


class MLP(nn.Sequential):
    """(B, d_in) -> (B, d_out) through hidden widths; no activation after the last layer."""

    def __init__(self, d_in: int, hidden: tuple[int, ...] | list[int], d_out: int, act: str = "silu"):
        dims = [d_in, *hidden, d_out]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                layers.append(activation(act))
        super().__init__(*layers)


def _check_divisible(shape: tuple[int, ...], n_down: int) -> tuple[int, int]:
    _, h, w = shape
    f = 2**n_down
    if h % f or w % f:
        raise GenlabError(f"image size {h}x{w} is not divisible by {f} ({n_down} stride-2 stages); "
                          f"use fewer channels stages (--set channels=...) or resize the data")
    return h // f, w // f


class ConvEncoder(nn.Module):
    """(B, C, H, W) -> (B, d_out). A stride-2 3x3 conv per entry of `channels` (each halves H and W), then a linear
    layer on the flattened map; spatial=True: a 1x1 conv instead, (B, d_out, H/2^n, W/2^n) (a VQ-VAE's code grid)."""

    def __init__(self, shape: tuple[int, ...], channels: tuple[int, ...], d_out: int, act: str = "silu",
                 spatial: bool = False):
        super().__init__()
        h, w = _check_divisible(shape, len(channels))
        layers: list[nn.Module] = []
        c_in = shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), activation(act)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.spatial = spatial
        self.out = nn.Conv2d(c_in, d_out, 1) if spatial else nn.Linear(c_in * h * w, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x)
        return self.out(h if self.spatial else h.flatten(1))


class ConvDecoder(nn.Module):
    """(B, d_in) -> (B, C_out, H, W). A linear layer to a (channels[0], H/2^n, W/2^n) map, then a 4x4 stride-2
    transposed conv per entry of `channels` (mirror of ConvEncoder), then a 3x3 conv to C_out channels.
    spatial=True: the input is already a (B, d_in, H/2^n, W/2^n) map, taken to channels[0] by a 3x3 conv."""

    def __init__(self, d_in: int, shape: tuple[int, ...], channels: tuple[int, ...], c_out: int | None = None,
                 act: str = "silu", spatial: bool = False):
        super().__init__()
        self.h, self.w = _check_divisible(shape, len(channels))
        self.c0 = channels[0]
        first = nn.Conv2d(d_in, self.c0, 3, padding=1) if spatial else nn.Linear(d_in, self.c0 * self.h * self.w)
        self.inp = nn.Sequential(first, activation(act))
        layers: list[nn.Module] = []
        c_in = self.c0
        for c in [*channels[1:], channels[-1]]:
            layers += [nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1), activation(act)]
            c_in = c
        self.ups = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in, c_out or shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z).view(-1, self.c0, self.h, self.w)  # a no-op for a spatial input
        return self.out(self.ups(h))


def zero_(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias, so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(c, 32 if c >= 128 else 8), c)


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, output projection zero-initialised."""

    def __init__(self, c: int, head_dim: int = 32):
        super().__init__()
        # about head_dim wide: the most heads, at most c // head_dim, that divide c (c = 100: 2 heads of 50)
        self.heads = max(h for h in range(1, max(1, c // head_dim) + 1) if c % h == 0)
        self.norm, self.qkv, self.proj = group_norm(c), nn.Conv2d(c, 3 * c, 1), zero_(nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2)
        out = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])  # (b, heads, hw, d)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class SpatialCrossAttention(nn.Module):
    """The H*W positions of a feature map attend to a prompt's tokens (genlab.nn.transformer.CrossAttention),
    residual: (B, C, H, W), TextCond -> (B, C, H, W); an all-masked prompt leaves x unchanged."""

    def __init__(self, c: int, context: int, head_dim: int = 32):
        super().__init__()
        self.norm, self.attn = group_norm(c), CrossAttention(c, context, math.gcd(c, max(1, c // head_dim)))

    def forward(self, x: torch.Tensor, text) -> torch.Tensor:
        b, c, h, w = x.shape
        out = self.attn(self.norm(x).flatten(2).transpose(1, 2), text.tokens, text.mask)  # (b, hw, c)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flat_dim(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """The gradient-reversal layer (Ganin et al. 2016): the identity forward, -lam x the gradient backward, so a
    network below it learns to defeat the classifier above it."""
    return _GradReverse.apply(x, float(lam))
