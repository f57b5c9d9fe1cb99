"""MLP and convolutional encoder/decoder shared by autoencoders, VAEs and (later) GANs."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GenlabError

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU,
               "none": nn.Identity}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise GenlabError(f"unknown activation '{name}': use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


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
    layer on the flattened map."""

    def __init__(self, shape: tuple[int, ...], channels: tuple[int, ...], d_out: int, act: str = "silu"):
        super().__init__()
        h, w = _check_divisible(shape, len(channels))
        layers: list[nn.Module] = []
        c_in = shape[0]
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), activation(act)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(c_in * h * w, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.convs(x).flatten(1))


class ConvDecoder(nn.Module):
    """(B, d_in) -> (B, C_out, H, W). A linear layer to a (channels[0], H/2^n, W/2^n) map, then a 4x4 stride-2
    transposed conv per entry of `channels` (mirror of ConvEncoder), then a 3x3 conv to C_out channels."""

    def __init__(self, d_in: int, shape: tuple[int, ...], channels: tuple[int, ...], c_out: int | None = None,
                 act: str = "silu"):
        super().__init__()
        self.h, self.w = _check_divisible(shape, len(channels))
        self.c0 = channels[0]
        self.inp = nn.Sequential(nn.Linear(d_in, self.c0 * self.h * self.w), activation(act))
        layers: list[nn.Module] = []
        c_in = self.c0
        for c in [*channels[1:], channels[-1]]:
            layers += [nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1), activation(act)]
            c_in = c
        self.ups = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in, c_out or shape[0], 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z).view(-1, self.c0, self.h, self.w)
        return self.out(self.ups(h))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flat_dim(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
