"""Kind `hvae`: a hierarchical VAE with top-down inference (Sønderby et al. 2016, "Ladder Variational
Autoencoders"; the residual parameterisation and cells of NVAE, Vahdat & Kautz 2020), small enough for CPUs.

Groups of latent maps at two scales (H/4 and H/2: 7x7 and 14x14 for 28x28 images), `groups` per scale:

    bottom-up:  x -> stem -> [cell, down] -> feature map per scale (shared by that scale's groups)
    top-down:   h = a learned map at H/4; for each group i, coarse to fine:
                    p(z_i | z_<i)     = N(mu_p, sigma_p)              from h
                    q(z_i | x, z_<i)  = N(mu_p + dmu, sigma_p dsigma)  from h and the scale's features (NVAE eq. 3)
                    h = cell(h + conv1x1(z_i)); between the scales h is upsampled x2
                then h is upsampled to H x W and a conv head gives the decoder's mean
    ELBO = E_q[log p(x | z)] - sum_i E_q[KL(q(z_i | x, z_<i) || p(z_i | z_<i))], each KL in closed form given the
    sampled z_<i. The likelihood is the σ-VAE's (a Gaussian with one learned sigma on dequantised pixels), so
    bounds are on the 8-bit images, in the same units as `vae`'s. log_prob: the ELBO, or the importance-weighted
    bound with k samples of the whole hierarchy (Burda et al. 2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import check
from ..data.dataset import dequantize
from ..errors import GenlabError
from ..nn.blocks import zero_
from ..precision import exact, fp32
from .base import GenerativeModel, evaluating, generator
from .vae import gaussian_log_density


@dataclass
class HVAEConfig:
    channels: tuple[int, int] = (32, 64)  # widths at H/2 and H/4
    latent_channels: int = 4  # channels of each group's latent map
    groups: int = 2  # latent groups per scale (2 scales)
    beta: float = 1.0  # weight of the KL terms
    kl_warmup_steps: int = 0  # the KL weight grows linearly from 0 to beta over these steps (NVAE warms up)

    def __post_init__(self):
        check(len(self.channels) == 2 and all(c >= 1 for c in self.channels), "channels must be two widths >= 1 "
              f"(H/2 and H/4), got {self.channels}")
        check(self.latent_channels >= 1 and self.groups >= 1, "latent_channels and groups must be >= 1")
        check(self.beta >= 0 and self.kl_warmup_steps >= 0, "beta and kl_warmup_steps must be >= 0")


@dataclass
class HVAESampleOptions:
    temperature: float = 1.0  # scales every prior's std (NVAE samples at 0.6-0.9); 1: the model's own prior
    # NVAE (Vahdat & Kautz 2020, Sec. 5): training gathers the batch-norm statistics on the posterior path; sampling
    # runs the prior's. This many prior batches (at the temperature) re-estimate them first; 0 keeps the stored ones.
    bn_readjust: int = 0  # prior batches that re-estimate the batch norms' statistics before sampling; 0: off

    def __post_init__(self):
        check(math.isfinite(self.temperature) and self.temperature > 0,
              f"temperature must be a positive number, got {self.temperature}")
        check(isinstance(self.bn_readjust, int) and self.bn_readjust >= 0,
              f"bn_readjust must be a whole number of batches >= 0, got {self.bn_readjust}")


def gaussian_kl2(mu_q, logvar_q, mu_p, logvar_p) -> torch.Tensor:
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))) elementwise, closed form."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p) - 1)


class Cell(nn.Module):
    """NVAE-style residual cell: x + conv(SiLU(conv(SiLU(BN(x))))), the branch starting at zero."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(c), nn.SiLU(), nn.Conv2d(c, c, 3, padding=1), nn.SiLU(),
                                  zero_(nn.Conv2d(c, c, 3, padding=1)))

    def forward(self, x):
        return x + self.body(x)


