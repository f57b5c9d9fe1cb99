"""Kind `progressive`: progressive distillation (Salimans & Ho 2022), which halves a deterministic sampler's steps
per round: a student learns to take in one DDIM step what its teacher takes in two.

Round k distils a teacher sampling in 2N steps into a student sampling in N = start_steps / 2^(k+1); the student
starts as the teacher, and at the end of the round it becomes the next round's teacher. The rounds are a schedule
of one Trainer run (`round_steps` training steps each), down to `min_steps`, where training goes on at that count.
Each training step (Salimans & Ho 2022, Algorithm 2, in genlab's discrete time):

    t = one of the student's N trailing timesteps, t' the teacher's timestep between t and the student's next s
    (the 2N-step grid refines the N-step one), z_t = sqrt(a_t) x + sqrt(1 - a_t) eps;
    two teacher DDIM steps z_t -> z_t' -> z_s, then the x0 that takes one DDIM step from z_t to z_s exactly:
        x~ = (z_s - (sigma_s / sigma_t) z_t) / (alpha_s - (sigma_s / sigma_t) alpha_t),  alpha = sqrt(a),
        sigma = sqrt(1 - a);
    loss = max(SNR_t, 1) |x0_student(z_t) - x~|^2 (the paper's "truncated SNR" weighting, eq. 10).

The student is built as the teacher (`teacher=RUN`, a trained ddpm: its denoiser, target and schedule) and samples
with DDIM in the steps of its round (the `distilled_steps` it records); other samplers and step counts work too.
A conditional student's label or prompt is dropped with `p_uncond` in training, as its teacher's was, so it keeps
the unconditional path and classifier-free guidance works on it (the teacher's target then is unconditional too).
The current round's teacher is kept in the weights (model.safetensors holds both networks), so a killed run
resumes mid-round.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from ...config import check
from ...errors import GenlabError
from ...precision import fp32
from ..base import GenerativeModel
from .consistency import as_teacher
from .model import DDPM, DiffusionConfig, SamplerDefaults
from .samplers import timesteps


@dataclass
class ProgressiveConfig(DiffusionConfig):
    teacher: str = ""  # a trained ddpm run, the first round's teacher (required)
    start_steps: int = 128  # the teacher's DDIM steps in the first round; the student of round k takes start / 2^(k+1)
    min_steps: int = 1  # the last round's student steps: the halving stops here
    round_steps: int = 1000  # training steps per round
    sampler: SamplerDefaults = field(default_factory=lambda: SamplerDefaults(name="ddim", steps=64))

    def __post_init__(self):
        super().__post_init__()
        check(bool(self.teacher), "progressive distillation needs teacher=RUN, a trained ddpm run")
        check(self.start_steps >= 2 and self.start_steps & (self.start_steps - 1) == 0,
              f"start_steps must be a power of two >= 2, got {self.start_steps}")
        check(1 <= self.min_steps < self.start_steps and self.min_steps & (self.min_steps - 1) == 0,
              f"min_steps must be a power of two below start_steps, got {self.min_steps}")
        check(self.start_steps <= self.timesteps // 2, f"start_steps must be at most half of the {self.timesteps} "
              f"diffusion steps, got {self.start_steps}")
        check(self.round_steps >= 1, f"round_steps must be >= 1, got {self.round_steps}")


def distillation_target(z_t: torch.Tensor, z_s: torch.Tensor, a_t: float, a_s: float) -> torch.Tensor:
    """The x0 whose DDIM step from z_t (abar a_t) lands on z_s (abar a_s > a_t), Salimans & Ho 2022 eq. 8."""
    ratio = ((1 - a_s) / (1 - a_t)) ** 0.5
    return (z_s - ratio * z_t) / (a_s ** 0.5 - ratio * a_t ** 0.5)


class Progressive(DDPM):
    kind = "progressive"
    Config = ProgressiveConfig
    log_prob_type = ""
    log_prob = GenerativeModel.log_prob  # the student walks a few-step chain: no bound over the T-step one

    def __init__(self, spec, config: ProgressiveConfig):
        super().__init__(spec, as_teacher(config, "progressive distillation"))
        teacher = self.component("teacher")
        if tuple(teacher.spec.shape) != tuple(spec.shape):
            raise GenlabError(f"the teacher models {'x'.join(map(str, teacher.spec.shape))} data, this data is "
                              f"{'x'.join(map(str, spec.shape))}: distil on the teacher's data")
        self.net.load_state_dict(teacher.net.state_dict())
        self.round_teacher = copy.deepcopy(teacher.net).requires_grad_(False)  # this round's teacher
        self.register_buffer("round", torch.tensor(0))
        self.register_buffer("distilled_steps", torch.tensor(self.student_steps(0)))

    def student_steps(self, k: int) -> int:
        return max(self.config.start_steps >> (k + 1), self.config.min_steps)

    def round_at(self, step: int) -> int:
        """The round a training step belongs to; the last round (at min_steps) goes on for ever."""
        last = 0
        while self.student_steps(last) > self.config.min_steps:
            last += 1
        return min(step // self.config.round_steps, last)

    def train_defaults(self):  # a constant lr: a decay over the whole run would starve the last rounds
        return {**super().train_defaults(), "ema_decay": 0.0, "lr": 5e-5, "warmup_steps": 0, "schedule": "constant"}

    def train(self, mode: bool = True):  # the round's teacher always runs in eval mode (no dropout in targets)
        super().train(mode)
        self.round_teacher.eval()
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        k = self.round_at(step)
        if k != int(self.round):  # a new round: the student so far becomes the teacher
            self.round_teacher.load_state_dict(self.net.state_dict())
            self.round.fill_(k)
            self.distilled_steps.fill_(self.student_steps(k))
        T, N = self.config.timesteps, self.student_steps(k)
        student, fine = timesteps(T, N), timesteps(T, 2 * N)  # fine[2i] == student[i]
        B = x.shape[0]
        i = torch.randint(0, N, (B,))
        t = torch.tensor(student, device=x.device)[i.to(x.device)]
        mid = torch.tensor(fine, device=x.device)[(2 * i + 1).to(x.device)]
        s = torch.tensor(student[1:] + [0], device=x.device)[i.to(x.device)]
        sch, shape = self.schedule, (-1, *[1] * (x.dim() - 1))
        z_t = sch.q_sample(x, t, torch.randn_like(x))
        # the label or prompt dropped as the teacher's was (p_uncond), so the student keeps its unconditional path
        # and classifier-free guidance still works on it
        cond = self.conditioner.drop(self.conditioner.perturb(self.conditioner(y), self.config.text_noise),
                                     self.config.p_uncond)
        abar = lambda tt: sch.abar(tt, x)  # (B, 1, ...) float32 per example
        with torch.no_grad():
            teach = self.denoiser(cond, 1.0, False, net=self.round_teacher)
            z = z_t
            for a, b in ((t, mid), (mid, s)):
                x0, eps = teach(z, a)
                z = ddim_step(z, x0, eps, abar(a), abar(b))
            target = distillation_target(z_t, z, abar(t), abar(s))
        a_t = abar(t)
        x0_student = sch.to_x0_eps(fp32(self.net(z_t, t, cond)), z_t, a_t, self.config.target)[0]
        weight = torch.clamp(a_t / (1 - a_t), min=1.0).view(shape)  # max(SNR, 1)
        loss = (weight * (x0_student - target).pow(2)).mean()
        return loss, {"loss": loss.detach(), "round": torch.tensor(float(k)), "student_steps": torch.tensor(float(N))}

    def diagnostics(self, x, y):
        return {}  # the distillation loss has no per-timestep denoising target

    def _options(self, labels, guidance, sampler, steps, eta, n):
        return super()._options(labels, guidance, sampler, int(self.distilled_steps) if steps is None else steps,
                                eta, n)

    inpaint = GenerativeModel.inpaint  # RePaint needs a sampler's many small steps: use the ddpm teacher


def ddim_step(z, x0, eps, a, a_s):
    """DDIM's deterministic step (the `ddim` sampler at eta = 0) with per-example abar tensors, as the batch mixes
    timesteps: sqrt(a_s) x0 + sqrt(1 - a_s) eps."""
    return a_s.sqrt() * x0 + (1 - a_s).clamp(min=0).sqrt() * eps
