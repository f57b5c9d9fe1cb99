"""Kind `consistency`: consistency models (Song et al. 2023, "Consistency Models"), which map any point of the
probability-flow ODE's trajectory straight to its origin, so that one network evaluation makes a sample.

In the variance-exploding form x_sigma = x_0 + sigma z (sigma in [sigma_min, sigma_max] = [0.002, 80]):

    f(x, sigma) = c_skip(sigma) x + (1 - c_skip(sigma)) D(x, sigma),  c_skip = s_d^2 / ((sigma - sigma_min)^2 + s_d^2)

(Song et al. 2023 eq. 5 and Appendix C, with s_d = 0.5; D is the denoiser's x_0 estimate, in the place of
c_out F), so f(x, sigma_min) = x exactly: the boundary condition holds by construction. D is a genlab denoiser
read through the ddpm noise schedule (sigma = sigma_VP / alpha), so every denoiser (unet, dit, mlp) serves.

- Distillation (CD, `teacher=RUN`, a trained ddpm): the student starts from the teacher's weights (and takes its
  denoiser, target and schedule); each step noises x_0 to sigma_{n+1}, takes one DDIM (Euler) step of the teacher
  to sigma_n, and pulls f(x_{n+1}, sigma_{n+1}) towards the target network's f(x_n, sigma_n).
- Training from scratch (CT, no teacher): x_n = x_0 + sigma_n z with the same z, N growing from 2 to 150 over
  `ct_horizon` steps (Song et al. 2023, Appendix C: N(k) = ceil(sqrt(k/K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1).
- The target network: for CD the trainer's EMA (`ema_decay` 0.95, the paper's CIFAR-10 setting), which is also
  what samples are drawn with; for CT the online weights without gradients, and each pair weighted by
  1 / (sigma_{n+1} - sigma_n) (Song & Dhariwal 2023, "Improved Techniques", §3.1-3.2). The distance is their
  pseudo-Huber loss sqrt(|a - b|^2 + c^2) - c, c = 0.00054 sqrt(d), or `loss=l2`.
- Sampling: f(sigma_max z), then for each further step re-noise to a lower sigma and apply f again (Song et al.
  2023, Algorithm 1); `steps` (1, 2, 4, ...) levels picked evenly from the Karras grid.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...config import check
from ...errors import GenlabError
from ...io import read_json
from ..base import GenerativeModel, generator, progress_bar
from .model import DDPM, DiffusionConfig, SamplerDefaults

# distillation: the student is built as the teacher (its denoiser, target, schedule, classes or text encoder)
INHERITED = ("arch", "net", "target", "schedule", "timesteps", "conditional", "text", "caption_modifiers")


def as_teacher(config, what: str):
    """`config` with the denoiser, target, schedule and conditioning of its `teacher` ddpm run (its config only:
    the weights are loaded once, as a frozen component)."""
    try:
        meta = read_json(Path(config.teacher).expanduser() / "config.json")
    except GenlabError as e:
        raise GenlabError(f"teacher={config.teacher} cannot be loaded: {e}") from None
    if meta.get("kind") != DDPM.kind:
        raise GenlabError(f"{what} needs a ddpm teacher; {config.teacher} is a {meta.get('kind')} run")
    config = dataclasses.replace(config, **{k: meta["config"][k] for k in INHERITED if k in meta["config"]})
    check(not config.text_noise or config.text, f"text_noise perturbs prompt tokens in training; the teacher "
          f"{config.teacher} was trained without text")
    return config


@dataclass
class ConsistencyConfig(DiffusionConfig):
    teacher: str = ""  # a trained ddpm run: consistency distillation; empty: consistency training from scratch
    sigma_min: float = 0.002  # epsilon, the boundary noise level (variance-exploding sigma; Song et al. 2023)
    sigma_max: float = 80.0  # the noisiest level (capped at what the noise schedule reaches)
    rho: float = 7.0  # spacing of the N levels (Karras et al. 2022)
    levels: int = 18  # CD: N noise levels (Song et al. 2023, CIFAR-10)
    ct_levels: tuple[int, int] = (2, 150)  # CT: N grows from s0 to s1 (Song et al. 2023, Appendix C)
    ct_horizon: int = 20_000  # CT: the steps K over which N grows
    loss: str = "huber"  # huber (pseudo-Huber, Song & Dhariwal 2023) | l2
    sampler: SamplerDefaults = field(default_factory=lambda: SamplerDefaults(name="ddim", steps=1))

    def __post_init__(self):
        super().__post_init__()
        check(0 < self.sigma_min < self.sigma_max, "need 0 < sigma_min < sigma_max")
        check(self.rho > 0 and self.levels >= 2, "rho must be > 0 and levels >= 2")
        check(2 <= self.ct_levels[0] <= self.ct_levels[1], "ct_levels must be (s0, s1) with 2 <= s0 <= s1")
        check(self.ct_horizon >= 1, f"ct_horizon must be >= 1, got {self.ct_horizon}")
        check(self.loss in ("huber", "l2"), f"loss must be huber or l2, got '{self.loss}'")


@dataclass
class ConsistencySampleOptions:
    prompt: str | None = None  # text-conditioned models: what to draw (default: each class's caption)
    steps: int | None = None  # network evaluations per sample (default: the model's sampler.steps, 1)

    def __post_init__(self):
        check(self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}")


def karras_sigmas(n: int, lo: float, hi: float, rho: float) -> torch.Tensor:
    """n levels from lo to hi, (lo^(1/rho) + i/(n-1) (hi^(1/rho) - lo^(1/rho)))^rho (Karras et al. 2022 eq. 5),
    ascending, float64."""
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    return (lo ** (1 / rho) + i * (hi ** (1 / rho) - lo ** (1 / rho))) ** rho


class Consistency(DDPM):
    kind = "consistency"
    Config = ConsistencyConfig
    SampleOptions = ConsistencySampleOptions
    log_prob_type = ""
    log_prob = GenerativeModel.log_prob  # a consistency function is not a reverse-step model: no variational bound

    def __init__(self, spec, config: ConsistencyConfig):
        if config.teacher:  # CD: the student is built as the teacher (its denoiser, target, schedule, classes)
            config = as_teacher(config, "consistency distillation")
        super().__init__(spec, config)
        self.sigma_max = min(self.config.sigma_max, float(self.schedule.sigma_ve(1.0)) * 0.999)
        if self.config.teacher:
            teacher = self.component("teacher")
            if tuple(teacher.spec.shape) != tuple(spec.shape):
                raise GenlabError(f"the teacher models {'x'.join(map(str, teacher.spec.shape))} data, this data "
                                  f"is {'x'.join(map(str, spec.shape))}: distil on the teacher's data")
            self.net.load_state_dict(teacher.net.state_dict())

    def train_defaults(self):
        return {**super().train_defaults(), "ema_decay": 0.95 if self.config.teacher else 0.999,
                "lr": 1e-4 if self.config.teacher else super().train_defaults()["lr"]}

    # ---- the consistency function
    def consistency(self, x: torch.Tensor, sigma: torch.Tensor, cond=None, params=None) -> torch.Tensor:
        """f(x, sigma) = c_skip x + (1 - c_skip) D(x, sigma); f(x, sigma_min) = x exactly. x: (B, *shape) in VE
        form, sigma: (B,)."""
        sd, lo = 0.5, self.config.sigma_min
        c_skip = (sd ** 2 / ((sigma.double() - lo) ** 2 + sd ** 2)).view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        return c_skip * x + (1 - c_skip) * self.denoised(x, sigma, cond, params)

    # ---- training
    def n_levels(self, step: int) -> int:
        c = self.config
        if c.teacher:
            return c.levels
        s0, s1 = c.ct_levels
        k = min(step, c.ct_horizon) / c.ct_horizon
        return math.ceil(math.sqrt(k * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1

    def sigmas(self, n: int) -> torch.Tensor:
        return karras_sigmas(n, self.config.sigma_min, self.sigma_max, self.config.rho)

    def _target_net(self):
        """The target network's weights: the EMA when distilling; the online weights, without gradients, when
        training from scratch (Song & Dhariwal 2023 §3.2: an EMA target biases consistency training)."""
        ema = self.ema_state
        if not self.config.teacher or ema is None:
            return {k: v.detach() for k, v in self.net.state_dict().items()}
        return {k[4:]: v for k, v in ema.items() if k.startswith("net.")}

    def diagnostics(self, x, y):
        return {}  # the consistency loss has no per-timestep denoising target

    def forward(self, x, y, phase="model", step=0):
        c, B = self.config, x.shape[0]
        N = self.n_levels(step)
        sig = self.sigmas(N).to(x.device)
        n = torch.randint(0, N - 1, (B,), device=x.device)
        s_hi, s_lo = sig[n + 1], sig[n]
        shape = (-1, *[1] * (x.dim() - 1))
        z = torch.randn_like(x)
        x_hi = x + s_hi.view(shape).to(x.dtype) * z
        cond = self.conditioner.perturb(self.conditioner(y), self.config.text_noise)
        with torch.no_grad():
            if c.teacher:  # one DDIM (Euler) step of the teacher's ODE: x_lo = D + s_lo (x_hi - D) / s_hi
                d = self.frozen("teacher").denoised(x_hi, s_hi, cond)
                x_lo = d + (s_lo / s_hi).view(shape).to(x.dtype) * (x_hi - d)
            else:
                x_lo = x + s_lo.view(shape).to(x.dtype) * z
            target = self.consistency(x_lo, s_lo, cond, self._target_net())
        online = self.consistency(x_hi, s_hi, cond)
        diff = (online - target).flatten(1)
        if c.loss == "huber":
            cc = 0.00054 * math.sqrt(diff.shape[1])  # Song & Dhariwal 2023 §3.3
            dist = (diff.pow(2).sum(1) + cc ** 2).sqrt() - cc
        else:
            dist = diff.pow(2).mean(1)
        if not c.teacher:  # lambda(sigma_n) = 1 / (sigma_{n+1} - sigma_n) (Song & Dhariwal 2023 §3.1)
            dist = dist / (s_hi - s_lo).to(dist.dtype)
        loss = dist.mean()
        return loss, {"loss": loss.detach(), "levels": torch.tensor(float(N))}

    # ---- sampling (Song et al. 2023, Algorithm 1)
    def _sample(self, n, *, seed, labels, options: ConsistencySampleOptions, progress):
        steps = options.steps or self.config.sampler.steps
        labels = self.check_conditioning(n, labels, options.prompt)
        cond = self.conditioner.sampling(labels, options.prompt, n, self.device)
        grid = self.sigmas(max(self.n_levels(self.config.ct_horizon), steps + 1)).flip(0)  # descending
        idx = torch.linspace(0, len(grid) - 1, steps + 1).round().long()[:-1]
        g = generator(seed)
        draw = lambda: torch.randn((n, *self.space.shape), generator=g).to(self.device)
        x = None
        with torch.no_grad(), progress_bar(progress, steps, "consistency sampling") as tick:
            for s in grid[idx].tolist():
                noise = draw()
                if x is None:
                    xs = s * noise
                else:
                    xs = x + math.sqrt(max(s ** 2 - self.config.sigma_min ** 2, 0.0)) * noise
                x = self.consistency(xs, torch.full((n,), s, device=self.device, dtype=torch.float64), cond)
                if self.clip_x0:
                    x = x.clamp(-1, 1)
                if tick:
                    tick()
        return x, {"nfe": float(steps)}

    inpaint = GenerativeModel.inpaint  # RePaint needs a sampler's many small steps: use the ddpm teacher
    edit = GenerativeModel.edit  # SDEdit walks a sampler's chain from the noised input: use the ddpm teacher
