"""Kind `vaegan`: VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"). The
VAE's decoder doubles as a GAN's generator, and the reconstruction is measured in the discriminator's features
instead of in pixels: the notes' cure for the VAE's blur, since a pixel-wise likelihood pays for the mean of what
an image could be, while D's features pay for what makes an image look real.

Three networks, each with its own optimizer and loss (the paper's Algorithm 1):

    x~ = Dec(z), z ~ q(z | x);  x_p = Dec(z_p), z_p ~ N(0, I);  f = D's last features
    L_llike = 1/2 |f(x~) - f(x)|^2 (a unit Gaussian in D's feature space, summed; f(x) held fixed)
    encoder:        KL(q(z | x) || N(0, I)) + L_llike
    decoder:        gamma L_llike + GAN loss of x~ and x_p (non-saturating)
    discriminator:  GAN loss of x (real) against x~ and x_p (fake)

D is genlab's GAN discriminator (DCGAN convolutions for images, an MLP otherwise) with spectral norm in place of
the paper's batch norm, so that an image's features do not depend on the batch it is scored in; encoder and
decoder are the VAE's. Samples decode prior draws as a VAE's do. There is no likelihood: the decoder is never
fitted to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import check
from ..errors import GenlabError
from .base import GenerativeModel
from .gan import Discriminator, GANConfig, d_loss, g_loss
from .vae import VAE, VAEConfig, gaussian_kl


@dataclass
class VAEGANConfig(VAEConfig):
    gamma: float = 1.0  # the decoder's weight on the feature reconstruction against fooling D
    d_channels: tuple[int, ...] = (128, 64)  # images: D's widths, as gan's `channels` (D mirrors them)

    def __post_init__(self):
        super().__post_init__()
        check(self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}")
        check(all(c >= 1 for c in self.d_channels) and len(self.d_channels) >= 1, "d_channels must be widths >= 1")
        check(self.likelihood == "gaussian" and self.perceptual == 0 and not self.conditional
              and not self.flows, "vaegan reconstructs in D's features: leave likelihood, perceptual, "
              "conditional, prior and posterior at their defaults")


class VAEGAN(VAE):
    kind = "vaegan"
    family = "vae"
    Config = VAEGANConfig
    log_prob_type = ""
    phases = (("discriminator", 1), ("encoder", 1), ("decoder", 1))
    diagnostic_plots: dict[str, tuple[str, bool]] = {}

    @classmethod
    def bench_samplers(cls, spec):
        return ()  # the vae represents its family in the trilemma

    def __init__(self, spec, config: VAEGANConfig):
        super().__init__(spec, config)
        arch = "dcgan" if self.arch == "conv" else "mlp"
        if arch == "dcgan" and any(s % 2 ** len(config.d_channels) for s in spec.shape[1:]):
            raise GenlabError(f"image sides {spec.shape[1:]} must be divisible by 2^{len(config.d_channels)} for D's "
                              "stride-2 stages; use fewer d_channels")
        d_cfg = GANConfig(loss="ns", arch=arch, channels=tuple(config.d_channels), hidden=tuple(config.hidden),
                          spectral_norm=True)  # no batch norm: D's features of x~ do not depend on its batch
        self.D = Discriminator(d_cfg, spec.shape if arch == "dcgan" else (spec.dims,), arch, 0)

    def param_groups(self):
        return {"discriminator": list(self.D.parameters()), "encoder": list(self.encoder.parameters()),
                "decoder": list(self.decoder.parameters())}

    def train_defaults(self) -> dict[str, Any]:
        return {**super().train_defaults(), "lr": 2e-4, "betas": (0.5, 0.999), "grad_clip": 0.0, "warmup_steps": 0}

    def _d(self, x: torch.Tensor):
        return self.D(x if self.arch == "conv" else x.flatten(1))

    def _prior_images(self, n: int, like: torch.Tensor) -> torch.Tensor:
        return self.mean_image(self._decode_raw(torch.randn(n, self.config.latent_dim, device=like.device), None))

    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "discriminator", step: int = 0):
        B = x.shape[0]
        mu, logvar = self.posterior(x, None)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        if phase == "discriminator":
            with torch.no_grad():
                fake = torch.cat([self.mean_image(self._decode_raw(z, None)), self._prior_images(B, x)])
            real_logit, _ = self._d(x)
            fake_logit, _ = self._d(fake)
            loss = d_loss("ns", real_logit, fake_logit)
            return loss, {"loss": loss, "real": real_logit.mean(), "fake": fake_logit.mean()}
        x_rec = self.mean_image(self._decode_raw(z, None))
        with torch.no_grad():
            f_real = self._d(x)[1]
        rec_logit, f_rec = self._d(x_rec)
        llike = 0.5 * (f_rec - f_real).pow(2).sum(1).mean()
        if phase == "encoder":
            kl = gaussian_kl(mu, logvar).sum(1).mean()
            loss = kl + llike
            return loss, {"loss": loss, "kl": kl, "feature_recon": llike}
        prior_logit, _ = self._d(self._prior_images(B, x))
        gan = g_loss("ns", torch.cat([rec_logit, prior_logit]))
        loss = self.config.gamma * llike + gan
        return loss, {"loss": loss, "gan": gan, "feature_recon": llike}

    def diagnostics(self, x, y):
        return {}

    log_prob = GenerativeModel.log_prob  # no pixel likelihood: the decoder never fits one
