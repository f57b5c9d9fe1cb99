"""Deterministic autoencoders: `ae` and `dae` (denoising, Vincent et al. 2008: Gaussian or masking noise).

Sampling: an autoencoder has no prior, so genlab fits a full-covariance Gaussian to the training codes (running
moments during training) and decodes draws from it — the ex-post density estimation of Ghosh et al. 2020.
Under bf16/fp16 (genlab.precision) the encoder and decoder run in autocast; the losses and those code moments
are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check
from ..errors import GenlabError
from ..precision import exact
from .base import generator, randn
from .latent import LatentConfig, LatentModel


@dataclass
class AEConfig(LatentConfig):
    loss: str = "mse"  # mse | bce (targets mapped to [0, 1]; images only)
    noise: str = "none"  # none | gaussian | mask: corruption of the input during training (denoising AE)
    noise_std: float = 0.5  # std of the Gaussian corruption, in data units
    mask_prob: float = 0.5  # probability that the masking noise zeroes an input value
    code_momentum: float = 0.01  # running moments of the codes used for sampling

    def __post_init__(self):
        super().__post_init__()
        check(self.loss in ("mse", "bce"), f"loss must be mse or bce, got '{self.loss}'")
        check(self.noise in ("none", "gaussian", "mask"), f"noise must be none, gaussian or mask, got '{self.noise}'")
        check(self.noise_std >= 0, f"noise_std must be >= 0, got {self.noise_std}")
        check(0 <= self.mask_prob < 1, f"mask_prob must be in [0, 1), got {self.mask_prob}")
        check(0 < self.code_momentum <= 1, f"code_momentum must be in (0, 1], got {self.code_momentum}")


@dataclass
class DAEConfig(AEConfig):
    noise: str = "gaussian"


class Autoencoder(LatentModel):
    kind = "ae"
    family = "autoencoder"
    Config = AEConfig

    def __init__(self, spec, config: AEConfig):
        super().__init__(spec, config, enc_out=config.latent_dim)
        if config.loss == "bce" and not spec.is_image:
            raise GenlabError(f"loss=bce needs image data in [-1, 1]; {spec.name} is {spec.kind} data: use loss=mse")
        L = config.latent_dim
        self.register_buffer("code_mean", torch.zeros(L))
        self.register_buffer("code_cov", torch.eye(L))
        self.register_buffer("code_count", torch.zeros((), dtype=torch.long))

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.noise == "gaussian":
            return x + c.noise_std * torch.randn_like(x)
        if c.noise == "mask":  # masked entries take the data's "zero": black for images, the mean for vectors
            blank = -1.0 if self.spec.is_image else 0.0
            return torch.where(torch.rand_like(x) < c.mask_prob, torch.full_like(x, blank), x)
        return x

    def encode(self, x, y=None):
        return self._encode_raw(x, y)

    def decode(self, z, y=None):
        out = self._decode_raw(z, y)[:, 0]
        return torch.sigmoid(out) * 2 - 1 if self.config.loss == "bce" else out

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x, y), y)

    def forward(self, x, y, phase="model", step=0):
        y = y if self.n_cond else None
        z = self._encode_raw(self.corrupt(x) if self.training else x, y)
        out = self._decode_raw(z, y)[:, 0]
        if self.config.loss == "bce":
            loss = F.binary_cross_entropy_with_logits(out, (x + 1) / 2)
        else:
            loss = F.mse_loss(out, x)
        if self.training:
            self._update_code_stats(z.detach())
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    @exact  # statistics of the codes: float32 in every precision
    def _update_code_stats(self, z: torch.Tensor) -> None:
        m = self.config.code_momentum if self.code_count > 0 else 1.0
        mean = z.mean(0)
        cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1]) if len(z) > 1 else torch.zeros_like(self.code_cov)
        self.code_mean.lerp_(mean, m)
        self.code_cov.lerp_(cov, m)
        self.code_count += 1

    def latent_center_scale(self):
        return self.code_mean, self.code_cov.diagonal().clamp_min(1e-12).sqrt()

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options, progress):
        L = self.config.latent_dim
        eye = torch.eye(L, device=self.device)
        chol = torch.linalg.cholesky(self.code_cov + 1e-5 * eye)
        z = self.code_mean + randn((n, L), generator(seed), self.device) @ chol.T
        return self.decode(z, labels), {}


class DenoisingAutoencoder(Autoencoder):
    kind = "dae"
    Config = DAEConfig
