"""Kind `gan`: generative adversarial networks (Goodfellow et al. 2014) with the losses of the literature, the
DCGAN rules for images (Radford et al. 2016) or MLPs for vectors, and the stabilisation tricks:
spectral normalisation (Miyato et al. 2018), self-attention (Zhang et al. 2019), minibatch standard deviation
(Karras et al. 2018), feature matching and one-sided label smoothing (Salimans et al. 2016), PacGAN packing
(Lin et al. 2018), TTUR (Heusel et al. 2017), R1 (Mescheder et al. 2018), DiffAugment (Zhao et al. 2020),
top-k generator updates (Sinha et al. 2020), conditional G with a concatenation or projection discriminator
(Mirza & Osindero 2014; Miyato & Koyama 2018), unrolled D look-ahead (Metz et al. 2017), and BigGAN's
class-conditional BatchNorm from a shared embedding with skip-z, orthogonal regularisation and truncation trick
(Brock et al. 2019).

D outputs logits (critic values for the Wasserstein losses). The Trainer runs ("discriminator", n_critic)
then ("generator", 1) per iteration, each repeat on a fresh batch.

Precision (genlab.precision): under bf16/fp16, G and D run in autocast; G's images and D's logits and features
are cast to float32, so the losses, penalties and DRS acceptance are computed in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..config import check
from ..errors import GenlabError
from ..nn import MLP, Attention, activation, fourier_features
from ..precision import fp32
from .base import GenerativeModel, generator

LOSSES = ("minimax", "ns", "wgan", "wgan-gp", "hinge", "lsgan")
# the defaults on the 2-D mixtures: the settings that captured every mode on every seed (docs/BENCHMARKS.md §13)
MIXTURE_RECIPES = {
    "gaussians8": {"model": {"latent_dim": 2, "minibatch_std": True},
                   "train": {"lr": 1e-3, "batch_size": 256, "schedule": "cosine"}},
    "gaussians25": {"model": {"latent_dim": 2, "minibatch_std": True, "r1": 0.1},
                    "train": {"lr": 1e-3, "batch_size": 512, "schedule": "cosine"}},
}


@dataclass
class GANConfig:
    loss: str = "ns"  # minimax | ns | wgan | wgan-gp | hinge | lsgan
    n_critic: int = 0  # D steps per G step; 0: 5 for wgan / wgan-gp, else 1
    arch: str = "auto"  # auto (dcgan for images, mlp otherwise) | dcgan | mlp
    latent_dim: int = 64  # size of the noise z fed to G (2-D mixtures: 2, with minibatch_std, see MIXTURE_RECIPES)
    hidden: tuple[int, ...] = (256, 256, 256)  # MLP widths (G; D uses the same)
    fourier: int = 0  # MLP D: sin/cos features of its input at 2^k pi, k < fourier (Tancik et al. 2020)
    channels: tuple[int, ...] = (128, 64)  # DCGAN G widths from the smallest map up; D mirrors them
    spectral_norm: bool = False  # on every D layer
    attention: bool = False  # DCGAN: a self-attention block after the first up / down stage
    conditional: bool = False  # label embedding into G; D by cond_d
    cond_g: str = "concat"  # concat: z joined to a label embedding | cbn: BigGAN's shared class embedding and
    # skip-z into every BatchNorm's gain and bias (DCGAN G only)
    shared_dim: int = 32  # cbn: size of the shared class embedding (Brock et al. 2019 use 128)
    cond_d: str = "projection"  # projection | concat
    minibatch_std: bool = False  # D sees the batch's feature std (against mode collapse)
    feature_matching: float = 0.0  # weight of ||E f(x) - E f(G(z))||^2 on D's last features in G's loss
    pac: int = 1  # PacGAN: D judges `pac` samples at once
    top_k: float = 1.0  # G learns from the best-scored share of fakes, 1 -> top_k by 0.99 per 50 steps (Sinha 2020)
    label_smoothing: float = 0.0  # one-sided: real target 1 - s (minimax / ns)
    d_lr_ratio: float = 1.0  # TTUR: the discriminator's lr is this times the generator's
    gp: float = 10.0  # wgan-gp: lambda
    r1: float = 0.0  # R1 penalty gamma on real data (0: off)
    clip: float = 0.01  # wgan: weight clipping
    diffaugment: str = ""  # images: comma list of translation, cutout, color
    unroll: int = 0  # unrolled GAN (Metz et al. 2017): G's loss sees D after this many look-ahead steps (0: off)
    unroll_lr: float = 1e-3  # each look-ahead step (plain gradient descent on D's loss); 1e-2 broke the ring (§44)
    ortho_reg: float = 0.0  # G's off-diagonal orthogonal regularisation (Brock et al. 2019 eq. 3; they use 1e-4)

    def __post_init__(self):
        check(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got '{self.loss}'")
        check(self.n_critic >= 0, f"n_critic must be >= 0, got {self.n_critic}")
        check(self.arch in ("auto", "dcgan", "mlp"), f"arch must be auto, dcgan or mlp, got '{self.arch}'")
        check(self.latent_dim >= 1, f"latent_dim must be >= 1, got {self.latent_dim}")
        check(self.cond_d in ("projection", "concat"), f"cond_d must be projection or concat, got '{self.cond_d}'")
        check(self.cond_g in ("concat", "cbn"), f"cond_g must be concat or cbn, got '{self.cond_g}'")
        check(self.shared_dim >= 1, f"shared_dim must be >= 1, got {self.shared_dim}")
        check(self.pac >= 1, f"pac must be >= 1, got {self.pac}")
        check(0 < self.top_k <= 1, f"top_k must be in (0, 1], got {self.top_k}")
        check(0 <= self.fourier <= 16, f"fourier must be in [0, 16], got {self.fourier}")
        check(0 <= self.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        check(self.d_lr_ratio > 0 and self.gp >= 0 and self.r1 >= 0 and self.clip > 0 and self.feature_matching >= 0,
              "d_lr_ratio and clip must be > 0; gp, r1 and feature_matching >= 0")
        check(self.ortho_reg >= 0, f"ortho_reg must be >= 0, got {self.ortho_reg}")
        check(0 <= self.unroll <= 20 and self.unroll_lr > 0, f"unroll must be in [0, 20] and unroll_lr > 0, got "
              f"{self.unroll} and {self.unroll_lr}")
        check(not (self.unroll and self.spectral_norm), "unroll needs spectral_norm=false (the look-ahead copies of "
              "D are plain tensors, without the normalisation's power iteration)")
        bad = [p for p in self.diffaugment.split(",") if p and p not in AUGMENTS]
        check(not bad, f"unknown diffaugment policy '{bad[0] if bad else ''}': use {', '.join(AUGMENTS)}")

    @property
    def critic_steps(self) -> int:
        return self.n_critic or (5 if self.loss in ("wgan", "wgan-gp") else 1)


@dataclass
class GANSampleOptions:
    drs: float | None = None  # discriminator rejection sampling (Azadi et al. 2019): gamma at this percentile of F
    truncation: float | None = None  # the truncation trick (Brock et al. 2019): z entries redrawn until |z_i| <= t

    def __post_init__(self):
        check(self.drs is None or (math.isfinite(self.drs) and 0 <= self.drs < 100),
              f"drs is a percentile in [0, 100), got {self.drs}")
        check(self.truncation is None or (math.isfinite(self.truncation) and self.truncation > 0),
              f"truncation must be a positive threshold, got {self.truncation}")
        check(self.truncation is None or self.drs is None, "choose truncation or drs, not both")


# ---- the losses on D's logits: (D loss, G loss) pieces, each a mean over the batch
def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor, smooth: float = 0.0) -> torch.Tensor:
    if kind in ("minimax", "ns"):  # BCE with targets 1 - smooth (real) and 0 (fake)
        t = 1.0 - smooth
        return (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean()  # lsgan (Mao et al. 2017)


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "minimax":  # minimise log(1 - D(G(z))): saturates when D rejects the fakes
        return -F.softplus(fake).mean()
    if kind == "ns":  # maximise log D(G(z))
        return F.softplus(-fake).mean()
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    return 0.5 * ((fake - 1) ** 2).mean()


def ortho_penalty(module: nn.Module) -> torch.Tensor:
    """sum over the weight matrices W of `module` (rows: dim 0, the output filters of a conv or linear layer) of
    ||W W^T * (1 - I)||_F^2 (Brock et al. 2019 eq. 3): filters pushed towards orthogonality, their norms left free."""
    total = None
    for m in module.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            continue
        w = (m.weight.transpose(0, 1) if isinstance(m, nn.ConvTranspose2d) else m.weight).flatten(1)  # rows: outputs
        if len(w) <= w.shape[1]:
            gram = w @ w.T
            term = (gram * (1 - torch.eye(len(w), device=w.device, dtype=w.dtype))).pow(2).sum()
        else:  # tall W (a linear layer out of a short z): ||W W^T||_F = ||W^T W||_F, so no rows x rows Gram
            term = (w.T @ w).pow(2).sum() - w.pow(2).sum(1).pow(2).sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


def truncated_normal(shape: tuple[int, ...], t: float, g: torch.Generator) -> torch.Tensor:
    """N(0, 1) draws conditioned on |z| <= t (the truncation trick's z, Brock et al. 2019 §3.1), by the inverse
    CDF: z = Phi^-1(u), u uniform on (Phi(-t), Phi(t)), so any t > 0 costs one draw."""
    lo = 0.5 * math.erfc(t / math.sqrt(2))  # Phi(-t)
    u = lo + torch.rand(shape, generator=g, dtype=torch.float64) * (1 - 2 * lo)
    z = math.sqrt(2) * torch.erfinv(2 * u - 1)
    return z.clamp(-t, t).float()


def input_gradient_norm(d, x: torch.Tensor, y) -> torch.Tensor:
    """||grad_x D(x)||_2 per example, with a graph so it can be penalised."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, y)[0].sum(), x, create_graph=True)
    return grad.flatten(1).norm(dim=1)


# ---- DiffAugment (Zhao et al. 2020): the same differentiable augmentation of real and fake images
def _translation(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = max(1, h // 8), max(1, w // 8)
    dy = torch.randint(-sh, sh + 1, (b,)).to(x.device)
    dx = torch.randint(-sw, sw + 1, (b,)).to(x.device)
    ys = (torch.arange(h, device=x.device)[None] - dy[:, None]).clamp(-1, h)  # -1 and h: the zero padding
    xs = (torch.arange(w, device=x.device)[None] - dx[:, None]).clamp(-1, w)
    pad = F.pad(x, (1, 1, 1, 1))
    idx_y = (ys + 1)[:, None, :, None].expand(b, x.shape[1], h, w + 2)
    rows = pad.gather(2, idx_y)
    idx_x = (xs + 1)[:, None, None, :].expand(b, x.shape[1], h, w)
    return rows.gather(3, idx_x)


def _cutout(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = h // 2, w // 2
    cy = torch.randint(0, h - ch + 1, (b,)).to(x.device)
    cx = torch.randint(0, w - cw + 1, (b,)).to(x.device)
    iy, ix = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (iy[None] >= cy[:, None]) & (iy[None] < cy[:, None] + ch)
    in_x = (ix[None] >= cx[:, None]) & (ix[None] < cx[:, None] + cw)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    r = lambda: torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype)
    x = x + (r() - 0.5)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r() + 0.5) + mean  # contrast


AUGMENTS = {"translation": _translation, "cutout": _cutout, "color": _color}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    for p in policy.split(","):
        if p:
            x = AUGMENTS[p](x)
    return x


# ---- networks
def minibatch_std(h: torch.Tensor) -> torch.Tensor:
    """Append the batch's mean feature std as one more feature (channel) (Karras et al. 2018). In float32, with
    their 1e-8 under the root: under bf16 autocast features can be exactly equal across the batch, and a std of 0
    has an infinite derivative (NaN in R1's double backward)."""
    s = (fp32(h).var(dim=0, unbiased=False) + 1e-8).sqrt().mean().expand(h.shape[0], *([1] * (h.dim() - 1)))
    if h.dim() == 4:
        s = s.expand(-1, 1, h.shape[2], h.shape[3])
    return torch.cat([h, s.to(h.dtype)], dim=1)


class MLPGenerator(nn.Module):
    def __init__(self, latent: int, d: int, hidden, n_cond: int):
        super().__init__()
        self.embed = nn.Embedding(n_cond, latent) if n_cond else None
        self.net = MLP(latent * (2 if n_cond else 1), hidden, d, act="relu")

    def forward(self, z, y=None):
        return fp32(self.net(torch.cat([z, self.embed(y)], 1) if self.embed is not None else z))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then gain and bias from a conditioning vector (B, cond):
    bn(h) * (1 + W_g c) + W_b c (de Vries et al. 2017; BigGAN's class-conditional BN, Brock et al. 2019 §3)."""

    def __init__(self, channels: int, cond: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain, self.bias = nn.Linear(cond, channels, bias=False), nn.Linear(cond, channels, bias=False)
        nn.init.zeros_(self.gain.weight)  # starts as the plain BatchNorm
        nn.init.zeros_(self.bias.weight)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.bn(h) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class DCGenerator(nn.Module):
    """z (B, L) -> (B, C, H, W) in [-1, 1]: linear to a (channels[0], H/2^k, W/2^k) map, then k transposed
    convs (4x4, stride 2) with BatchNorm + ReLU, the last one to C channels with tanh (DCGAN rules).

    Class-conditional in one of two ways: `concat` joins a label embedding to z; `cbn` (BigGAN, Brock et al.
    2019) splits z into one chunk for the linear layer and one per BatchNorm, and every BatchNorm takes its gain
    and bias from [shared class embedding, its z chunk] (skip-z), one embedding shared by all layers."""

    def __init__(self, latent: int, shape, channels, n_cond: int, attention: bool, cond_g: str = "concat",
                 shared_dim: int = 32):
        super().__init__()
        c, h, w = shape
        k = len(channels)
        if h % 2**k or w % 2**k:
            raise GenlabError(f"image size {h}x{w} cannot be halved {k} times; set fewer channels stages")
        self.c0, self.h0, self.w0 = channels[0], h // 2**k, w // 2**k
        self.cbn = bool(n_cond) and cond_g == "cbn"
        if self.cbn and latent < k + 1:
            raise GenlabError(f"cond_g=cbn splits z into {k + 1} chunks; set latent_dim >= {k + 1}")
        self.chunks = [len(t) for t in torch.arange(latent).tensor_split(k + 1)] if self.cbn else [latent]
        self.embed = None if not n_cond else nn.Embedding(n_cond, shared_dim if self.cbn else latent)
        first = self.chunks[0] + (latent if n_cond and not self.cbn else 0)
        self.fc = nn.Sequential(nn.Linear(first, self.c0 * self.h0 * self.w0, bias=False))
        widths = [*channels, c]
        self.bn0 = ConditionalBatchNorm2d(self.c0, shared_dim + self.chunks[1]) if self.cbn else nn.BatchNorm2d(self.c0)
        layers: list[nn.Module] = []
        for i in range(k):
            last = i == k - 1
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=last))
            if not last:
                layers += [ConditionalBatchNorm2d(widths[i + 1], shared_dim + self.chunks[i + 2]) if self.cbn
                           else nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]
                if attention and i == 0:
                    layers.append(Attention(widths[i + 1]))
        self.ups = nn.Sequential(*layers)

    def forward(self, z, y=None):
        if not self.cbn:
            z = torch.cat([z, self.embed(y)], 1) if self.embed is not None else z
            h = F.relu(self.bn0(self.fc(z).view(-1, self.c0, self.h0, self.w0)))
            return fp32(torch.tanh(self.ups(h)))
        zs, e = z.split(self.chunks, 1), self.embed(y)
        conds = iter([torch.cat([e, zi], 1) for zi in zs[1:]])  # the shared embedding, with skip-z
        h = F.relu(self.bn0(self.fc(zs[0]).view(-1, self.c0, self.h0, self.w0), next(conds)))
        for layer in self.ups:
            h = layer(h, next(conds)) if isinstance(layer, ConditionalBatchNorm2d) else layer(h)
        return fp32(torch.tanh(h))


class Discriminator(nn.Module):
    """x (B, *shape) packed by `pac` -> (logits (B/pac,), features). Conv (DCGAN: 4x4 stride-2 convs, LeakyReLU
    0.2, BatchNorm except on the input layer, unless spectral norm or a gradient penalty forbid it) or MLP."""

    def __init__(self, cfg: GANConfig, shape, arch: str, n_cond: int):
        super().__init__()
        self.cfg, self.shape, self.arch = cfg, shape, arch
        sn = spectral_norm if cfg.spectral_norm else (lambda m: m)
        concat = n_cond if cfg.cond_d == "concat" else 0
        self.n_cond, self.concat = n_cond, concat
        use_bn = not cfg.spectral_norm and cfg.loss != "wgan-gp" and cfg.r1 == 0
        if arch == "dcgan":
            c, h, w = shape
            widths = list(reversed(cfg.channels))
            layers: list[nn.Module] = []
            c_in = c * cfg.pac + concat
            for i, c_out in enumerate(widths):
                layers.append(sn(nn.Conv2d(c_in, c_out, 4, 2, 1)))
                if i > 0 and use_bn:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.LeakyReLU(0.2))
                if cfg.attention and i == 0:
                    layers.append(Attention(c_out))
                c_in = c_out
            self.body = nn.Sequential(*layers)
            feat = (c_in + cfg.minibatch_std) * (h // 2 ** len(widths)) * (w // 2 ** len(widths))
        else:
            d = shape[0] * cfg.pac * (1 + 2 * cfg.fourier) + concat
            layers = []
            for width in cfg.hidden:
                layers += [sn(nn.Linear(d, width)), activation("leaky_relu")]
                d = width
            self.body = nn.Sequential(*layers)
            feat = d + cfg.minibatch_std
        self.out = sn(nn.Linear(feat, 1))
        self.proj = sn(nn.Embedding(n_cond, feat)) if n_cond and not concat else None

    def pack(self, x: torch.Tensor, y):
        p = self.cfg.pac
        if p > 1:
            if x.shape[0] % p:
                raise GenlabError(f"pac={p} needs a batch size divisible by {p}, got {x.shape[0]}")
            x = x.reshape(x.shape[0] // p, p * x.shape[1], *x.shape[2:])
            y = y[::p] if y is not None else None  # conditional + pac: the first label of each pack
        return x, y

    def forward(self, x: torch.Tensor, y=None):
        x, y = self.pack(x, y)
        if self.arch == "mlp":
            x = fourier_features(x, self.cfg.fourier)
        if self.concat:
            onehot = F.one_hot(y, self.n_cond).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:]) if x.dim() == 4 else onehot], 1)
        h = self.body(x)
        if self.cfg.minibatch_std:
            h = minibatch_std(h)
        h = h.flatten(1)
        h = fp32(h)
        logit = fp32(self.out(h).squeeze(1))
        if self.proj is not None:
            logit = logit + (fp32(self.proj(y)) * h).sum(1)
        return logit, h


