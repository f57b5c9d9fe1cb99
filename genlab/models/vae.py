"""Variational autoencoder (Kingma & Welling 2014), with β-VAE (Higgins et al. 2017), KL annealing
(Bowman et al. 2016), free bits (Kingma et al. 2016), conditional VAE (Sohn et al. 2015), the importance-weighted
bound (Burda et al. 2016), the active-units diagnostic of posterior collapse (Burda et al. 2016), and a learned
flow prior and a flow posterior, the notes' "Flow + VAE": `prior=flow` learns p(z) as a masked autoregressive
flow (Chen et al. 2017, "Variational Lossy Autoencoder" §3.3), so the prior fits the aggregate posterior instead
of every posterior being pulled towards N(0, I); `posterior=flow` maps the Gaussian posterior's draw through
coupling transforms conditioned on the encoder's output (the inverse-autoregressive idea of Kingma et al. 2016,
with zuko's two-pass MADE couplings), so q(z | x) need not be a diagonal Gaussian. With either, the KL term is the
one-sample estimate log q(z | x) - log p(z).

Likelihoods: `gaussian` (mean and, unless `sigma` is fixed, a per-dimension log-variance from the decoder) on
uniformly dequantised images, so bounds are on the 8-bit images themselves; `bernoulli` on binarised images
(dynamic binarisation in training, threshold 0.5 in evaluation, as in Burda et al.).

Precision (genlab.precision): under bf16/fp16 the encoder and decoder run in autocast and their outputs are cast
to float32, so the KL and likelihood terms of the loss are float32; `elbo` and `log_prob` run with autocast off
altogether, so an evaluated bound is the same number in every precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..data.dataset import dequantize
from ..errors import GenlabError
from ..nn.perceptual import PerceptualLoss
from ..precision import autocast_off, exact
from .base import evaluating, generator, randn
from .latent import LatentConfig, LatentModel

LOG2PI = math.log(2 * math.pi)


@dataclass
class VAEConfig(LatentConfig):
    likelihood: str = "gaussian"  # gaussian | bernoulli
    sigma: float | None = None  # fixed decoder std (data units); None: learned (see sigma_mode)
    sigma_mode: str = "shared"  # learned sigma: one shared scalar (σ-VAE, Rybkin et al. 2021) | pixel (per dim)
    beta_nll: float = 0.0  # pixel sigma: weight each dim's NLL by stop-grad(sigma^2)^beta_nll (Seitzer et al. 2022)
    binarize: bool = True  # bernoulli only: binarise targets (needed for log_prob to be a likelihood)
    beta: float = 1.0  # weight of the KL term (β-VAE)
    kl_warmup_steps: int = 0  # KL annealing: the KL weight grows linearly from 0 to beta over these steps
    free_bits: float = 0.0  # floor, in nats, on each latent dimension's batch-mean KL
    perceptual: float = 0.0  # weight of a perceptual loss in the shipped classifier's features (images; 0 = off)
    prior: str = "gaussian"  # gaussian: N(0, I) | flow: a learned MAF prior over z (needs zuko: genlab[flows])
    prior_transforms: int = 4  # prior=flow: autoregressive transforms (each a MADE of two 128-wide layers)
    posterior: str = "gaussian"  # gaussian: N(mu, diag sigma^2) | flow: that draw mapped by a conditional flow
    posterior_transforms: int = 4  # posterior=flow: coupling transforms conditioned on the encoder's (mu, logvar)

    def __post_init__(self):
        super().__post_init__()
        check(self.likelihood in ("gaussian", "bernoulli"),
              f"likelihood must be gaussian or bernoulli, got '{self.likelihood}'")
        check(self.sigma is None or self.sigma > 0, f"sigma must be > 0 (or unset to learn it), got {self.sigma}")
        check(self.sigma_mode in ("shared", "pixel"), f"sigma_mode must be shared or pixel, got '{self.sigma_mode}'")
        check(0 <= self.beta_nll <= 1, f"beta_nll must be in [0, 1], got {self.beta_nll}")
        check(self.beta >= 0, f"beta must be >= 0, got {self.beta}")
        check(self.kl_warmup_steps >= 0, f"kl_warmup_steps must be >= 0, got {self.kl_warmup_steps}")
        check(self.free_bits >= 0, f"free_bits must be >= 0, got {self.free_bits}")
        check(self.perceptual >= 0, f"perceptual must be >= 0, got {self.perceptual}")
        check(self.prior in ("gaussian", "flow"), f"prior must be gaussian or flow, got '{self.prior}'")
        check(self.posterior in ("gaussian", "flow"), f"posterior must be gaussian or flow, got '{self.posterior}'")
        check(self.prior_transforms >= 1 and self.posterior_transforms >= 1, "prior_transforms and "
              f"posterior_transforms must be >= 1, got {self.prior_transforms} and {self.posterior_transforms}")
        check(not self.flows or self.free_bits == 0, "free_bits is per latent dimension of the KL between "
              "Gaussians; with a flow prior or posterior the KL does not split by dimension: set free_bits=0")

    @property
    def flows(self) -> bool:
        """Whether the prior or the posterior is a flow (then the KL is estimated, not closed-form)."""
        return self.prior == "flow" or self.posterior == "flow"


@dataclass
class VAESampleOptions:
    mean: bool = True  # decode to the decoder's mean (true) or draw from p(x|z) (false)


def perceptual_loss(spec) -> PerceptualLoss:
    """The perceptual loss in the features of the classifier genlab ships for the data's metrics."""
    from ..metrics.features import SHIPPED, extractor_for

    if not spec.is_image or spec.name not in SHIPPED:
        raise GenlabError(f"perceptual needs a classifier of {spec.name}'s images; genlab ships them for "
                          f"{', '.join(SHIPPED)}")
    return PerceptualLoss(extractor_for(spec.name).net.body)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per dimension, closed form."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(logvar)) elementwise."""
    return -0.5 * ((x - mean).pow(2) * torch.exp(-logvar) + logvar + LOG2PI)


