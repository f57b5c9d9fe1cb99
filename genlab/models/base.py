"""The protocol every family implements, and the save/load format (config.json + safetensors, never pickle).

Training: the one Trainer reads `phases` — (optimizer name, repeats) run in order each iteration, e.g.
(("model", 1),) for a VAE, (("discriminator", 5), ("generator", 1)) for a WGAN — builds one optimizer per name
from `param_groups()`, calls `on_fit_start(x, y)` once before a new run's first step, and calls
`forward(x, y, phase, step) -> (loss, logs)`; during training the model can read the Trainer's EMA of its
weights as `ema_state`.
Sampling: `sample(n, seed=..., labels=...)` returns data-space tensors.
Capabilities (log_prob, encode, decode, reconstruct, interpolate, traverse, inpaint) exist only where a family
overrides them; asking another family for one raises a CapabilityError naming the kinds that have it.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import to_dict
from ..data.spec import DataSpec
from ..errors import CapabilityError, GenlabError

CAPABILITIES = ("log_prob", "encode", "decode", "reconstruct", "interpolate", "traverse", "inpaint")


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator: the same seed gives the same noise on every device."""
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return g


def randn(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g).to(device)


class GenerativeModel(nn.Module, metaclass=ABCMeta):
    kind: ClassVar[str]
    family: ClassVar[str]
    Config: ClassVar[type]
    log_prob_type: ClassVar[str] = ""  # "exact" or "bound" where log_prob exists
    phases: tuple[tuple[str, int], ...] = (("model", 1),)
    # The Trainer's exponential moving average of this model's weights: {state_dict key: tensor}, the same keys,
    # shapes and device as state_dict(), updated in place after every iteration (so during the forward of step
    # t it holds the average after step t - 1; warm-up as in training.EMA); None when ema_decay is 0 or the model
    # has never been trained. E.g. consistency training (Song et al. 2023) takes it as its target network's
    # weights (torch.func.functional_call(self, self.ema_state, args)). Read it, never write it: it is a plain
    # attribute, not a parameter or a buffer, so it is in no state_dict, no optimizer and no saved file (the
    # Trainer saves the same average as ema.safetensors). It stays set after training: the final average.
    ema_state: dict[str, torch.Tensor] | None = None

    def __init__(self, spec: DataSpec, config: Any):
        super().__init__()
        self.spec = spec
        self.config = config

    def _classes(self) -> int:
        """How many classes the model conditions on (0 if unconditional); the data must have labels."""
        if getattr(self.config, "conditional", False):
            if not self.spec.num_classes:
                raise GenlabError(f"conditional=true needs labelled data; {self.spec.name} has no classes")
            return self.spec.num_classes
        return 0

    def _arch(self, image_arch: str) -> str:
        """config.arch resolved: `auto` is `image_arch` for images and mlp otherwise; image archs need images."""
        arch = self.config.arch if self.config.arch != "auto" else (image_arch if self.spec.is_image else "mlp")
        if arch == image_arch and not self.spec.is_image:
            raise GenlabError(f"arch={arch} needs image data; {self.spec.name} is {self.spec.kind} data: use arch=mlp")
        return arch

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- training protocol
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"model": [p for p in self.parameters() if p.requires_grad]}

    def lr_scale(self) -> dict[str, float]:
        """Per-phase learning-rate multipliers (e.g. TTUR's faster discriminator); default 1."""
        return {}

    def after_step(self, phase: str) -> None:
        """Called after each optimizer step of `phase` (e.g. WGAN's weight clipping)."""

    def on_fit_start(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Called once before the first step of a new run (never on --resume: the checkpoint holds its result),
        for data-dependent initialisation, e.g. Glow's ActNorm (Kingma & Dhariwal 2018, §3.1: per-channel scale
        and bias set so the first batch's post-ActNorm activations have zero mean and unit variance).

        x: (B, *spec.shape) on the model's device, B = the global batch size, a fixed batch drawn by cfg.seed
        apart from the training data order; y: (B,) long labels (-1 where unlabelled). Runs in training mode,
        under torch.no_grad(), on a forked RNG seeded by cfg.seed, before the optimizers and the EMA are built,
        so what it sets in parameters and buffers is where training starts. Under DDP every process calls it,
        then all take rank 0's parameters and buffers. Default: nothing."""

    def train_defaults(self) -> dict[str, Any]:
        """Training options this family prefers (e.g. EMA for diffusion); the user's options win."""
        return {}

    @abstractmethod
    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        """One phase's loss on a batch: (scalar loss, {name: scalar tensor} to log)."""

    def diagnostics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Family-specific numbers the Trainer logs now and then on a fixed batch (e.g. VAE active units)."""
        return {}

    # ---- sampling
    @abstractmethod
    def sample(self, n: int, *, seed: int | None = None, labels=None, prompt: str | None = None, **opts):
        """(n, *spec.shape) samples in data space; the same seed gives the same samples."""

    def check_conditioning(self, n: int, labels, prompt: str | None) -> torch.Tensor | None:
        """Validate sampling conditions; labels -> (n,) long tensor on the model's device, or None."""
        if prompt is not None:
            raise GenlabError(f"{self.kind} takes no text prompt; prompts need a text-conditioned model")
        conditional = getattr(self.config, "conditional", False)
        if labels is None:
            if not conditional:
                return None
            labels = torch.arange(n) % self.spec.num_classes  # every class in turn
        elif not conditional:
            raise GenlabError(f"this {self.kind} is unconditional; labels need a model trained with "
                              "--set conditional=true on labelled data")
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() == 1:
            labels = labels.expand(n)
        if labels.numel() != n:
            raise GenlabError(f"got {labels.numel()} labels for {n} samples")
        k = self.spec.num_classes
        if (labels < 0).any() or (labels >= k).any():
            bad = int(labels[(labels < 0) | (labels >= k)][0])
            raise GenlabError(f"label {bad} is out of range: {self.spec.name} has classes 0..{k - 1}")
        return labels.to(self.device)

    # ---- capabilities
    @classmethod
    def capability_names(cls) -> list[str]:
        return [c for c in CAPABILITIES if getattr(cls, c) is not getattr(GenerativeModel, c)]

    @property
    def capabilities(self) -> list[str]:
        return self.capability_names()

    def _missing(self, name: str):
        from . import REGISTRY

        have = [k for k, c in REGISTRY.items() if name in c.capability_names()]
        raise CapabilityError(f"{self.kind} has no {name}; models with it: {', '.join(have) or 'none yet'}")

    def log_prob(self, x, y=None, **opts):
        self._missing("log_prob")

    def encode(self, x, y=None):
        self._missing("encode")

    def decode(self, z, y=None):
        self._missing("decode")

    def reconstruct(self, x, y=None):
        self._missing("reconstruct")

    def interpolate(self, a, b, steps: int = 8, **opts):
        self._missing("interpolate")

    def traverse(self, x=None, **opts):
        self._missing("traverse")

    def inpaint(self, x, mask, **opts):
        self._missing("inpaint")

    # ---- persistence
    def describe(self) -> dict[str, Any]:
        from .. import __version__

        return {"genlab_version": __version__, "kind": self.kind, "config": to_dict(self.config),
                "spec": self.spec.to_dict()}

    def save(self, directory: str | Path, ema_state: dict[str, torch.Tensor] | None = None) -> Path:
        """Write config.json + model.safetensors (+ ema.safetensors), each atomically."""
        from ..io import atomic_save_tensors, atomic_write_json

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d / "config.json", self.describe(), merge=True)
        atomic_save_tensors(self.state_dict(), d / "model.safetensors")
        if ema_state is not None:
            atomic_save_tensors(ema_state, d / "ema.safetensors")
        return d
