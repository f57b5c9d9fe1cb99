"""What every flow shares: sampling by decoding z ~ N(0, T^2 I), and interpolation between codes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...config import check
from ..base import GenerativeModel, generator, randn
from ..latent import interpolate_codes


@dataclass
class FlowSampleOptions:
    temperature: float = 1.0  # std of the base normal: 1 the model's density, < 1 more typical samples

    def __post_init__(self):
        check(isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
              and self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


class Flow(GenerativeModel):
    """An invertible map from data x to a standard normal z over spec.dims values: subclasses give `encode`
    (x -> z, (B, D)), `decode` (z -> x) and `log_prob`."""

    family = "flow"
    log_prob_type = "exact"
    SampleOptions = FlowSampleOptions

    def sampling_nfe(self) -> float:
        """Network passes per sample of one `decode` (cost reporting)."""
        return 1.0

    def interpolate(self, a, b, steps: int = 8, method: str = "slerp", y=None) -> torch.Tensor:
        """Decode a path between the codes of a and b: (B, *shape) twice -> (B, steps, *shape)."""
        return interpolate_codes(self, a, b, steps, method, y)

    def _sample(self, n, *, seed, labels, options: FlowSampleOptions, progress):
        """Decode z ~ N(0, T^2 I)."""
        z = options.temperature * randn((n, self.spec.dims), generator(seed), self.device)
        return self.decode(z, labels), {"nfe": self.sampling_nfe()}
