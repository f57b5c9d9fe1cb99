"""Autoregressive pixel models: `pixelcnn` (masked convolutions, van den Oord et al. 2016a) and `gated-pixelcnn`
(gated vertical and horizontal stacks without the blind spot, class conditioning; van den Oord et al. 2016b).

The density is exact: log P(x) = sum over pixels in raster order of log P(x_i | x_<i), each factor a
distribution over the image's L levels per channel (channels of a pixel independent given the pixels before):
    softmax    an L-way categorical (van den Oord et al. 2016a)
    logistic   a discretised mixture of logistics (Salimans et al. 2017, PixelCNN++ §2.1)
    bernoulli  one bit, for binarised data (L = 2)
`log_prob` is log P(x) in nats of the discrete image, the quantity a flow's dequantised density bounds, so the
two compare in bits/dim directly. Sampling is one pixel at a time, H x W sequential steps: the "why sampling is
slow" of the notes. By default each step uses cached computation (genlab.nn.pixelcnn); `cached=false` re-runs the
whole network per pixel, the naive way, and gives the same samples for the same seed (in float32 on a CPU; where
the two paths round differently, e.g. bf16 or TF32 convolutions, a level can rarely flip and the rest follow).
Under `precision=auto` sampling stays in float32: the cached sampler's small per-pixel convolutions ran 0.80-0.92x
as fast in bf16 as in float32 on a Zen 5 CPU (docs/BENCHMARKS.md §18); training gains 1.9-2.6x and uses bf16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check
from ..data.dataset import from_levels, to_levels
from ..errors import GenlabError
from ..nn import pixelcnn as nets
from ..precision import exact
from .base import GenerativeModel, evaluating, generator, progress_bar

OUTPUTS = ("auto", "softmax", "logistic", "bernoulli")


def _levels(x: torch.Tensor, L: int) -> torch.Tensor:
    """Images in [-1, 1] -> level indices 0..L-1 (long)."""
    return to_levels(x.float().clamp(-1, 1), L).long()


def inverse_cdf(logp: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The index drawn from each row of log-probabilities (..., K) raised to 1/T and renormalised, by inverse CDF
    of the uniforms u (...): long (...). The same u give the same draws wherever the probabilities agree."""
    cdf = torch.softmax(logp.float() / temperature, -1).cumsum(-1)
    return (cdf < u[..., None]).sum(-1).clamp(max=logp.shape[-1] - 1)


class Softmax:
    """An L-way categorical per channel: C * L parameters per pixel."""

    def __init__(self, C: int, L: int, mixtures: int = 0):
        self.C, self.L, self.params = C, L, C * L

    def log_prob(self, out, x):
        B, _, H, W = out.shape
        logp = F.log_softmax(out.float().view(B, self.C, self.L, H, W), 2)
        return logp.gather(2, _levels(x, self.L).unsqueeze(2)).flatten(1).sum(1)

    def level_log_probs(self, out):
        return F.log_softmax(out.float().view(len(out), self.C, self.L), 2)


class Bernoulli:
    """One logit per channel of a binarised image (levels -1 and 1)."""

    def __init__(self, C: int, L: int, mixtures: int = 0):
        if L != 2:
            raise GenlabError(f"output=bernoulli needs binarised data (2 levels), these images have {L}: use "
                              "output=logistic or softmax, or --set data.binarize=true")
        self.C, self.L, self.params = C, L, C

    def log_prob(self, out, x):
        bits = (x > 0).float()
        return -F.binary_cross_entropy_with_logits(out.float(), bits, reduction="none").flatten(1).sum(1)

    def level_log_probs(self, out):
        out = out.float()
        return torch.stack([F.logsigmoid(-out), F.logsigmoid(out)], 2)


class Logistic:
    """A mixture of K discretised logistics per channel (PixelCNN++, Salimans et al. 2017, eq. 2): 3 K C parameters
    per pixel (mixture logits, means, log-scales). Level k of L sits at x_k = 2k/(L-1) - 1 with a bin of half-width
    1/(L-1); the first and last bins take the tails, so the L probabilities sum to 1."""

    def __init__(self, C: int, L: int, mixtures: int = 5):
        self.C, self.L, self.K, self.params = C, L, mixtures, 3 * mixtures * C

    def _split(self, out):
        """(B, 3KC, ...) -> mixture log-weights, means, log-scales, each (B, C, K, ...)."""
        out = out.float().view(len(out), 3, self.C, self.K, *out.shape[2:])
        return F.log_softmax(out[:, 0], 2), out[:, 1], out[:, 2].clamp(min=-7.0)  # PixelCNN++'s floor on log s

    def _log_bin(self, x, k, mean, log_scale):
        """log P(level k) of each logistic: x (level value), k (its index), broadcast with mean, log_scale."""
        inv = torch.exp(-log_scale)
        a = inv * (x - mean + 1 / (self.L - 1))  # upper edge of the bin
        b = inv * (x - mean - 1 / (self.L - 1))  # lower edge
        # log(sigmoid(a) - sigmoid(b)) without cancellation, with b - a = -2 inv / (L - 1) exactly
        mid = a + torch.log(-torch.expm1(-2 * inv / (self.L - 1))) - F.softplus(a) - F.softplus(b)
        return torch.where(k == 0, -F.softplus(-a), torch.where(k == self.L - 1, -F.softplus(b), mid))

    def log_prob(self, out, x):
        logw, mean, log_scale = self._split(out)  # (B, C, K, H, W)
        k = _levels(x, self.L).unsqueeze(2)
        xv = from_levels(k, self.L)
        return torch.logsumexp(logw + self._log_bin(xv, k, mean, log_scale), 2).flatten(1).sum(1)

    def level_log_probs(self, out):
        logw, mean, log_scale = self._split(out)  # (B, C, K)
        k = torch.arange(self.L, device=out.device)
        xv = from_levels(k, self.L)
        lp = self._log_bin(xv, k, mean[..., None], log_scale[..., None])  # (B, C, K, L)
        return torch.logsumexp(logw[..., None] + lp, 2)


