"""Metrics. Likelihood helpers now; the sample-quality metrics (FID, KID, P/R, D/C, IS) join in the evaluation work."""

from __future__ import annotations

import math

import torch


def bits_per_dim(nll_nats, dims: int):
    """Negative log-likelihood in nats per example -> bits per dimension."""
    if isinstance(nll_nats, torch.Tensor):
        return nll_nats / (dims * math.log(2))
    return float(nll_nats) / (dims * math.log(2))


__all__ = ["bits_per_dim"]
