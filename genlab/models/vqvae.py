"""VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning"): an encoder to a grid of vectors,
each replaced by its nearest codebook entry, a decoder from the quantised grid. The quantiser is
vector-quantize-pytorch's (maintained, MIT): codebook updated by exponential moving averages (the paper's
Appendix A.1, decay 0.99), k-means initialisation on the first batch, and dead-code expiry (codes used less than
`dead_code_threshold` times on the EMA count are re-seeded from the batch); the encoder's gradient passes the
quantiser straight through (z + sg(q - z)). Loss: ||x - D(q)||^2 + beta ||z - sg(q)||^2 (beta = `commitment`).

`encode` gives the code indices (B, h, w), `decode` images from indices, `reconstruct` both. A VQ-VAE alone has no
prior: `sample` draws every code independently from its frequency in training (the EMA counts), the baseline a
learned prior (`vq-ar`) is measured against. Codebook usage is logged: perplexity exp(H(codes)) of each batch,
and in diagnostics the codes a fixed batch leaves unused ("dead").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import check
from ..errors import GenlabError
from ..nn import ConvDecoder, ConvEncoder
from ..precision import autocast_off, exact
from .base import GenerativeModel, evaluating, generator


def _vector_quantize():
    try:
        from vector_quantize_pytorch import VectorQuantize
    except ImportError:
        raise GenlabError("vqvae needs vector-quantize-pytorch: pip install 'genlab[vq]' "
                          "(or pip install vector-quantize-pytorch)") from None
    return VectorQuantize


@dataclass
class VQVAEConfig:
    channels: tuple[int, ...] = (64, 128)  # stride-2 conv stages (two take 28x28 images to a 7x7 code grid)
    codebook_size: int = 256  # K codes
    code_dim: int = 32  # dimension of each code vector
    decay: float = 0.99  # EMA decay of the codebook (van den Oord et al. 2017, A.1)
    commitment: float = 0.25  # beta, the commitment loss weight (van den Oord et al. 2017, eq. 3)
    kmeans_init: bool = True  # start the codebook from k-means on the first batch's encodings
    dead_code_threshold: float = 2.0  # re-seed codes whose EMA usage count falls below this (0: never)

    def __post_init__(self):
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels must be positive")
        check(self.codebook_size >= 2 and self.code_dim >= 1, "codebook_size must be >= 2 and code_dim >= 1")
        check(0 < self.decay < 1, f"decay must be in (0, 1), got {self.decay}")
        check(self.commitment >= 0 and self.dead_code_threshold >= 0, "commitment and dead_code_threshold >= 0")


def perplexity(codes: torch.Tensor, K: int) -> torch.Tensor:
    """exp of the entropy of the code histogram: K when every code is used equally, 1 when one code is used."""
    p = torch.bincount(codes.flatten(), minlength=K).float()
    p = p / p.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


class VQVAE(GenerativeModel):
    kind = "vqvae"
    diagnostic_plots = {"code_usage": ("codebook usage at the end of training (share of code positions, sorted)",
                                       True)}
    family = "autoencoder"
    Config = VQVAEConfig

    def __init__(self, spec, config):
        super().__init__(spec, config)
        if not spec.is_image:
            raise GenlabError(f"vqvae models images (a spatial code grid); {spec.name} is {spec.kind} data")
        c = config
        self.encoder = ConvEncoder(spec.shape, c.channels, c.code_dim, spatial=True)
        self.decoder = ConvDecoder(c.code_dim, spec.shape, tuple(reversed(c.channels)), spatial=True)
        self.vq = _vector_quantize()(dim=c.code_dim, codebook_size=c.codebook_size, decay=c.decay,
                                     commitment_weight=c.commitment, kmeans_init=c.kmeans_init,
                                     threshold_ema_dead_code=c.dead_code_threshold, accept_image_fmap=True,
                                     channel_last=False,
                                     rotation_trick=False)  # the paper's straight-through gradient
        _, H, W = spec.shape
        f = 2 ** len(c.channels)
        self.grid = (H // f, W // f)

    @property
    def K(self) -> int:
        return self.config.codebook_size

    def train_defaults(self):
        return {"lr": 1e-3}

    def channels_last(self, precision):
        return False  # the quantiser reshapes its input; not measured otherwise

    def _quantise(self, x):
        z = self.encoder(x)
        with autocast_off(z.device):  # distances to the codebook in float32
            q, codes, commit = self.vq(z.float())
        return q, codes, commit

    @torch.no_grad()
    def on_fit_start(self, x, y):
        """k-means start of the codebook on the first batch's encodings (when kmeans_init)."""
        self._quantise(x)

    def forward(self, x, y, phase="model", step=0):
        q, codes, commit = self._quantise(x)
        recon = F.mse_loss(self.decoder(q).float(), x.float())
        loss = recon + commit.sum()
        return loss, {"loss": loss.detach(), "recon_mse": recon.detach(), "commit": commit.detach().sum(),
                      "perplexity": perplexity(codes, self.K)}

    @torch.no_grad()
    @evaluating
    def diagnostics(self, x, y):
        codes = self.encode(x)
        used = torch.bincount(codes.flatten(), minlength=self.K)
        share = (used.double() / max(1, codes.numel())).tolist()
        return {"perplexity": float(perplexity(codes, self.K)), "dead_codes": int((used == 0).sum()),
                "code_usage": [round(v, 5) for v in share]}

    # ---- capabilities
    @torch.no_grad()
    @exact
    @evaluating
    def encode(self, x, y=None) -> torch.Tensor:
        """Images (B, C, H, W) -> code indices (B, h, w), long; float32 in every precision (a prior trained under
        bf16 sees the codes it is scored on)."""
        return self._quantise(x.to(self.device))[1]

    @torch.no_grad()
    @evaluating
    def decode(self, codes, y=None) -> torch.Tensor:
        """Code indices (B, h, w) -> images (B, C, H, W)."""
        codes = torch.as_tensor(codes).long()
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.K):
            raise GenlabError(f"codes must be in 0..{self.K - 1} (the codebook's size is {self.K})")
        q = self.vq.get_output_from_indices(codes.to(self.device))  # (B, d, h, w)
        return self.in_range(self.decoder(q))

    def reconstruct(self, x, y=None) -> torch.Tensor:
        return self.decode(self.encode(x))

    # ---- as the first stage of latent diffusion (ldm): the encoder's output before quantisation
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.code_dim, *self.grid)

    @torch.no_grad()
    @evaluating
    def to_latent(self, x) -> torch.Tensor:
        """Images (B, C, H, W) -> the unquantised code map (B, code_dim, h, w)."""
        return self.encoder(x.to(self.device)).float()

    @torch.no_grad()
    @evaluating
    def from_latent(self, z) -> torch.Tensor:
        """A code map (B, code_dim, h, w) -> images: each vector snapped to its nearest code, then decoded (the
        quantiser as the first layer of the decoder, as Rombach et al. 2022's VQ-regularised first stage)."""
        with autocast_off(z.device):
            q = self.vq(z.float())[0]
        return self.in_range(self.decoder(q))

    def code_frequencies(self) -> torch.Tensor:
        """How often each code was used in training (the EMA counts, normalised): (K,)."""
        counts = self.vq._codebook.cluster_size.flatten().clamp_min(0)
        return counts / counts.sum()

    def _sample(self, n, *, seed, labels, options, progress):
        """Every code independently from its training frequency (no prior: the baseline for vq-ar)."""
        g = generator(seed)
        codes = torch.multinomial(self.code_frequencies().cpu(), n * math.prod(self.grid), True, generator=g)
        return self.decode(codes.view(n, *self.grid)), {"nfe": 1.0}