@dataclass
class PixelCNNConfig:
    hidden: int = 32  # channels of each masked conv layer (pixelcnn's residual stream: 2 x hidden); sized for a CPU
    blocks: int = 6  # residual blocks after the first 7x7 type-A masked conv
    kernel: int = 3  # kernel of the masked convolutions after the first (odd)
    output: str = "auto"  # auto | softmax | logistic | bernoulli; auto: bernoulli for 2 levels, else logistic
    mixtures: int = 5  # logistic components per channel (output=logistic)
    conditional: bool = False  # condition on the class label

    def __post_init__(self):
        check(self.hidden >= 1 and self.blocks >= 0, "hidden must be >= 1 and blocks >= 0")
        check(self.kernel >= 3 and self.kernel % 2 == 1, f"kernel must be odd and >= 3, got {self.kernel}")
        check(self.output in OUTPUTS, f"output must be one of {', '.join(OUTPUTS)}, got '{self.output}'")
        check(self.mixtures >= 1, f"mixtures must be >= 1, got {self.mixtures}")


@dataclass
class GatedPixelCNNConfig(PixelCNNConfig):
    blocks: int = 8  # gated layers after the first (whose view is 7 wide)


@dataclass
class PixelSampleOptions:
    temperature: float = 1.0  # each pixel's level distribution raised to 1/T and renormalised; < 1 sharper
    cached: bool = True  # cached per-pixel computation; false re-runs the whole network per pixel (same samples)

    def __post_init__(self):
        check(isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
              and self.temperature > 0, f"temperature must be > 0, got {self.temperature}")


class PixelCNN(GenerativeModel):
    kind = "pixelcnn"
    family = "autoregressive"

    @classmethod
    def bench_samplers(cls, spec):
        return ({},) if spec.is_image else ()
    log_prob_type = "exact"
    samples_faster_in_low_precision = False  # see the module docstring
    Config = PixelCNNConfig
    SampleOptions = PixelSampleOptions
    Net = nets.PixelCNN

    def __init__(self, spec, config):
        super().__init__(spec, config)
        if not spec.is_image:
            raise GenlabError(f"{self.kind} models images; {spec.name} is {spec.kind} data (use maf or nsf)")
        C = spec.shape[0]
        self.L = spec.levels or 256
        output = config.output if config.output != "auto" else "bernoulli" if self.L == 2 else "logistic"
        self.out = {"softmax": Softmax, "logistic": Logistic, "bernoulli": Bernoulli}[output](C, self.L,
                                                                                           config.mixtures)
        c = config
        self.net = self.Net(C, self.out.params, c.hidden, c.blocks, c.kernel, classes=self._classes())

    def train_defaults(self):
        return {"lr": 1e-3}

    def forward(self, x, y, phase="model", step=0):
        y = y if self.conditioning == "class" else None
        bpd = -self.out.log_prob(self.net(x, y), x).mean() / (self.spec.dims * math.log(2))
        return bpd, {"loss": bpd.detach(), "nll_bpd": bpd.detach()}

    @torch.no_grad()
    @exact
    @evaluating
    def log_prob(self, x, y=None, **opts) -> torch.Tensor:
        """Exact log P(x) of discrete images, nats: (B, C, H, W) -> (B,)."""
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise GenlabError(f"this {self.kind} models {'x'.join(map(str, self.spec.shape))} images, got "
                              f"{'x'.join(map(str, x.shape[1:]))}")
        x = x.to(self.device)
        if self.conditioning == "class" and y is None:
            raise GenlabError(f"this {self.kind} is conditional: give the labels of the images")
        y = self.check_conditioning(len(x), y, None) if self.conditioning == "class" else None
        return self.out.log_prob(self.net(x, y), x)

    def sample_batch_size(self, n, options):
        return min(n, 100 if options.cached else 16)

    @torch.no_grad()
    @evaluating
    def _sample(self, n, *, seed, labels, options: PixelSampleOptions, progress):
        """Raster order; each pixel's level by inverse CDF of one uniform drawn up front (so cached and naive
        sampling, given the same seed, draw the same levels)."""
        C, H, W = self.spec.shape
        u = torch.rand((n, C, H, W), generator=generator(seed)).to(self.device)
        blank = torch.zeros(n, C, H, W, device=self.device)
        step = self.net.stepper(blank, labels) if options.cached else None
        image = step.image if step is not None else blank
        with progress_bar(progress, H * W, f"{self.kind} sampling") as tick:
            for i in range(H):
                for j in range(W):
                    out = step.at(i, j) if step is not None else self.net(image, labels)[:, :, i, j]
                    level = inverse_cdf(self.out.level_log_probs(out), u[:, :, i, j], options.temperature)
                    image[:, :, i, j] = from_levels(level, self.L).to(image.dtype)
                if tick:
                    tick(W)
        return image.clone(), {"nfe": float(H * W)}


class GatedPixelCNN(PixelCNN):
    kind = "gated-pixelcnn"
    Config = GatedPixelCNNConfig
    Net = nets.GatedPixelCNN