class VAE(LatentModel):
    kind = "vae"
    family = "vae"
    diagnostic_plots = {"kl_per_dim": ("KL per latent dimension at the end of training (nats, sorted)", True)}

    @classmethod
    def bench_samplers(cls, spec):
        return ({},)
    Config = VAEConfig
    SampleOptions = VAESampleOptions
    log_prob_type = "bound"

    def __init__(self, spec, config: VAEConfig):
        learned = config.likelihood == "gaussian" and config.sigma is None
        per_pixel = learned and config.sigma_mode == "pixel"
        super().__init__(spec, config, enc_out=2 * config.latent_dim, out_factor=2 if per_pixel else 1)
        if config.likelihood == "bernoulli" and not spec.is_image:
            raise GenlabError(f"likelihood=bernoulli needs image data; {spec.name} is {spec.kind}: use gaussian")
        self.learned_sigma, self.per_pixel = learned, per_pixel
        if learned and not per_pixel:
            self.log_sigma = nn.Parameter(torch.tensor(math.log(0.1)))
        if per_pixel:  # start the log-variance at sigma = 0.1 rather than 1, else it takes epochs to drift there
            last = self.decoder.out if self.arch == "conv" else self.decoder[-1]
            with torch.no_grad():
                last.bias[last.bias.numel() // 2:] = 2 * math.log(0.1)
        # log P(8-bit image) >= E_u log p(dequantised) - D log(L/2): the bin width is 2/L in model space
        dequant = spec.is_image and config.likelihood == "gaussian"
        self.log_offset = -spec.dims * math.log((spec.levels or 256) / 2) if dequant else 0.0
        if config.perceptual > 0:
            self._frozen["perceptual"] = perceptual_loss(spec)
        if config.flows:
            from .flows.vector import _zuko

            L = config.latent_dim
            if config.prior == "flow":
                self.prior_flow = _zuko().flows.MAF(L, 0, transforms=config.prior_transforms,
                                                    hidden_features=(128, 128))
            if config.posterior == "flow":  # passes=2: couplings, one pass in either direction
                self.posterior_flow = _zuko().flows.MAF(L, 2 * L, transforms=config.posterior_transforms,
                                                        hidden_features=(128, 128), passes=2)

    # ---- pieces
    def mean_image(self, raw: torch.Tensor) -> torch.Tensor:
        """The decoder's mean in model space (images or vectors), from its raw output (B, out_factor, *shape)."""
        return torch.sigmoid(raw[:, 0]) * 2 - 1 if self.config.likelihood == "bernoulli" else raw[:, 0]

    def target(self, x: torch.Tensor) -> torch.Tensor:
        """What the likelihood scores: dequantised images (gaussian), binarised images (bernoulli), or x."""
        c = self.config
        if c.likelihood == "bernoulli":
            p = (x + 1) / 2
            if not c.binarize:
                return p
            return torch.bernoulli(p) if self.training else (p > 0.5).float()
        if self.spec.is_image:
            return dequantize(x, self.spec.levels or 256)
        return x

    def posterior(self, t: torch.Tensor, y) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._encode_raw(t * 2 - 1 if self.config.likelihood == "bernoulli" else t, y)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-20, 10)

    def log_px(self, t: torch.Tensor, raw: torch.Tensor, weighted: bool = False) -> torch.Tensor:
        """Per-example log p(t | z) summed over dimensions; raw: (B, out_factor, *shape). weighted=True applies
        the β-NLL training weights (the value is then no longer a log-likelihood)."""
        if self.config.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(raw[:, 0], t, reduction="none").flatten(1).sum(1)
        logvar = self.decoder_logvar(raw)
        lp = gaussian_log_density(t, raw[:, 0], logvar)
        if weighted and self.per_pixel and self.config.beta_nll > 0:
            lp = lp * torch.exp(self.config.beta_nll * logvar.detach())
        return lp.flatten(1).sum(1)

    def decoder_logvar(self, raw: torch.Tensor) -> torch.Tensor:
        """log sigma^2 of the Gaussian decoder, broadcastable to the data: fixed, shared or per dimension."""
        if self.per_pixel:
            return -10 + F.softplus(raw[:, 1] + 10)  # soft floor at exp(-10) for stability
        if self.learned_sigma:
            return (2 * self.log_sigma).clamp(min=-10).expand_as(raw[:, 0])
        return torch.full_like(raw[:, 0], 2 * math.log(self.config.sigma))

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per example (B,): N(0, I), or the flow prior's exact density (in float32)."""
        if self.config.prior == "gaussian":
            return (-0.5 * (z.pow(2) + LOG2PI)).sum(-1)
        with autocast_off(z.device):
            return self.prior_flow().log_prob(z.to(self.prior_dtype))

    @property
    def prior_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype  # float32 (float64 in the gradient checks)

    def draw_posterior(self, mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
        """(z, log q(z | x)) from standard-normal noise eps (..., B, L) for posterior parameters (B, L): the
        Gaussian draw mu + sigma eps, or (posterior=flow) that draw mapped through the flow conditioned on
        (mu, logvar), log q reduced by the map's log |det| (change of variables)."""
        z0 = mu + torch.exp(0.5 * logvar) * eps
        log_q = (-0.5 * (eps.pow(2) + LOG2PI) - 0.5 * logvar).sum(-1)
        if self.config.posterior == "gaussian":
            return z0, log_q
        L, dtype = mu.shape[-1], self.prior_dtype
        ctx = torch.cat([mu, logvar], -1).expand(*z0.shape[:-1], 2 * L)
        with autocast_off(z0.device):
            z, ladj = self.posterior_flow(ctx.reshape(-1, 2 * L).to(dtype)).transform.inv.call_and_ladj(
                z0.reshape(-1, L).to(dtype))
        return z.view(z0.shape), log_q - ladj.view(log_q.shape)

    def kl(self, z: torch.Tensor, log_q: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || p(z)) per example (B,): closed form when both are Gaussian, else the one-sample
        estimate log q(z | x) - log p(z) at the posterior draw z (unbiased; its gradient is the ELBO's)."""
        if not self.config.flows:
            return gaussian_kl(mu, logvar).sum(1)
        return log_q - self.log_prior(z)

    def prior_sample(self, n: int, g: torch.Generator | None) -> torch.Tensor:
        """(n, L) draws from the prior; a flow's maps seeded N(0, I) noise through its inverse."""
        eps = randn((n, self.config.latent_dim), g, self.device)
        if self.config.prior == "gaussian":
            return eps
        with autocast_off(eps.device):
            return self.prior_flow().transform.inv(eps.to(self.prior_dtype))

    def kl_weight(self, step: int) -> float:
        c = self.config
        return c.beta * min(1.0, (step + 1) / c.kl_warmup_steps) if c.kl_warmup_steps else c.beta

    # ---- training
    def forward(self, x, y, phase="model", step=0):
        y = y if self.n_cond else None
        t = self.target(x)
        mu, logvar = self.posterior(t, y)
        z, log_q = self.draw_posterior(mu, logvar, torch.randn_like(mu))
        raw = self._decode_raw(z, y)
        rec = self.log_px(t, raw)  # (B,)
        rec_train = self.log_px(t, raw, weighted=True) if self.config.beta_nll > 0 else rec
        kl_dims = gaussian_kl(mu, logvar)  # (B, L), to N(0, I)
        kl = self.kl(z, log_q, mu, logvar)
        if self.config.free_bits > 0:
            kl_term = kl_dims.mean(0).clamp(min=self.config.free_bits).sum()
        else:
            kl_term = kl.mean()
        w = self.kl_weight(step)
        D = self.spec.dims
        loss = (-rec_train.mean() + w * kl_term) / D  # per dimension, so learning rates carry across data sizes
        nelbo = (kl - rec).mean().detach() - self.log_offset
        logs = {"loss": loss.detach(), "nelbo": nelbo, "recon": -rec.mean().detach(), "kl": kl.mean().detach(),
                "kl_weight": torch.tensor(w)}
        if self.config.perceptual > 0:  # the loss is then no longer the negative ELBO; nelbo still is
            perc = self.frozen("perceptual")(self.mean_image(raw), x).mean()
            loss = loss + self.config.perceptual * perc
            logs |= {"loss": loss.detach(), "perceptual": perc.detach()}
        if self.spec.is_image:
            logs["nelbo_bpd"] = nelbo / (D * math.log(2))
        return loss, logs

    @torch.no_grad()
    def diagnostics(self, x, y):
        """Posterior-collapse diagnostics on a fixed batch: KL per latent dimension (nats) and the number of
        active units, Cov_x(E_q[z_i]) > 0.01 (Burda et al. 2016)."""
        mu, logvar = self._posterior_eval(self.target(x), y if self.n_cond else None)
        out = {"active_units": int((mu.var(0) > 0.01).sum())}
        if not self.config.flows:  # with a flow the KL does not split by dimension
            out["kl_per_dim"] = [round(float(v), 5) for v in gaussian_kl(mu, logvar).mean(0)]
        return out

    @evaluating
    def _posterior_eval(self, t, y):
        return self.posterior(t, y)

    # ---- capabilities
    def encode(self, x, y=None):
        """Posterior means (B, L) (posterior=flow: the flow's image of the Gaussian's mean); images are scored
        un-dequantised here."""
        mu, logvar = self.posterior((x + 1) / 2 if self.config.likelihood == "bernoulli" else x, y)
        return mu if self.config.posterior == "gaussian" else self.draw_posterior(mu, logvar, torch.zeros_like(mu))[0]

    def decode(self, z, y=None):
        x = self.mean_image(self._decode_raw(z, y))
        return x.clamp(-1, 1) if self.spec.is_image else x

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x, y), y)

    def _check_likelihood(self):
        if self.config.likelihood == "bernoulli" and not self.config.binarize:
            raise GenlabError("a bernoulli decoder on non-binary targets (binarize=false) defines no likelihood; "
                              "train with binarize=true or likelihood=gaussian")

    @exact
    def elbo(self, x, y=None) -> torch.Tensor:
        """Per-example ELBO in nats (analytic KL, one z sample), a lower bound on log P(x)."""
        self._check_likelihood()
        y = y if self.n_cond else None
        t = self.target(x)
        mu, logvar = self.posterior(t, y)
        z, log_q = self.draw_posterior(mu, logvar, torch.randn_like(mu))
        return self.log_px(t, self._decode_raw(z, y)) - self.kl(z, log_q, mu, logvar) + self.log_offset

    @torch.no_grad()
    @exact
    def log_prob(self, x, y=None, k: int = 1, chunk: int = 4096) -> torch.Tensor:
        """Per-example lower bound on log P(x) in nats: the ELBO for k = 1, the importance-weighted bound
        log (1/k) sum_i p(x, z_i)/q(z_i|x) for k > 1 (Burda et al. 2016), which tightens as k grows.
        An evaluation: no graph is kept (train through `elbo`, which keeps one)."""
        if k < 1:
            raise GenlabError(f"k (importance samples) must be >= 1, got {k}")
        if k == 1:
            return self.elbo(x, y)
        self._check_likelihood()
        y = y if self.n_cond else None
        t = self.target(x)
        mu, logvar = self.posterior(t, y)
        B, L = mu.shape
        per = max(1, chunk // B)
        logw = []
        for start in range(0, k, per):
            kc = min(per, k - start)
            z, log_qz = self.draw_posterior(mu, logvar, torch.randn(kc, B, L, device=mu.device, dtype=mu.dtype))
            yy = None if y is None else y.repeat(kc)
            rec = self.log_px(t.repeat(kc, *[1] * (t.dim() - 1)), self._decode_raw(z.flatten(0, 1), yy)).view(kc, B)
            log_pz = self.log_prior(z.flatten(0, 1)).view(kc, B)
            logw.append(rec + log_pz - log_qz)
        return torch.logsumexp(torch.cat(logw), 0) - math.log(k) + self.log_offset

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: VAESampleOptions, progress):
        """Decode z ~ N(0, I): the decoder's mean (the usual picture), or with mean=False a draw from p(x|z)."""
        g = generator(seed)
        z = self.prior_sample(n, g)
        if options.mean:
            return self.decode(z, labels), {}
        raw = self._decode_raw(z, labels)
        if self.config.likelihood == "bernoulli":
            return torch.bernoulli(torch.sigmoid(raw[:, 0]).cpu(), generator=g).to(self.device) * 2 - 1, {}
        std = torch.exp(0.5 * self.decoder_logvar(raw))
        x = raw[:, 0] + std * randn(tuple(raw[:, 0].shape), g, self.device)
        return (x.clamp(-1, 1) if self.spec.is_image else x), {}