class GAN(GenerativeModel):
    kind = "gan"
    family = "gan"

    @classmethod
    def bench_samplers(cls, spec):
        return ({},)
    Config = GANConfig
    SampleOptions = GANSampleOptions

    def __init__(self, spec, config: GANConfig):
        super().__init__(spec, config)
        c = config
        n_cond, arch = self._classes(), self._arch("dcgan")
        if c.diffaugment and not spec.is_image:
            raise GenlabError("diffaugment is for images; leave it empty for vector or table data")
        if c.fourier and arch == "dcgan":
            raise GenlabError("fourier features are for the MLP discriminator; set arch=mlp or fourier=0")
        if c.cond_g == "cbn" and not (n_cond and arch == "dcgan"):
            raise GenlabError("cond_g=cbn is BigGAN's conditional BatchNorm for the DCGAN generator; it needs "
                              "conditional=true on image data with labels (arch=dcgan)")
        self.arch, self.n_cond = arch, n_cond
        if arch == "dcgan":
            self.G = DCGenerator(c.latent_dim, spec.shape, tuple(c.channels), n_cond, c.attention, c.cond_g,
                                 c.shared_dim)
            self.D = Discriminator(c, spec.shape, arch, n_cond)
        else:
            self.G = MLPGenerator(c.latent_dim, spec.dims, tuple(c.hidden), n_cond)
            self.D = Discriminator(c, (spec.dims,), arch, n_cond)
        self.phases = (("discriminator", c.critic_steps), ("generator", 1))

    def param_groups(self):
        return {"discriminator": list(self.D.parameters()), "generator": list(self.G.parameters())}

    def lr_scale(self) -> dict[str, float]:
        return {"discriminator": self.config.d_lr_ratio}

    @classmethod
    def config_defaults(cls, spec) -> dict[str, Any]:
        return dict(MIXTURE_RECIPES.get(spec.name, {}).get("model", {}))

    def train_defaults(self) -> dict[str, Any]:
        wgan = self.config.loss in ("wgan", "wgan-gp")  # Gulrajani et al. 2017: Adam(1e-4, 0, 0.9)
        out = {"lr": 1e-4 if wgan else 2e-4, "betas": (0.0, 0.9) if wgan else (0.5, 0.999),  # DCGAN's Adam
               "grad_clip": 0.0, "warmup_steps": 0, "schedule": "constant", "ema_decay": 0.999}
        if not wgan:
            out.update(MIXTURE_RECIPES.get(self.spec.name, {}).get("train", {}))
        return out

    def after_step(self, phase: str) -> None:
        if phase == "discriminator" and self.config.loss == "wgan":  # Arjovsky et al. 2017
            with torch.no_grad():
                for p in self.D.parameters():
                    p.clamp_(-self.config.clip, self.config.clip)

    def _z(self, n: int, device) -> torch.Tensor:
        dtype = next(self.G.parameters()).dtype  # float32 but in a float64 model (the gradient checks)
        return torch.randn(n, self.config.latent_dim, device=device, dtype=dtype)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.config.diffaugment) if self.config.diffaugment else x

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.arch == "dcgan" else x.flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "discriminator", step: int = 0):
        c, b = self.config, x.shape[0]
        y = y if self.n_cond else None
        x = self._flat(x)
        if phase == "discriminator":
            with torch.no_grad():  # no generator graph in the discriminator's steps
                fake = self.G(self._z(b, x.device), y)
            real_logit, _ = self.D(self._aug(x), y)
            fake_logit, _ = self.D(self._aug(fake), y)
            loss = d_loss(c.loss, real_logit, fake_logit, c.label_smoothing)
            logs = {"loss": loss, "real": real_logit.mean(), "fake": fake_logit.mean()}
            if c.loss == "wgan-gp":  # Gulrajani et al. 2017, on points between real and fake
                eps = torch.rand(b, *([1] * (x.dim() - 1)), device=x.device)
                mix = eps * x + (1 - eps) * fake
                gp = ((input_gradient_norm(self.D, self._aug(mix), y) - 1) ** 2).mean()
                loss = loss + c.gp * gp
                logs["gp"] = gp
            if c.r1 > 0:
                r1 = input_gradient_norm(self.D, self._aug(x), y).pow(2).mean()
                loss = loss + 0.5 * c.r1 * r1
                logs["r1"] = r1
            return loss, logs
        fake = self.G(self._z(b, x.device), y)
        D = self.D
        if c.unroll:  # G answers the D its move would meet after `unroll` steps, not today's D
            params = self._unrolled_d(x, y)
            D = lambda inp, yy: torch.func.functional_call(self.D, params, (inp, yy))  # noqa: E731
        fake_logit, f_fake = D(self._aug(fake), y)
        if c.top_k < 1:  # Sinha et al. 2020: the worst-scored fakes' gradients push them away from the modes
            share = max(c.top_k, 0.99 ** (step / 50))
            fake_logit = fake_logit.topk(max(1, round(share * len(fake_logit)))).values
        loss = g_loss(c.loss, fake_logit)
        logs = {"loss": loss}
        if c.ortho_reg > 0:
            ortho = ortho_penalty(self.G)
            loss = loss + c.ortho_reg * ortho
            logs["ortho"] = ortho.detach()
        if c.feature_matching > 0:
            with torch.no_grad():
                _, f_real = D(self._aug(x), y)
            fm = (f_real.mean(0) - f_fake.mean(0)).pow(2).sum()
            loss = loss + c.feature_matching * fm
            logs["feature_matching"] = fm
        return loss, logs

    def _unrolled_d(self, x: torch.Tensor, y) -> dict[str, torch.Tensor]:
        """D's parameters after `unroll` gradient steps on its loss (each against fresh fakes and the batch's real
        examples), as a differentiable function of G's parameters (Metz et al. 2017, eq. 7-8, with plain gradient
        steps): backpropagating G's loss through them includes how D would react to G's move. The model's own D
        is never changed."""
        c = self.config
        params = dict(self.D.named_parameters())
        for _ in range(c.unroll):
            fake = self.G(self._z(len(x), x.device), y)
            real_logit, _ = torch.func.functional_call(self.D, params, (self._aug(x), y))
            fake_logit, _ = torch.func.functional_call(self.D, params, (self._aug(fake), y))
            loss = d_loss(c.loss, real_logit, fake_logit, c.label_smoothing)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {n: p - c.unroll_lr * g for (n, p), g in zip(params.items(), grads)}
        return params

    def sample_batch_size(self, n: int, options: GANSampleOptions) -> int:
        return n if options.drs is not None else super().sample_batch_size(n, options)  # DRS burns in per call

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: GANSampleOptions, progress):
        """(n, *shape) samples G(z); with `drs` (a percentile in [0, 100)), discriminator rejection sampling."""
        g = generator(seed)
        if options.drs is not None:
            x, tries = self._sample_drs(n, options.drs, g, labels)
            return x, {"nfe": 2 * tries / n, "candidates": tries / n}  # G and D per candidate, burn-in included
        shape = (n, self.config.latent_dim)
        z = torch.randn(shape, generator=g) if options.truncation is None else truncated_normal(shape,
                                                                                              options.truncation, g)
        return self.G(z.to(self.device), labels).reshape(n, *self.spec.shape), {}

    def _sample_drs(self, n: int, percentile: float, g: torch.Generator, labels, burn_in: int = 10_000,
                    chunk: int = 1000) -> tuple[torch.Tensor, int]:
        """Discriminator rejection sampling (Azadi et al. 2019): keep G(z) with probability sigmoid(F),
        F = d - d_max - log(1 - exp(d - d_max - eps)) - gamma on D's logits d, d_max their maximum so far and
        gamma the `percentile` of F over `burn_in` candidates (a high percentile raises quality, keeps fewer)."""
        if labels is not None or self.config.pac > 1:
            raise GenlabError("drs needs an unconditional GAN with pac=1 (D must score single samples); "
                              "sample this one without --drs")

        def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:  # D scores chunks: minibatch std needs a batch
            z = torch.randn(m, self.config.latent_dim, generator=g).to(self.device)
            xs = [self.G(zb) for zb in z.split(chunk)]
            return torch.cat(xs), torch.cat([self.D(self._flat(x))[0] for x in xs])

        x, d = draw(burn_in)  # the burn-in candidates are kept or rejected like the rest
        d_max = d.max()
        gamma = torch.quantile(drs_score(d, d_max), percentile / 100)
        kept, total, tries = [], 0, 0
        while total < n:
            if tries:
                x, d = draw(chunk)
                d_max = torch.maximum(d_max, d.max())
            accept = torch.rand(len(d), generator=g).to(self.device) < torch.sigmoid(drs_score(d, d_max) - gamma)
            kept.append(x[accept])
            total += int(accept.sum())
            tries += len(d)
            if tries >= 100 * n + burn_in and total < n:
                raise GenlabError(f"drs kept {total} of {tries} candidates; lower the percentile (got {percentile})")
        return torch.cat(kept)[:n].reshape(n, *self.spec.shape), tries


def drs_score(d: torch.Tensor, d_max: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """DRS's F(x) before the gamma shift: logit(exp(d - d_max - eps)), so sigmoid(F) = exp(d - d_max - eps), the
    exact rejection-sampling acceptance p_data / (M p_g) when D is optimal (d = log p_data / p_g)."""
    a = d - d_max - eps
    return a - torch.log(-torch.expm1(a))
