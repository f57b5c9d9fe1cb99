"""A perceptual reconstruction loss (Johnson et al. 2016, "feature reconstruction loss"): the squared distance
between two images' activations in a fixed, trained classifier, here the one genlab ships for the data's metrics
(genlab.metrics.features), instead of (or beside) the distance between their pixels, so that a decoder is paid for
edges and textures the classifier sees rather than for the pixel mean that makes its images blurry."""

from __future__ import annotations

import torch
from torch import nn


class PerceptualLoss(nn.Module):
    """loss(a, b) (B,) = sum over the classifier's stages j of mean_{c,h,w} (phi_j(a) - phi_j(b))^2, phi_j the
    output of stage j (the ReLU before each max-pool). `body`: a ClassifierNet's body (frozen here, eval mode:
    batch norm on its running statistics). Images (B, C, H, W) in [-1, 1]; gradients flow to both inputs."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body.eval().requires_grad_(False)
        self.taps = [i - 1 for i, m in enumerate(body) if isinstance(m, nn.MaxPool2d)]

    def train(self, mode: bool = True):  # always eval: the classifier's statistics are fixed
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i >= self.taps[-1]:
                break
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.features(torch.cat([a, b]).float())
        return sum((f[: len(a)] - f[len(a):]).pow(2).flatten(1).mean(1) for f in fa)
