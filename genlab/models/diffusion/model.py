"""Kind `ddpm`: denoising diffusion (Ho et al. 2020) with eps / x0 / v prediction (Salimans & Ho 2022),
Min-SNR-gamma loss weighting (Hang et al. 2023), classifier-free guidance (Ho & Salimans 2022) and RePaint
inpainting (Lugmayr et al. 2022). Samplers are picked at sample time: see samplers.py."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...config import check
from ...errors import GenlabError
from ..base import GenerativeModel, generator
from .networks import MLPDenoiser, UNet
from .samplers import SAMPLERS, check_sampler, sample_loop, timesteps
from .schedule import SCHEDULES, NoiseSchedule

TARGETS = ("eps", "x0", "v")


@dataclass
class DiffusionConfig:
    timesteps: int = 1000  # T
    schedule: str = "cosine"  # linear | cosine | sigmoid
    target: str = "v"  # what the network predicts: eps | x0 | v (v: well-conditioned at every noise level)
    min_snr: float = 0.0  # Min-SNR-gamma weighting, gamma (5 in Hang et al. 2023); 0: plain MSE on the target
    arch: str = "auto"  # auto (unet for images, mlp otherwise) | unet | mlp
    channels: int = 32  # U-Net base width (1.1M parameters at 28x28: sized for CPUs; 64-128 on a GPU)
    mults: tuple[int, ...] = (1, 2, 2)  # U-Net width multiplier per level (each level halves H and W)
    res_blocks: int = 1  # U-Net residual blocks per level
    attention: tuple[int, ...] = ()  # resolutions (H) with self-attention besides the middle, which always has it
    dropout: float = 0.0
    hidden: tuple[int, ...] = (256, 256, 256)  # MLP denoiser widths
    fourier: int = 8  # MLP denoiser: sin/cos features of each coordinate at 2^k pi, k < fourier (0: raw x only)
    act: str = "silu"
    conditional: bool = False  # class labels, with classifier-free guidance
    p_uncond: float = 0.1  # probability of dropping the label in training (Ho & Salimans 2022)
    sampler: str = "ddim"  # default sampler: ddpm | ddim | dpm++
    sample_steps: int = 50  # default number of sampling steps
    eta: float = 0.0  # ddim noise: 0 deterministic, 1 ddpm-like
    guidance: float = 1.0  # default guidance weight for conditional models: 0 uncond., 1 cond., > 1 guided
    clip: bool = True  # images: clip predicted x0 to [-1, 1] while sampling

    def __post_init__(self):
        check(self.timesteps >= 1, f"timesteps must be >= 1, got {self.timesteps}")
        check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        check(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        check(self.min_snr >= 0, f"min_snr must be >= 0, got {self.min_snr}")
        check(self.arch in ("auto", "unet", "mlp"), f"arch must be auto, unet or mlp, got '{self.arch}'")
        check(self.channels >= 8 and len(self.mults) >= 1 and all(m >= 1 for m in self.mults),
              "channels must be >= 8 and mults positive")
        check(self.res_blocks >= 1, f"res_blocks must be >= 1, got {self.res_blocks}")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden), "hidden must be positive widths")
        check(0 <= self.fourier <= 16, f"fourier must be in [0, 16], got {self.fourier}")
        check(0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}")
        check(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got '{self.sampler}'")
        check(1 <= self.sample_steps <= self.timesteps,
              f"sample_steps must be between 1 and timesteps ({self.timesteps}), got {self.sample_steps}")
        check(0 <= self.eta <= 1, f"eta must be in [0, 1], got {self.eta}")
        check(self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")


@dataclass
class DiffusionSampleOptions:
    sampler: str | None = None  # ddpm | ddim | dpm++ (default: the model's `sampler`)
    steps: int | None = None  # network-evaluation steps, 1..T (default: the model's `sample_steps`)
    guidance: float | None = None  # conditional models: 0 unconditional, 1 conditional, > 1 guided
    eta: float | None = None  # ddim noise: 0 deterministic .. 1 ddpm-like

    def __post_init__(self):
        if self.sampler is not None:
            check_sampler(self.sampler)
        check(self.guidance is None or (math.isfinite(self.guidance) and self.guidance >= 0),
              f"guidance must be >= 0, got {self.guidance}")
        check(self.eta is None or (math.isfinite(self.eta) and 0 <= self.eta <= 1),
              f"eta must be in [0, 1], got {self.eta}")


class DDPM(GenerativeModel):
    kind = "ddpm"
    family = "diffusion"
    Config = DiffusionConfig
    SampleOptions = DiffusionSampleOptions

    def __init__(self, spec, config: DiffusionConfig):
        super().__init__(spec, config)
        c = config
        self.n_cond, self.arch = self._classes(), self._arch("unet")
        if self.arch == "unet":
            self.net = UNet(spec.shape, c.channels, tuple(c.mults), c.res_blocks, tuple(c.attention), c.dropout,
                            self.n_cond)
        else:
            self.net = MLPDenoiser(spec.dims, tuple(c.hidden), c.act, self.n_cond, c.fourier)
        self.schedule = NoiseSchedule(c.schedule, c.timesteps)

    def train_defaults(self) -> dict[str, Any]:
        return {"ema_decay": 0.999, "lr": 2e-4 if self.arch == "unet" else 1e-3, "warmup_steps": 200}

    # ---- training
    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        c, b = self.config, x.shape[0]
        t = torch.randint(0, c.timesteps, (b,), device=x.device)
        noise = torch.randn_like(x)
        xt = self.schedule.q_sample(x, t, noise)
        labels = None
        if self.n_cond:
            drop = torch.rand(b, device=x.device) < c.p_uncond
            labels = torch.where(drop, torch.full_like(y, self.n_cond), y)
        pred = self.net(xt, t, labels)
        a = self.schedule.abar(t, x)
        err = F.mse_loss(pred, self.schedule.target(x, noise, a, c.target), reduction="none").flatten(1).mean(1)
        if c.min_snr > 0:  # min(SNR, gamma) expressed for each target (Hang et al. 2023, eq. 9-11)
            snr = self.schedule.snr(t).float()
            w = snr.clamp(max=c.min_snr)
            err = err * (w / snr if c.target == "eps" else w if c.target == "x0" else w / (snr + 1))
        loss = err.mean()
        return loss, {"loss": loss}

    # ---- the denoiser at sampling time
    def denoiser(self, labels: torch.Tensor | None, guidance: float, clip: bool):
        """(x_t, t) -> (x0_hat, eps_hat), with classifier-free guidance on the network output
        pred = uncond + w (cond - uncond); w = 0 and w = 1 evaluate one branch only (exactly)."""
        c = self.config
        null = None if labels is None else torch.full_like(labels, self.n_cond)

        def denoise(x: torch.Tensor, t: torch.Tensor):
            if labels is None or guidance == 1:
                pred = self.net(x, t, labels)
            elif guidance == 0:
                pred = self.net(x, t, null)
            else:
                both = self.net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
                cond, uncond = both.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            a = self.schedule.abar(t, x)
            x0, eps = self.schedule.to_x0_eps(pred, x, a, c.target)
            if clip:
                x0 = x0.clamp(-1, 1)
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            return x0, eps

        return denoise

    def _options(self, labels, guidance, sampler, steps, eta, n):
        c = self.config
        labels = self.check_conditioning(n, labels, None)
        if guidance is not None and not self.n_cond:
            raise GenlabError("guidance needs a class-conditional model (train with --set conditional=true); "
                              "this one is unconditional")
        w = c.guidance if guidance is None else float(guidance)
        if not (math.isfinite(w) and w >= 0):
            raise GenlabError(f"guidance must be >= 0, got {w}")
        sampler = sampler or c.sampler
        check_sampler(sampler)
        steps = c.sample_steps if steps is None else int(steps)
        timesteps(c.timesteps, steps)  # validates 1 <= steps <= T
        eta = c.eta if eta is None else float(eta)
        if not 0 <= eta <= 1:
            raise GenlabError(f"eta must be in [0, 1], got {eta}")
        return labels, w, sampler, steps, eta

    @staticmethod
    def _nfe(labels, w: float, steps: int) -> int:
        """Network evaluations per sample: one per step, two where guidance mixes both predictions."""
        return steps * (2 if labels is not None and w not in (0, 1) else 1)

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: DiffusionSampleOptions, progress):
        """(n, *shape) samples with `sampler` (ddpm | ddim | dpm++) in `steps` steps; for conditional models
        `guidance` w (0 unconditional, 1 conditional, > 1 guided) and labels (default: every class in turn)."""
        o = options
        labels, w, sampler, steps, eta = self._options(labels, o.guidance, o.sampler, o.steps, o.eta, n)
        g = generator(seed)
        x = torch.randn((n, *self.spec.shape), generator=g).to(self.device)
        if self.spec.is_image:
            x = x.contiguous(memory_format=torch.channels_last)
        denoise = self.denoiser(labels, w, self.config.clip and self.spec.is_image)
        with _bar(progress, steps, f"{sampler} sampling") as tick:
            x = sample_loop(denoise, self.schedule, x, sampler, steps, g, eta, progress=tick)
        return x, {"nfe": self._nfe(labels, w, steps)}

    @torch.no_grad()
    def inpaint(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int | None = None, labels=None,
                sampler: str = "ddpm", steps: int = 100, resample: int = 5, guidance: float | None = None,
                eta: float = 1.0, progress: bool = False) -> torch.Tensor:
        """Fill the pixels (or table entries) where mask = 1, keeping x where mask = 0, with RePaint: at every
        step the known part is the forward-noised x and the step is repeated `resample` times, re-noising in
        between. x: (B, *shape) or (*shape) in data space; mask broadcastable to it. Costs steps * resample
        network evaluations per image."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.shape == self.spec.shape:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise GenlabError(f"images to inpaint have shape {tuple(x.shape[1:])}, the model makes "
                              f"{tuple(self.spec.shape)}")
        mask = torch.as_tensor(mask, dtype=torch.float32)
        try:
            mask = torch.broadcast_to(mask, x.shape)
        except RuntimeError:
            raise GenlabError(f"a mask of shape {tuple(mask.shape)} does not fit {tuple(x.shape[1:])} data: give "
                              f"{tuple(self.spec.shape[-2:]) if self.spec.is_image else self.spec.shape}, "
                              f"{tuple(self.spec.shape)} or one per image") from None
        if resample < 1:
            raise GenlabError(f"resample must be >= 1, got {resample}")
        n = x.shape[0]
        labels, w, sampler, steps, eta = self._options(labels, guidance, sampler, steps, eta, n)
        dev = self.device
        x_known, hole = x.to(dev), (mask > 0.5).float().to(dev)
        g = generator(seed)

        def known(x_s: torch.Tensor, s: int, g: torch.Generator) -> torch.Tensor:
            if s < 0:
                ref = x_known
            else:
                ref = self.schedule.q_sample(x_known, torch.full((n,), s, device=dev),
                                             torch.randn(x_s.shape, generator=g).to(dev))
            return hole * x_s + (1 - hole) * ref

        z = torch.randn(x.shape, generator=g).to(dev)
        denoise = self.denoiser(labels, w, self.config.clip and self.spec.is_image)
        with _bar(progress, steps, "inpainting") as tick:
            out = sample_loop(denoise, self.schedule, z, sampler, steps, g, eta, known=known, resample=resample,
                              progress=tick)
        return hole * out + (1 - hole) * x_known  # the known part exactly, not its t = 0 noisy version


class _bar:
    """A rich progress bar over sampling steps when enabled; yields a tick() callback (or None)."""

    def __init__(self, enabled: bool, total: int, what: str):
        self.enabled, self.total, self.what, self.p = enabled, total, what, None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          transient=True)
        self.p.__enter__()
        task = self.p.add_task(self.what, total=self.total)
        return lambda: self.p.advance(task)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.__exit__(*exc)
