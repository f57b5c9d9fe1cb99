"""VQ-AR: an autoregressive prior over a trained VQ-VAE's code grid (van den Oord et al. 2017 §3.2 with a PixelCNN;
Esser et al. 2021, "Taming Transformers", with a GPT). The VQ-VAE is another run, named by `vqvae=RUN`, loaded as a
frozen component (recorded by path and sha256). Training encodes each batch to codes (B, h, w) and fits
p(c) = prod_t p(c_t | c_<t) over the h*w codes in raster order; sampling draws the codes one at a time, then the
VQ-VAE decodes them. Images are cut into codes, not pixels, because the sequence is then short: a 7x7 grid is 49
steps where pixels are 784.

prior=transformer: a decoder-only transformer (genlab.nn.transformer, nanoGPT-style blocks; sampled with a
key/value cache);
prior=pixelcnn: a Gated PixelCNN over the grid of code embeddings (genlab.nn.pixelcnn, cached sampling).
The prior's NLL is over codes (nats per image, bits per code), not a likelihood of the image: this kind has no
`log_prob`; `prior_nll` gives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..errors import GenlabError
from ..nn.pixelcnn import GatedPixelCNN
from ..nn.transformer import CausalTransformer
from ..precision import exact
from .base import GenerativeModel, evaluating, generator, progress_bar
from .pixelcnn import PixelSampleOptions, inverse_cdf

PRIORS = ("transformer", "pixelcnn")


@dataclass
class VQARConfig:
    vqvae: str = ""  # run directory of a trained vqvae (required)
    prior: str = "transformer"  # transformer | pixelcnn
    dim: int = 128  # transformer width, or the PixelCNN's channels
    layers: int = 4  # transformer blocks, or gated PixelCNN layers after the first
    heads: int = 4  # attention heads (transformer)
    dropout: float = 0.0  # dropout in the transformer blocks
    conditional: bool = False  # condition on the class label

    def __post_init__(self):
        check(bool(self.vqvae), "vq-ar needs the VQ-VAE run it models: --set vqvae=RUN_DIR")
        check(self.prior in PRIORS, f"prior must be one of {', '.join(PRIORS)}, got '{self.prior}'")
        check(self.dim >= 1 and self.layers >= 1 and self.heads >= 1, "dim, layers and heads must be >= 1")
        check(self.prior != "transformer" or self.dim % self.heads == 0, "dim must be divisible by heads")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class VQARSampleOptions(PixelSampleOptions):
    """temperature: each code's distribution raised to 1/T and renormalised (< 1 sharper); cached: the PixelCNN's
    cached per-position computation, or the transformer's key/value cache; false re-runs the prior on the codes
    so far for each code (the same samples in float32)."""


class VQAR(GenerativeModel):
    kind = "vq-ar"
    family = "autoregressive"
    Config = VQARConfig
    SampleOptions = VQARSampleOptions

    def __init__(self, spec, config):
        super().__init__(spec, config)
        vq = self.component("vqvae")
        if vq.kind != "vqvae":
            raise GenlabError(f"vq-ar models the codes of a vqvae run; {config.vqvae} is a {vq.kind} run "
                              f"(train one with genlab train vqvae --data {spec.name})")
        if tuple(vq.spec.shape) != tuple(spec.shape):
            raise GenlabError(f"the vqvae run models {'x'.join(map(str, vq.spec.shape))} images, this data is "
                              f"{'x'.join(map(str, spec.shape))}: train the prior on the vqvae's data")
        self.K, self.grid = vq.K, vq.grid
        c, classes = config, self._classes()
        if c.prior == "transformer":
            self.net = CausalTransformer(self.K, math.prod(self.grid), c.dim, c.layers, c.heads, c.dropout, classes)
        else:
            self.embed = nn.Embedding(self.K, c.dim)
            self.net = GatedPixelCNN(c.dim, self.K, c.dim, c.layers, classes=classes)

    def train_defaults(self):
        return {"lr": 1e-3}

    def channels_last(self, precision):
        return False  # the images only pass the frozen encoder

    def _logits(self, codes, y):
        """codes (B, h, w) -> logits (B, h*w, K) in raster order."""
        if self.config.prior == "transformer":
            return self.net(codes.flatten(1), y)
        emb = self.embed(codes).permute(0, 3, 1, 2)
        return self.net(emb, y).flatten(2).transpose(1, 2)

    def _nll(self, x, y):
        codes = self.frozen("vqvae").encode(x)
        logits = self._logits(codes, y if self.conditioning == "class" else None).float()
        return F.cross_entropy(logits.transpose(1, 2), codes.flatten(1), reduction="none").sum(1)  # (B,) nats

    def forward(self, x, y, phase="model", step=0):
        nll = self._nll(x, y)
        per_code = nll.mean() / math.prod(self.grid)
        return per_code, {"loss": per_code.detach(), "nll": nll.mean().detach(),
                          "bits_per_code": per_code.detach() / math.log(2)}

    @torch.no_grad()
    @exact
    @evaluating
    def prior_nll(self, x, y=None) -> torch.Tensor:
        """-log p(codes of x) under the prior, nats per image: (B, C, H, W) -> (B,)."""
        if self.conditioning == "class" and y is None:
            raise GenlabError(f"this {self.kind} is conditional: give the labels of the images")
        y = self.check_conditioning(len(x), y, None) if self.conditioning == "class" else None
        return self._nll(x.to(self.device), y)

    @torch.no_grad()
    @evaluating
    def _sample(self, n, *, seed, labels, options: VQARSampleOptions, progress):
        h, w = self.grid
        u = torch.rand((n, h * w), generator=generator(seed)).to(self.device)
        codes = torch.zeros(n, h * w, dtype=torch.long, device=self.device)
        step = cache = None
        if self.config.prior == "pixelcnn" and options.cached:
            step = self.net.stepper(torch.zeros(n, self.config.dim, h, w, device=self.device), labels)
        if self.config.prior == "transformer" and options.cached:
            cache = [{} for _ in self.net.blocks]  # keys and values of the codes written so far
        with progress_bar(progress, h * w, f"{self.kind} sampling") as tick:
            for t in range(h * w):
                i, j = divmod(t, w)
                if cache is not None:
                    logits = self.net.next_logits(codes, t, labels, cache)
                elif self.config.prior == "transformer":
                    logits = self.net(codes[:, :t + 1], labels)[:, t]
                elif step is not None:
                    logits = step.at(i, j)
                else:
                    logits = self._logits(codes.view(n, h, w), labels)[:, t]
                codes[:, t] = inverse_cdf(torch.log_softmax(logits.float(), -1), u[:, t], options.temperature)
                if step is not None:
                    step.image[:, :, i, j] = self.embed(codes[:, t])
                if tick:
                    tick()
        return self.frozen("vqvae").decode(codes.view(n, h, w)), {"nfe": float(h * w)}