class HVAE(GenerativeModel):
    kind = "hvae"
    family = "vae"
    data_kinds = ("image",)
    log_prob_type = "bound"
    Config = HVAEConfig
    SampleOptions = HVAESampleOptions
    diagnostic_plots = {"kl_per_group": ("KL per latent group at the end of training (nats, coarse to fine)", False)}

    def __init__(self, spec, config: HVAEConfig):
        super().__init__(spec, config)
        C, H, W = spec.shape
        if H % 4 or W % 4:
            raise GenlabError(f"hvae halves the image twice; {H}x{W} is not divisible by 4")
        c1, c2 = config.channels
        zc, G = config.latent_channels, config.groups
        self.stem = nn.Conv2d(C, c1, 3, padding=1)
        self.down1 = nn.Sequential(Cell(c1), nn.Conv2d(c1, c1, 3, stride=2, padding=1), Cell(c1))  # -> H/2
        self.down2 = nn.Sequential(nn.Conv2d(c1, c2, 3, stride=2, padding=1), Cell(c2))  # -> H/4
        self.h0 = nn.Parameter(torch.zeros(c2, H // 4, W // 4))
        widths = [c2] * G + [c1] * G  # the top-down state's width at each group, coarse to fine
        self.prior = nn.ModuleList([nn.Conv2d(c, 2 * zc, 3, padding=1) for c in widths])
        self.post = nn.ModuleList([zero_(nn.Conv2d(2 * c, 2 * zc, 3, padding=1)) for c in widths])  # starts at p
        self.inject = nn.ModuleList([nn.Conv2d(zc, c, 1) for c in widths])
        self.cells = nn.ModuleList([Cell(c) for c in widths])
        self.up1 = nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1)  # H/4 -> H/2
        self.up2 = nn.Sequential(nn.ConvTranspose2d(c1, c1, 4, stride=2, padding=1), Cell(c1), nn.SiLU(),
                                 nn.Conv2d(c1, C, 3, padding=1))  # H/2 -> H, the decoder's mean
        self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))  # σ-VAE: one learned decoder std
        self.log_offset = -spec.dims * math.log((spec.levels or 256) / 2)  # bits of the 8-bit image (as vae)

    def train_defaults(self):
        return {"lr": 2e-3}

    # ---- the two passes
    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Bottom-up features, one per scale, coarse first: [(B, c2, H/4, W/4), (B, c1, H/2, W/2)]."""
        f1 = self.down1(self.stem(x))
        return [self.down2(f1), f1]

    def _top_down(self, feats: list[torch.Tensor] | None, n: int, eps: list[torch.Tensor] | None = None,
                  temperature: float = 1.0, use_mean: bool = False):
        """Run the hierarchy: with `feats` (inference) each group draws from q, else from p (sampling).
        eps: standard-normal draws per group (default fresh); use_mean: take each distribution's mean.
        Returns (decoder mean (B, C, H, W), [(z, mu_q, logvar_q, mu_p, logvar_p) per group])."""
        G, groups = self.config.groups, []
        h = self.h0[None].expand(n, -1, -1, -1)
        for i in range(2 * G):
            if i == G:
                h = self.up1(h)
            mu_p, logvar_p = fp32(self.prior[i](h)).chunk(2, 1)
            logvar_p = logvar_p.clamp(-10, 10)
            if feats is None:
                mu, logvar = mu_p, logvar_p + 2 * math.log(temperature)
            else:
                d_mu, d_logvar = fp32(self.post[i](torch.cat([h, feats[i // G]], 1))).chunk(2, 1)
                mu, logvar = mu_p + d_mu, (logvar_p + d_logvar).clamp(-10, 10)
            e = eps[i] if eps is not None else torch.randn_like(mu)
            z = mu if use_mean else mu + torch.exp(0.5 * logvar) * e
            groups.append((z, mu, logvar, mu_p, logvar_p))
            h = self.cells[i](h + self.inject[i](z.to(h.dtype)))
        return fp32(self.up2(h)), groups

    def _log_px(self, t: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        logvar = (2 * self.log_sigma).clamp(min=-10).expand_as(mean)
        return gaussian_log_density(t, mean, logvar).flatten(1).sum(1)

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        return dequantize(x, self.spec.levels or 256)

    # ---- training
    def forward(self, x, y, phase="model", step=0):
        t = self._target(x)
        mean, groups = self._top_down(self._features(t), len(x))
        rec = self._log_px(t, mean)
        kls = torch.stack([gaussian_kl2(mu, lv, mp, lp).flatten(1).sum(1) for _, mu, lv, mp, lp in groups], 1)
        kl = kls.sum(1)
        c = self.config
        w = c.beta * min(1.0, (step + 1) / c.kl_warmup_steps) if c.kl_warmup_steps else c.beta
        D = self.spec.dims
        loss = (-rec.mean() + w * kl.mean()) / D
        nelbo = (kl - rec).mean().detach() - self.log_offset
        return loss, {"loss": loss.detach(), "nelbo": nelbo, "nelbo_bpd": nelbo / (D * math.log(2)),
                      "recon": -rec.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def diagnostics(self, x, y):
        kls = self._kl_per_group(self._target(x))
        return {"kl_per_group": [round(float(v), 4) for v in kls]}

    @evaluating
    def _kl_per_group(self, t):
        _, groups = self._top_down(self._features(t), len(t))
        return [gaussian_kl2(mu, lv, mp, lp).flatten(1).sum(1).mean() for _, mu, lv, mp, lp in groups]

    # ---- capabilities
    @evaluating
    @exact
    def elbo(self, x, y=None) -> torch.Tensor:
        """Per-example ELBO in nats (one draw of the hierarchy, each KL in closed form given the draws above it)."""
        t = self._target(x)
        mean, groups = self._top_down(self._features(t), len(x))
        kl = sum(gaussian_kl2(mu, lv, mp, lp).flatten(1).sum(1) for _, mu, lv, mp, lp in groups)
        return self._log_px(t, mean) - kl + self.log_offset

    @torch.no_grad()
    @evaluating
    @exact
    def log_prob(self, x, y=None, k: int = 1) -> torch.Tensor:
        """Per-example lower bound on log P(x) in nats: the ELBO (k = 1), or log (1/k) sum_j p(x, z^j) /
        q(z^j | x) over k draws of the whole hierarchy (Burda et al. 2016)."""
        if k < 1:
            raise GenlabError(f"k (importance samples) must be >= 1, got {k}")
        if k == 1:
            return self.elbo(x)
        t = self._target(x)
        feats = self._features(t)
        logw = []
        for _ in range(k):
            mean, groups = self._top_down(feats, len(x))
            lw = self._log_px(t, mean)
            for z, mu, lv, mp, lp in groups:
                lw = lw + (gaussian_log_density(z, mp, lp) - gaussian_log_density(z, mu, lv)).flatten(1).sum(1)
            logw.append(lw)
        return torch.logsumexp(torch.stack(logw), 0) - math.log(k) + self.log_offset

    @torch.no_grad()
    @evaluating
    def reconstruct(self, x, y=None):
        """The decoder's mean with every group at its posterior mean."""
        return self._top_down(self._features(x), len(x), use_mean=True)[0].clamp(-1, 1)

    def _prior_eps(self, n: int, g: torch.Generator) -> list[torch.Tensor]:
        """Standard-normal draws for every group of n samples, coarse to fine."""
        shapes = [(n, self.config.latent_channels, *self.h0.shape[1:])] * self.config.groups
        shapes += [(n, self.config.latent_channels, 2 * self.h0.shape[1], 2 * self.h0.shape[2])] * self.config.groups
        return [torch.randn(s, generator=g).to(self.device) for s in shapes]

    @torch.no_grad()
    @evaluating
    def _sample(self, n, *, seed, labels, options: HVAESampleOptions, progress):
        """Ancestral sampling down the hierarchy from the priors (temperature scales their std); decoder means.
        With bn_readjust the top-down batch norms first re-estimate their statistics on that many prior batches
        (of min(n, 256) samples, in train mode, a cumulative average); the stored statistics are restored after."""
        g = generator(seed)
        eps = self._prior_eps(n, g)  # the same draws with and without bn_readjust
        if not options.bn_readjust:
            return self._top_down(None, n, eps, options.temperature)[0], {}
        norms = [m for m in [*self.cells.modules(), *self.up2.modules()] if isinstance(m, nn.BatchNorm2d)]
        saved = [(bn.momentum, {k: v.clone() for k, v in bn.state_dict().items()}) for bn in norms]
        try:
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None  # the running statistics become the plain average over the batches
                bn.train()
            b = min(n, 256)
            for _ in range(options.bn_readjust):
                self._top_down(None, b, self._prior_eps(b, g), options.temperature)
            for bn in norms:
                bn.eval()
            return self._top_down(None, n, eps, options.temperature)[0], {}
        finally:
            for bn, (momentum, state) in zip(norms, saved):
                bn.momentum = momentum
                bn.load_state_dict(state)
