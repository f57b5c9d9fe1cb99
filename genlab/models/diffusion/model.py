"""Kind `ddpm`: denoising diffusion (Ho et al. 2020) with eps / x0 / v prediction (Salimans & Ho 2022),
Min-SNR-gamma loss weighting (Hang et al. 2023), classifier-free guidance (Ho & Salimans 2022) on class labels
or text prompts (`text=minilm`: a frozen text encoder, cross-attention in the denoiser, captions built from the
labels; conditioners.py), and RePaint inpainting (Lugmayr et al. 2022).

Assembled from parts, as diffusers separates them: the noise schedule (schedule.py), a denoiser from
`genlab.nn.DENOISERS` with its options in the `net` section, a conditioner (conditioners.py) and the samplers
(samplers.py), picked at sample time with defaults in the `sampler` section:

    arch: unet
    net: {channels: 64, mults: [1, 2, 2], attention: [7]}      # --set net.channels=64
    sampler: {name: dpm++, steps: 20, guidance: 2.0}           # --set sampler.steps=20

The flat keys of earlier versions (channels=..., sampler=ddim, sample_steps=..., eta=..., guidance=...) are
still accepted, and mapped onto these sections (`DDPM.upgrade_options`).

Precision (genlab.precision): under bf16/fp16 only the denoiser runs in autocast; its prediction is cast to
float32, and the loss, the noise schedule (float64 tables) and every sampler update stay float32/float64.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...config import check, defaults, field_help
from ...data.dataset import from_levels, to_levels
from ...data.spec import DataSpec
from ...errors import GenlabError
from ...nn.denoisers import DENOISERS, build_denoiser, denoiser_class, denoiser_option_names, denoiser_options
from ...precision import exact, fp32
from ...text import text_encoder_class
from ..base import GenerativeModel, evaluating, generator, progress_bar
from .conditioners import make_conditioner
from .likelihood import variational_bound
from .samplers import Sampler, sample_loop, sampler_class, start_timesteps
from .schedule import SCHEDULES, NoiseSchedule

TARGETS = ("eps", "x0", "v")
LEGACY_NET = ("channels", "mults", "res_blocks", "attention", "dropout", "hidden", "fourier", "act")
LEGACY_SAMPLER = {"sample_steps": "steps", "eta": "eta", "guidance": "guidance"}


def check_arch(arch: str) -> None:
    check(arch == "auto" or arch in DENOISERS, f"arch must be auto or one of {', '.join(DENOISERS)}, got '{arch}'")


@dataclass
class SamplerDefaults:
    """The `sampler` section: how `sample` runs when not told otherwise."""

    name: str = "ddim"  # ddpm | ddim | dpm++ | plms
    steps: int = 50  # network-evaluation steps
    eta: float = 0.0  # ddim noise: 0 deterministic, 1 ddpm-like
    guidance: float = 1.0  # conditional models: 0 uncond., 1 cond., > 1 guided

    def __post_init__(self):
        sampler_class(self.name)
        check(self.steps >= 1, f"sampler.steps must be >= 1, got {self.steps}")
        check(0 <= self.eta <= 1, f"eta must be in [0, 1], got {self.eta}")
        check(self.guidance >= 0, f"guidance must be >= 0, got {self.guidance}")


@dataclass
class DiffusionConfig:
    timesteps: int = 1000  # T
    schedule: str = "cosine"  # linear | cosine | sigmoid
    target: str = "v"  # what the network predicts: eps | x0 | v (v: well-conditioned at every noise level)
    min_snr: float = 0.0  # Min-SNR-gamma weighting, gamma (5 in Hang et al. 2023); 0: plain MSE on the target
    arch: str = "auto"  # the denoiser: auto (unet for images, mlp otherwise) | unet | mlp | dit (also: --set net=dit)
    net: dict[str, Any] = field(default_factory=dict)  # the denoiser's options (genlab.nn.denoisers); unset: defaults
    conditional: bool = False  # class labels, with classifier-free guidance
    text: str = ""  # text prompts through this encoder (minilm), trained on captions of the labels; '' no text
    p_uncond: float = 0.1  # probability of dropping the label or caption in training (Ho & Salimans 2022)
    text_noise: float = 0.0  # text models, training: noise on each prompt token, relative to its norm (LAFITE)
    caption_modifiers: bool = False  # text models: train also on captions with class-neutral words ("a cheap bag")
    sampler: SamplerDefaults = field(default_factory=SamplerDefaults)
    clip: bool = True  # images: clip predicted x0 to [-1, 1] while sampling

    def __post_init__(self):
        check(self.timesteps >= 1, f"timesteps must be >= 1, got {self.timesteps}")
        check(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        check(self.target in TARGETS, f"target must be one of {', '.join(TARGETS)}, got '{self.target}'")
        check(self.min_snr >= 0, f"min_snr must be >= 0, got {self.min_snr}")
        check_arch(self.arch)
        check(not (self.text and self.conditional), "conditional=true and text=... exclude each other: a text model "
              "trains on captions of the class labels; drop conditional=true")
        if self.text:
            text_encoder_class(self.text)
        check(0 <= self.p_uncond < 1, f"p_uncond must be in [0, 1), got {self.p_uncond}")
        check(math.isfinite(self.text_noise) and self.text_noise >= 0,
              f"text_noise must be a number >= 0, got {self.text_noise}")
        check(not self.text_noise or self.text or getattr(self, "teacher", ""),  # a student takes its teacher's text
              "text_noise perturbs prompt tokens in training; it needs text=minilm")
        check(not self.caption_modifiers or self.text, "caption_modifiers changes training captions; it needs "
              "text=minilm")
        check(self.sampler.steps <= self.timesteps,
              f"sampler.steps must be between 1 and timesteps ({self.timesteps}), got {self.sampler.steps}")


@dataclass
class DiffusionSampleOptions:
    prompt: str | None = None  # text-conditioned models: what to draw ("" unconditional; default: class captions)
    sampler: str | None = None  # ddpm | ddim | dpm++ | plms (default: the model's `sampler.name`)
    steps: int | None = None  # network-evaluation steps, 1..T (default: the model's `sampler.steps`)
    guidance: float | None = None  # conditional models: 0 unconditional, 1 conditional, > 1 guided
    eta: float | None = None  # ddim noise: 0 deterministic .. 1 ddpm-like

    def __post_init__(self):
        if self.sampler is not None:
            sampler_class(self.sampler)
        check(self.guidance is None or (math.isfinite(self.guidance) and self.guidance >= 0),
              f"guidance must be >= 0, got {self.guidance}")
        check(self.eta is None or (math.isfinite(self.eta) and 0 <= self.eta <= 1),
              f"eta must be in [0, 1], got {self.eta}")


def resolve_arch(arch: str, spec: DataSpec) -> str:
    """`auto`: unet for images, mlp otherwise; a denoiser that needs images refuses other data."""
    name = arch if arch != "auto" else ("unet" if spec.is_image else "mlp")
    if denoiser_class(name).images_only and not spec.is_image:
        raise GenlabError(f"arch={name} needs image data; {spec.name} is {spec.kind} data: use arch=mlp")
    return name


class DDPM(GenerativeModel):
    kind = "ddpm"
    family = "diffusion"
    diagnostic_plots = {"loss_by_t": ("denoising loss at 10 timesteps from t = 0 (clean) to T (noise), at the end",
                                      False)}

    @classmethod
    def bench_samplers(cls, spec):
        # the rows of Xiao et al. (2022, Table 1): ancestral DDPM at its 1000 steps, DDIM at 50; and DPM-Solver++
        return ({"sampler": "ddpm", "steps": 1000}, {"sampler": "ddim", "steps": 50}, {"sampler": "dpm++", "steps": 20})
    Config = DiffusionConfig
    SampleOptions = DiffusionSampleOptions
    log_prob_type = "bound"
    bound_tightens_with_k = False  # log_prob's bound is the variational one; k is not importance sampling
    nll_by_default = False  # terms + 1 network calls per test image: `genlab eval --metrics nll` asks for it

    def __init__(self, spec: DataSpec, config: DiffusionConfig):
        super().__init__(spec, config)
        c = config
        self._classes()  # conditional=true needs labelled data: one line if it has none
        self.space = self.diffusion_space()
        self.conditioner = make_conditioner(self.conditioning, spec, **(
            {"encoder": c.text, "modifiers": c.caption_modifiers} if c.text else {}))
        self.arch = self.resolve_arch(c.arch)
        options = denoiser_options(self.arch, self.net_options(c.net), where=self.kind)
        self.config = dataclasses.replace(c, net=dataclasses.asdict(options))  # all of them into config.json
        self.net = build_denoiser(self.arch, self.space.shape, options, self.conditioner.embedding(),
                                  self.conditioner.context_dim)
        self.schedule = NoiseSchedule(c.schedule, c.timesteps)
        self.clip_x0 = c.clip and spec.is_image and self.space is spec  # predicted x0 clipped to the pixel range

    @property
    def conditioning(self) -> str:
        return "text" if self.config.text else super().conditioning

    def diffusion_space(self) -> DataSpec:
        """What the diffusion runs on: the data itself (ldm: a first stage's latents)."""
        return self.spec

    def resolve_arch(self, arch: str) -> str:
        return resolve_arch(arch, self.space)

    def net_options(self, net: dict[str, Any]) -> dict[str, Any]:
        """The denoiser's options as given (ldm fills in defaults that fit its latents)."""
        return net

    @classmethod
    def upgrade_options(cls, spec: DataSpec, options: dict[str, Any]) -> dict[str, Any]:
        """The flat keys of earlier versions as dotted keys of the sections, in their order (so a later key still
        wins): sampler=NAME, sample_steps, eta, guidance -> sampler.*; channels, mults, ..., act -> net.* where
        the chosen denoiser has that option. The other denoiser's flat options were always accepted and unused:
        they are still checked, then dropped."""
        net = options.get("net")
        arch = options.get("arch", net if isinstance(net, str) else "auto")
        check_arch(arch)
        mine = denoiser_option_names(resolve_arch(arch, spec))
        out: dict[str, Any] = {}
        for key, value in options.items():
            if key == "sampler" and isinstance(value, str):
                out["sampler.name"] = value
            elif key == "net" and isinstance(value, str):  # net=dit names the denoiser, as arch=dit
                out["arch"] = value
            elif key in LEGACY_SAMPLER:
                out[f"sampler.{LEGACY_SAMPLER[key]}"] = value
            elif key in LEGACY_NET and key in mine:
                out[f"net.{key}"] = value
            elif key in LEGACY_NET:
                for name in DENOISERS:
                    if key in denoiser_option_names(name):
                        denoiser_options(name, {key: value}, where=cls.kind)
            else:
                out[key] = value
        return out

    @classmethod
    def option_help(cls) -> dict[str, str]:
        out = field_help(cls.Config)
        for name in DENOISERS:
            for k, v in field_help(denoiser_class(name).Options).items():
                out.setdefault(f"net.{k}", f"{name}: {v}")
        return out

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """The config's options with their defaults, `net.*` for every denoiser (the arch picks which apply; an
        option two denoisers share shows the first one's default)."""
        out: dict[str, Any] = {}
        for key, value in defaults(cls.Config).items():
            if key != "net":
                out[key] = value
                continue
            for name in DENOISERS:
                for k, v in defaults(denoiser_class(name).Options).items():
                    out.setdefault(f"net.{k}", v)
        return out

    def channels_last(self, precision: str) -> bool:
        """The U-Net in bf16 runs 1.25x faster (training) and 1.3x (sampling) with its weights in the standard
        layout on CPU (docs/BENCHMARKS.md §18); in float32, channels-last as every conv net."""
        return self.space.is_image and not (precision == "bf16" and self.arch == "unet")

    def train_defaults(self) -> dict[str, Any]:
        return {"ema_decay": 0.999, "lr": denoiser_class(self.arch).lr, "warmup_steps": 200}

    # ---- training
    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        c, b = self.config, x.shape[0]
        t = torch.randint(0, c.timesteps, (b,), device=x.device)
        noise = torch.randn_like(x)
        xt = self.schedule.q_sample(x, t, noise)
        cond = self.conditioner.drop(self.conditioner.perturb(self.conditioner(y), c.text_noise), c.p_uncond)
        pred = fp32(self.net(xt, t, cond))
        a = self.schedule.abar(t, x)
        err = F.mse_loss(pred, self.schedule.target(x, noise, a, c.target), reduction="none").flatten(1).mean(1)
        if c.min_snr > 0:  # min(SNR, gamma) expressed for each target (Hang et al. 2023, eq. 9-11)
            snr = self.schedule.snr(t).float()
            w = snr.clamp(max=c.min_snr)
            err = err * (w / snr if c.target == "eps" else w if c.target == "x0" else w / (snr + 1))
        loss = err.mean()
        return loss, {"loss": loss}

    @torch.no_grad()
    def diagnostics(self, x, y):
        """The unweighted denoising loss at 10 timesteps spread over [0, T), on 64 fixed examples with fixed
        noise: which noise levels the network has learnt (training minimises their mean, Ho et al. 2020)."""
        c = self.config
        x, y = x[:64], (y[:64] if y is not None else None)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.device, x.dtype)
        cond = self.conditioner(y)
        out = []
        for step in ((torch.arange(10) + 0.5) * c.timesteps / 10).long().tolist():
            t = torch.full((len(x),), step, device=x.device, dtype=torch.long)
            pred = fp32(self.net(self.schedule.q_sample(x, t, noise), t, cond))
            target = self.schedule.target(x, noise, self.schedule.abar(t, x), c.target)
            out.append(round(float(F.mse_loss(pred, target)), 5))
        return {"loss_by_t": out}

    # ---- the denoiser at sampling time
    def denoiser(self, cond: Any, guidance: float, clip: bool, net: torch.nn.Module | None = None):
        """(x_t, t) -> (x0_hat, eps_hat) for the conditioner's `cond`, with classifier-free guidance on the network
        output pred = uncond + w (cond - uncond); w = 0 and w = 1 evaluate one branch only (exactly). net: another
        network of the same kind (a distillation's teacher) in place of the model's."""
        c = self.config
        null = None if cond is None else self.conditioner.null(cond)
        net = self.net if net is None else net

        def denoise(x: torch.Tensor, t: torch.Tensor):
            if cond is None or guidance == 1:
                pred = fp32(net(x, t, cond))
            elif guidance == 0:
                pred = fp32(net(x, t, null))
            else:
                both = fp32(net(torch.cat([x, x]), torch.cat([t, t]), self.conditioner.cat(cond, null)))
                p_cond, p_uncond = both.chunk(2)
                pred = p_uncond + guidance * (p_cond - p_uncond)
            a = self.schedule.abar(t, x)
            x0, eps = self.schedule.to_x0_eps(pred, x, a, c.target)
            if clip:
                x0 = x0.clamp(-1, 1)
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            return x0, eps

        return denoise

    def net_time(self, sigma: torch.Tensor) -> torch.Tensor:
        """Variance-exploding noise levels sigma = sigma_VP / alpha (B,) -> the denoiser's real timesteps u T - 1,
        u in [0, 1] the continuous time with sigma_ve(u) = sigma (the integer t are the knots u = (t + 1) / T)."""
        u = self.schedule.t_from_log_snr(-2 * torch.log(sigma.detach().double().cpu()))
        return (u * self.schedule.steps - 1).to(device=sigma.device, dtype=torch.float32)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None, params=None) -> torch.Tensor:
        """D(x, sigma): the x_0 estimate from x = x_0 + sigma z (variance-exploding form, as Karras et al. 2022
        and consistency models write it), sigma (B,); `params`: other weights for the denoiser (e.g. an EMA)."""
        alpha = (1 / (1 + sigma.double() ** 2).sqrt()).view(-1, *[1] * (x.dim() - 1))
        x_vp = x * alpha.to(x.dtype)
        t = self.net_time(sigma)
        pred = fp32(self.net(x_vp, t, cond) if params is None else functional_call(self.net, params, (x_vp, t, cond)))
        return self.schedule.to_x0_eps(pred, x_vp, (alpha ** 2).to(x.dtype), self.config.target)[0]

    def _options(self, labels, guidance, sampler, steps, eta, n) -> tuple[Any, float, Sampler, int]:
        """Labels, guidance weight, the sampler object and its steps, each the model's default where None."""
        d = self.config.sampler
        labels = self.check_conditioning(n, labels, None)
        if guidance is not None and self.conditioning == "none":
            raise GenlabError("guidance needs a class- or text-conditional model (train with --set conditional=true "
                              "or --set text=minilm); this one is unconditional")
        w = d.guidance if guidance is None else float(guidance)
        if not (math.isfinite(w) and w >= 0):
            raise GenlabError(f"guidance must be >= 0, got {w}")
        cls = sampler_class(sampler or d.name)
        steps = d.steps if steps is None else int(steps)
        eta = d.eta if eta is None else float(eta)
        if not 0 <= eta <= 1:
            raise GenlabError(f"eta must be in [0, 1], got {eta}")
        smp = cls(eta=eta)
        smp.timesteps(self.config.timesteps, steps)  # validates 1 <= steps <= T
        return labels, w, smp, steps

    @staticmethod
    def _nfe(cond, w: float, steps: int) -> int:
        """Network evaluations per sample: one per step, two where guidance mixes both predictions."""
        return steps * (2 if cond is not None and w not in (0, 1) else 1)

    @torch.no_grad()
    def _sample(self, n, *, seed, labels, options: DiffusionSampleOptions, progress):
        """(n, *shape) samples with `sampler` (ddpm | ddim | dpm++ | plms) in `steps` steps; for conditional models
        `guidance` w (0 unconditional, 1 conditional, > 1 guided) and labels (default: every class in turn)."""
        o = options
        labels, w, sampler, steps = self._options(labels, o.guidance, o.sampler, o.steps, o.eta, n)
        cond = self.conditioner.sampling(labels, o.prompt, n, self.device)
        g = generator(seed)
        x = torch.randn((n, *self.space.shape), generator=g).to(self.device)
        if self.space.is_image:
            x = x.contiguous(memory_format=torch.channels_last)
        denoise = self.denoiser(cond, w, self.clip_x0)
        with progress_bar(progress, steps, f"{sampler.name} sampling") as tick:
            x = sample_loop(denoise, self.schedule, x, sampler, steps, g, progress=tick)
        return x, {"nfe": self._nfe(cond, w, steps)}

    @torch.no_grad()
    @exact
    @evaluating
    def log_prob(self, x, y=None, k: int = 1, terms: int = 10, parts: bool = False):
        """Per-example lower bound on log p(x) in nats (B,): the variational bound (Ho et al. 2020, eq. 5) with
        the ddpm sampler's reverse steps (likelihood.py). For images, a bound on the discrete image's log P (the
        decoder integrates each pixel's bin), as the PixelCNNs' and the flows' bits/dim; for vectors and tables, on
        the density. terms: how many of the T - 1 denoising terms are evaluated (one network call each; the rest
        estimated without bias, stratified); terms >= T - 1 evaluates every one (each at one draw of x_t).
        k: unused (no importance sampling). parts: a dict of the bound's terms (B,) instead: prior, denoising,
        decoder and nll."""
        if isinstance(terms, bool) or not isinstance(terms, int) or terms < 1:
            raise GenlabError(f"terms (denoising terms evaluated) must be an integer >= 1, got {terms!r}")
        x = self._inputs(x, "log_prob").to(self.device)
        if self.conditioning != "none" and y is None:
            raise GenlabError(f"this {self.kind} is conditional: give the labels of the examples (log p(x | y))")
        labels = self.check_conditioning(len(x), y, None) if self.conditioning != "none" else None
        denoise = self.denoiser(self.conditioner(labels), 1.0, self.clip_x0)
        levels = self.spec.levels or 256
        half_bin = 1 / (levels - 1) if self.spec.is_image else None
        if self.spec.is_image:  # the decoder's bins sit on the grid: values between levels go to the nearest
            x = from_levels(to_levels(x.clamp(-1, 1), levels), levels)
        bound = variational_bound(x, self.schedule, denoise, terms, half_bin)
        if parts:
            return bound
        return -bound["nll"].float()

    def _inputs(self, x, what: str) -> torch.Tensor:
        """x as a float32 batch of the model's data shape."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.shape == self.spec.shape:
            x = x[None]
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise GenlabError(f"inputs to {what} have shape {tuple(x.shape[1:])}, the model makes "
                              f"{tuple(self.spec.shape)}")
        if not torch.isfinite(x).all():
            raise GenlabError(f"inputs to {what} hold NaN or inf values")
        return x

    @torch.no_grad()
    def edit(self, x: torch.Tensor, strength: float = 0.5, *, seed: int | None = None, labels=None,
             sampler: str | None = None, steps: int | None = None, guidance: float | None = None,
             eta: float | None = None, progress: bool = False) -> torch.Tensor:
        """SDEdit (Meng et al. 2022): noise x to the level t = strength * T of the forward process and walk the
        reverse chain back with `sampler`, so the result is a sample of the model that keeps x's coarse layout.
        strength in (0, 1]: near 0 returns x almost unchanged (faithful), 1 ignores it (realistic). Visits the
        sampler's timesteps at or below t, about strength * steps network evaluations (sampler and steps: the
        model's defaults, e.g. DDIM with 50 steps, where not given). x: (B, *shape) or
        (*shape) in data space."""
        x = self._inputs(x, "edit")
        if not (isinstance(strength, (int, float)) and math.isfinite(strength) and 0 < strength <= 1):
            raise GenlabError(f"strength must be in (0, 1], the fraction of the noise schedule to add, got "
                              f"{strength}")
        n, dev = x.shape[0], self.device
        labels, w, smp, steps = self._options(labels, guidance, sampler, steps, eta, n)
        start = max(round(strength * self.config.timesteps) - 1, 0)
        g = generator(seed)
        noise = torch.randn((n, *self.space.shape), generator=g).to(dev)
        z = self.schedule.q_sample(self.to_space(x.to(dev)), torch.full((n,), start, device=dev), noise)
        denoise = self.denoiser(self.conditioner.sampling(labels, None, n, dev), w, self.clip_x0)
        todo = len(start_timesteps(smp.timesteps(self.config.timesteps, steps), start))
        with progress_bar(progress, todo, "editing") as tick:
            out = sample_loop(denoise, self.schedule, z, smp, steps, g, progress=tick, start=start)
        return self.in_range(self.from_space(out))

    def to_space(self, x: torch.Tensor) -> torch.Tensor:
        """Data -> the space the diffusion runs in (the data itself here; codes for an ldm)."""
        return x

    def from_space(self, z: torch.Tensor) -> torch.Tensor:
        return z

    @torch.no_grad()
    def inpaint(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int | None = None, labels=None,
                sampler: str = "ddpm", steps: int = 100, resample: int = 5, guidance: float | None = None,
                eta: float = 1.0, progress: bool = False) -> torch.Tensor:
        """Fill the pixels (or table entries) where mask = 1, keeping x where mask = 0, with RePaint: at every
        step the known part is the forward-noised x and the step is repeated `resample` times, re-noising in
        between. x: (B, *shape) or (*shape) in data space; mask broadcastable to it. Costs steps * resample
        network evaluations per image."""
        x = self._inputs(x, "inpaint")
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
        labels, w, smp, steps = self._options(labels, guidance, sampler, steps, eta, n)
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
        denoise = self.denoiser(self.conditioner.sampling(labels, None, n, dev), w, self.clip_x0)
        with progress_bar(progress, steps, "inpainting") as tick:
            out = sample_loop(denoise, self.schedule, z, smp, steps, g, known=known, resample=resample,
                              progress=tick)
        return self.in_range(hole * out + (1 - hole) * x_known)  # the known part exactly, not its t = 0 noisy version
