"""Kind `cyclegan`: unpaired image-to-image translation (Zhu et al. 2017) between the training dataset (domain A)
and `target` (domain B, same image shape): two ResNet generators, two PatchGAN discriminators, the least-squares
adversarial loss, cycle-consistency (lambda = 10) and identity (0.5 * lambda) losses, instance norm.

Domain B's train split is loaded by the model itself (the Trainer feeds A); B batches are drawn with the
training RNG, so runs stay seeded and resumable. Under bf16/fp16 (genlab.precision) the networks run in
autocast and the losses in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..errors import GenlabError
from ..precision import fp32
from .base import GenerativeModel
from .gan import d_loss, g_loss


@dataclass
class CycleGANConfig:
    target: str = "fashion-mnist"  # domain B: a dataset with images of the same shape as the training data
    channels: int = 32  # generator base width
    res_blocks: int = 4  # residual blocks at the bottleneck
    d_channels: int = 32  # PatchGAN width
    cycle: float = 10.0  # lambda of the cycle-consistency loss
    identity: float = 0.5  # identity loss weight, in units of `cycle`

    def __post_init__(self):
        check(self.channels >= 4 and self.d_channels >= 4, "channels and d_channels must be >= 4")
        check(self.res_blocks >= 0, f"res_blocks must be >= 0, got {self.res_blocks}")
        check(self.cycle >= 0 and self.identity >= 0, "cycle and identity must be >= 0")


def _norm(c: int) -> nn.Module:
    return nn.InstanceNorm2d(c, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c), nn.ReLU(),
                                  nn.ReflectionPad2d(1), nn.Conv2d(c, c, 3), _norm(c))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(B, C, H, W) -> (B, C, H, W) in [-1, 1]: 7x7 conv, two stride-2 convs, residual blocks, two transposed
    convs, 7x7 conv, tanh (Johnson et al. 2016, as used by CycleGAN)."""

    def __init__(self, c_img: int, c: int, blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(c_img, c, 7), _norm(c), nn.ReLU()]
        layers += [nn.Conv2d(c, 2 * c, 3, 2, 1), _norm(2 * c), nn.ReLU(),
                   nn.Conv2d(2 * c, 4 * c, 3, 2, 1), _norm(4 * c), nn.ReLU()]
        layers += [ResnetBlock(4 * c) for _ in range(blocks)]
        layers += [nn.ConvTranspose2d(4 * c, 2 * c, 3, 2, 1, output_padding=1), _norm(2 * c), nn.ReLU(),
                   nn.ConvTranspose2d(2 * c, c, 3, 2, 1, output_padding=1), _norm(c), nn.ReLU(),
                   nn.ReflectionPad2d(3), nn.Conv2d(c, c_img, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return fp32(self.net(x))


def patch_discriminator(c_img: int, c: int) -> nn.Module:
    """PatchGAN (Isola et al. 2017): a map of logits, one per overlapping patch."""
    return nn.Sequential(nn.Conv2d(c_img, c, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(c, 2 * c, 4, 2, 1), _norm(2 * c), nn.LeakyReLU(0.2),
                         nn.Conv2d(2 * c, 4 * c, 3, 1, 1), _norm(4 * c), nn.LeakyReLU(0.2),
                         nn.Conv2d(4 * c, 1, 3, 1, 1))


class CycleGAN(GenerativeModel):
    kind = "cyclegan"
    family = "gan"
    Config = CycleGANConfig
    task = "translate"
    phases = (("discriminator", 1), ("generator", 1))

    def __init__(self, spec, config: CycleGANConfig):
        super().__init__(spec, config)
        if not spec.is_image:
            raise GenlabError(f"cyclegan translates images; {spec.name} is {spec.kind} data")
        h, w = spec.shape[1:]
        if h % 4 or w % 4:
            raise GenlabError(f"cyclegan needs image sides divisible by 4, got {h}x{w}; resize with data.size")
        c = config
        self.G_ab, self.G_ba = (ResnetGenerator(spec.shape[0], c.channels, c.res_blocks) for _ in range(2))
        self.D_a, self.D_b = (patch_discriminator(spec.shape[0], c.d_channels) for _ in range(2))
        self._b: torch.Tensor | None = None

    def domain_b(self, split: str = "train") -> torch.Tensor:
        from ..data import load_dataset

        b = load_dataset(self.config.target, split)
        if tuple(b.spec.shape) != tuple(self.spec.shape):
            raise GenlabError(f"target {self.config.target} has images of shape {tuple(b.spec.shape)}, the "
                              f"training data {tuple(self.spec.shape)}; translate between same-shaped images")
        return b.x

    def param_groups(self):
        return {"discriminator": [*self.D_a.parameters(), *self.D_b.parameters()],
                "generator": [*self.G_ab.parameters(), *self.G_ba.parameters()]}

    def train_defaults(self) -> dict[str, Any]:
        # small batches (the paper uses 1): a step costs ~18 generator passes per image, so batch 128 managed
        # only 71 iterations in 8 CPU minutes (docs/BENCHMARKS.md §15)
        return {"lr": 2e-4, "betas": (0.5, 0.999), "grad_clip": 0.0, "warmup_steps": 0, "batch_size": 16}

    def forward(self, a: torch.Tensor, y=None, phase: str = "discriminator", step: int = 0):
        if self._b is None:
            self._b = self.domain_b()
        idx = torch.randint(0, len(self._b), (a.shape[0],))
        b = self._b[idx].to(a.device).contiguous(memory_format=torch.channels_last if a.is_contiguous(
            memory_format=torch.channels_last) else torch.contiguous_format)
        if phase == "discriminator":
            with torch.no_grad():  # no generator graph in the discriminator's step
                fake_b, fake_a = self.G_ab(a), self.G_ba(b)
            loss_b = d_loss("lsgan", fp32(self.D_b(b)), fp32(self.D_b(fake_b)))
            loss_a = d_loss("lsgan", fp32(self.D_a(a)), fp32(self.D_a(fake_a)))
            loss = loss_a + loss_b
            return loss, {"loss": loss}
        c = self.config
        fake_b, fake_a = self.G_ab(a), self.G_ba(b)
        adv = g_loss("lsgan", fp32(self.D_b(fake_b))) + g_loss("lsgan", fp32(self.D_a(fake_a)))
        cycle = F.l1_loss(self.G_ba(fake_b), a) + F.l1_loss(self.G_ab(fake_a), b)
        ident = F.l1_loss(self.G_ab(b), b) + F.l1_loss(self.G_ba(a), a) if c.identity > 0 else adv.new_zeros(())
        loss = adv + c.cycle * cycle + c.cycle * c.identity * ident
        return loss, {"loss": loss, "adversarial": adv, "cycle": cycle, "identity": ident}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "ab") -> torch.Tensor:
        """Translate images (B, *shape) from A to B (`ab`) or from B to A (`ba`)."""
        if direction not in ("ab", "ba"):
            raise GenlabError(f"direction must be ab or ba, got '{direction}'")
        x = torch.as_tensor(x, dtype=torch.float32)
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise GenlabError(f"images of shape {tuple(x.shape[1:])} do not fit this model's {tuple(self.spec.shape)}")
        return (self.G_ab if direction == "ab" else self.G_ba)(x.to(self.device))

    def output_data(self, trained_on: dict[str, Any]) -> dict[str, Any]:
        return {"name": self.config.target, "opts": {}}

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options, progress):
        """Translations to domain B of n domain-A test images (seeded choice): a CycleGAN maps, it does not
        sample from noise."""
        from ..data import load_dataset

        a = load_dataset(self.spec.name, "test")
        g = torch.Generator().manual_seed(seed if seed is not None else 0)
        return self.translate(a.take(torch.randperm(len(a), generator=g)[:n])[0]), {}
