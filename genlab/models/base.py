"""The protocol every family implements, and the save/load format (config.json + safetensors, never pickle).

Training: the one Trainer reads `phases` — (optimizer name, repeats) run in order each iteration, e.g.
(("model", 1),) for a VAE, (("discriminator", 5), ("generator", 1)) for a WGAN — builds one optimizer per name
from `param_groups()`, calls `on_fit_start(x, y)` once before a new run's first step, and calls
`forward(x, y, phase, step) -> (loss, logs)`; during training the model can read the Trainer's EMA of its
weights as `ema_state`.
Sampling: `sample(n, seed=..., labels=..., **options)` returns data-space tensors; `generate(...)` returns them
with their labels and cost (network evaluations, candidates drawn, seconds). Each family declares its sampling
options as a dataclass (`SampleOptions`), validated like its config, and implements `_sample`.
Declarations the protocol, the CLI and the reports read instead of option names: `conditioning` (none | class |
text), `task` (generate | translate) and `output_data` (the dataset its samples are compared with).
Capabilities (log_prob, encode, decode, reconstruct, interpolate, traverse, inpaint) exist only where a family
overrides them; asking another family for one raises a CapabilityError naming the kinds that have it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import defaults, field_help, from_dict, to_dict
from ..data.spec import DataSpec
from ..errors import CapabilityError, GenlabError
from ..precision import autocast, fp32, resolve

CAPABILITIES = ("log_prob", "encode", "decode", "reconstruct", "interpolate", "traverse", "inpaint", "edit")


def evaluating(fn):
    """Run a model method in eval mode (batch norm on its running statistics, no dropout), then restore the mode
    it was in: results that do not depend on the rest of the batch, even right after training."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        was = self.training
        self.eval()
        try:
            return fn(self, *args, **kwargs)
        finally:
            self.train(was)

    return wrapper


def generator(seed: int | None) -> torch.Generator:
    """A CPU generator: the same seed gives the same noise on every device."""
    g = torch.Generator()
    g.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
    return g


def randn(shape: tuple[int, ...], g: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.randn(shape, generator=g).to(device)


class progress_bar:
    """A rich progress bar over `total` units of sampling when enabled: `with progress_bar(on, total, what) as
    tick:` yields tick(k=1), which advances it by k, or None when disabled."""

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
        return lambda k=1: self.p.advance(task, k)

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.__exit__(*exc)


@dataclass
class NoSampleOptions:
    """A family whose sampling takes no options."""


@dataclass
class Cost:
    """What drawing samples cost: network evaluations per sample, candidates drawn per kept sample, seconds."""

    nfe: float = 1.0
    candidates: float = 1.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"nfe_per_sample": self.nfe, "candidates_per_sample": self.candidates,
                "seconds": round(self.seconds, 3)}


@dataclass
class Samples:
    """x: (n, *spec.shape) in data space; labels: (n,) or None; options: the resolved sampling options."""

    x: torch.Tensor
    labels: torch.Tensor | None
    cost: Cost
    options: Any = None
    precision: str = "fp32"  # what the networks ran in


CONDITIONING = ("none", "class", "text")
TASKS = ("generate", "translate")


def _memory_bytes() -> int:
    """This machine's memory in bytes (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


class GenerativeModel(nn.Module, metaclass=ABCMeta):
    kind: ClassVar[str]
    family: ClassVar[str]
    Config: ClassVar[type]
    SampleOptions: ClassVar[type] = NoSampleOptions
    task: ClassVar[str] = "generate"  # generate: samples from noise | translate: maps given inputs
    data_kinds: ClassVar[tuple[str, ...]] = ("image", "vector", "table")  # the DataSpec kinds it models
    log_prob_type: ClassVar[str] = ""  # "exact" or "bound" where log_prob exists
    bound_tightens_with_k: ClassVar[bool] = True  # log_prob's k is importance samples (eval: k = 1 and k = 100)
    nll_by_default: ClassVar[bool] = True  # False: a costly log_prob, scored by `eval` only when asked (--metrics)
    # whether sampling gains from bf16/fp16: False keeps `auto` sampling in float32 (see sampling_precision)
    samples_faster_in_low_precision: ClassVar[bool] = True
    phases: tuple[tuple[str, int], ...] = (("model", 1),)
    # The Trainer's exponential moving average of this model's weights: {state_dict key: tensor}, the same keys,
    # shapes and device as state_dict(), updated in place after every iteration (so during the forward of step
    # t it holds the average after step t - 1; warm-up as in training.EMA); None when ema_decay is 0 or the model
    # has never been trained. E.g. consistency training (Song et al. 2023) takes it as its target network's
    # weights (torch.func.functional_call(self, self.ema_state, args)). Read it, never write it: it is a plain
    # attribute, not a parameter or a buffer, so it is in no state_dict, no optimizer and no saved file (the
    # Trainer saves the same average as ema.safetensors). It stays set after training: the final average.
    ema_state: dict[str, torch.Tensor] | None = None
    # list-valued diagnostics the report draws as bars at the end of training: key -> (caption, sort descending)
    diagnostic_plots: ClassVar[dict[str, tuple[str, bool]]] = {}

    def __init__(self, spec: DataSpec, config: Any):
        super().__init__()
        self.spec = spec
        self.config = config
        self._frozen: dict[str, GenerativeModel] = {}  # components: other runs, frozen, not in state_dict
        self.components: dict[str, dict[str, str]] = {}  # name -> {"path", "sha256", "kind"}, in config.json

    # ---- composition: another run as a frozen part of this model
    def component(self, name: str) -> GenerativeModel:
        """Load the run named by config field `name` (a path) as a frozen component: no gradients, eval mode,
        moved with this model, kept out of its state_dict and optimizer, recorded by path and sha256 of its
        weights so that loading this model later checks that the component is still the one it was built on."""
        from ..io import file_sha256
        from . import load_model

        path = Path(getattr(self.config, name)).expanduser()
        try:
            model = load_model(path)
        except GenlabError as e:
            raise GenlabError(f"component {name}={path} of this {self.kind} cannot be loaded: {e}") from None
        for p in model.parameters():
            p.requires_grad_(False)
        weights = path / ("ema.safetensors" if (path / "ema.safetensors").is_file() else "model.safetensors")
        self.components[name] = {"path": str(path.resolve()), "sha256": file_sha256(weights), "kind": model.kind}
        setattr(self.config, name, str(path.resolve()))  # so the saved config loads from any directory
        self._frozen[name] = model
        return model

    def frozen(self, name: str) -> GenerativeModel:
        """A component loaded by `component(name)`. Keep components out of module attributes (`self.ae = ...`
        would register them, and their weights would be trained and saved with this model's)."""
        return self._frozen[name]

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double() reach the frozen components too
        super()._apply(fn, *args, **kwargs)
        for m in self.__dict__.get("_frozen", {}).values():
            m._apply(fn, *args, **kwargs)
        return self

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

    @classmethod
    def for_data(cls, spec: DataSpec) -> type[GenerativeModel]:
        """The class that builds this kind for this data: one kind may have a form per kind of data (realnvp on
        images and on vectors), each with its own Config. Default: this class."""
        return cls

    @classmethod
    def bench_samplers(cls, spec: DataSpec) -> tuple[dict[str, Any], ...]:
        """Sampling options with which `genlab bench trilemma` evaluates this kind on data like `spec`, one
        evaluation each; () (the default): the kind does not stand for its family there. The benchmark trains
        the first kind of each family that declares some."""
        return ()

    @classmethod
    def config_defaults(cls, spec: DataSpec) -> dict[str, Any]:
        """Model options this family prefers for this data (a recipe known to work); the user's options win."""
        return {}

    @abstractmethod
    def forward(self, x: torch.Tensor, y: torch.Tensor, phase: str = "model", step: int = 0):
        """One phase's loss on a batch: (scalar loss, {name: scalar tensor} to log)."""

    def diagnostics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Family-specific numbers the Trainer logs now and then on a fixed batch (e.g. VAE active units)."""
        return {}

    # ---- options
    @classmethod
    def upgrade_options(cls, spec: DataSpec, options: dict[str, Any]) -> dict[str, Any]:
        """Options as earlier versions named them (flat keys of a run's config.json, `--set`, `create`) mapped
        onto today's config; `create` calls it before building the config. Default: unchanged."""
        return options

    @classmethod
    def option_help(cls) -> dict[str, str]:
        """What each option does, from the config's own comments (`genlab models KIND` shows it)."""
        return field_help(cls.Config)

    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Every config option with its default, sections as dotted names (`genlab models` lists them)."""
        return defaults(cls.Config)

    # ---- declarations
    def channels_last(self, precision: str) -> bool:
        """Whether this model runs faster with NHWC (channels-last) tensors in `precision` (fp32 | bf16 | fp16):
        images yes by default (conv nets train 1.1-1.5x faster on CPU, docs/BENCHMARKS.md); a family whose
        network measures otherwise says so."""
        return self.spec.is_image

    def sampling_precision(self, precision: str) -> str:
        """What sampling runs in for the option `precision` (auto | fp32 | bf16 | fp16): genlab.precision.resolve's
        answer, except that `auto` keeps float32 for a family whose sampler measures no faster in bf16."""
        resolved = resolve(precision, self.device)[0]
        return "fp32" if precision == "auto" and not self.samples_faster_in_low_precision else resolved

    @property
    def conditioning(self) -> str:
        """What samples can be conditioned on: none | class | text."""
        return "class" if getattr(self.config, "conditional", False) else "none"

    def output_data(self, trained_on: dict[str, Any]) -> dict[str, Any]:
        """The dataset ({"name", "opts"}) whose splits the samples are compared with: the training data, unless
        the model maps it elsewhere (a translation's target domain)."""
        return trained_on

    # ---- sampling
    @classmethod
    def sample_option_defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(cls.SampleOptions)}

    def sample_options(self, **opts: Any) -> Any:
        """The family's SampleOptions from keyword options (unknown names and bad values: a one-line error)."""
        return from_dict(self.SampleOptions, opts, where=f"{self.kind} sampling")

    def sample_batch_size(self, n: int, options: Any) -> int:
        """How many of n samples to draw per call when drawing many (e.g. for evaluation)."""
        return min(n, 500)

    def generate(self, n: int, *, seed: int | None = None, labels=None, prompt: str | None = None,
                 progress: bool = False, precision: str = "auto", **opts: Any) -> Samples:
        """n samples with their labels and cost; options are the family's SampleOptions fields. precision: what
        the networks run in (auto | fp32 | bf16 | fp16, see genlab.precision); the samples are float32."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GenlabError(f"the number of samples must be an integer >= 1, got {n!r}")
        need, memory = 4 * n * self.spec.dims, _memory_bytes()
        if memory and need > memory // 2:
            raise GenlabError(f"{n:,} samples of {self.spec.dims:,} values need {need / 2**30:,.1f} GiB, more than "
                              f"half of this machine's {memory / 2**30:.0f} GiB; draw fewer at a time")
        if prompt is not None and "prompt" in self.sample_option_defaults():
            opts = {**opts, "prompt": prompt}
        options = self.sample_options(**opts)
        labels = self.check_conditioning(n, labels, getattr(options, "prompt", prompt))
        precision = self.sampling_precision(precision)
        t0 = time.perf_counter()
        with autocast(precision, self.device):
            x, cost = self._sample(n, seed=seed, labels=labels, options=options, progress=progress)
        return Samples(self.in_range(fp32(x)), labels, Cost(**cost, seconds=time.perf_counter() - t0), options,
                       precision)

    def in_range(self, x: torch.Tensor) -> torch.Tensor:
        """Images clipped to their value range ([-1, 1]): a model returns the range its data promises."""
        lo, hi = self.spec.value_range
        return x.clamp(lo, hi) if self.spec.is_image and math.isfinite(lo) and math.isfinite(hi) else x

    def sample(self, n: int, *, seed: int | None = None, labels=None, prompt: str | None = None,
               progress: bool = False, precision: str = "auto", **opts: Any) -> torch.Tensor:
        """(n, *spec.shape) samples in data space; the same seed (and precision) gives the same samples."""
        return self.generate(n, seed=seed, labels=labels, prompt=prompt, progress=progress, precision=precision,
                             **opts).x

    @abstractmethod
    def _sample(self, n: int, *, seed: int | None, labels: torch.Tensor | None, options: Any,
                progress: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """(samples, cost) for validated labels and options; cost: {"nfe": ..., "candidates": ...} per sample."""

    def check_conditioning(self, n: int, labels, prompt: str | None) -> torch.Tensor | None:
        """Validate sampling conditions; labels -> (n,) long tensor on the model's device, or None. Text models
        take a prompt, or labels (drawn with their class's caption); with a prompt, labels are only recorded."""
        if prompt is not None and self.conditioning != "text":
            from . import REGISTRY

            kinds = ", ".join(k for k, c in REGISTRY.items() if "text" in defaults(c.Config))
            raise GenlabError(f"this {self.kind} was trained without text, so it takes no prompt; prompts need a "
                              f"model trained with --set text=minilm ({kinds})")
        conditional = self.conditioning == "class" or (self.conditioning == "text" and prompt is None)
        if labels is None:
            if not conditional:
                return None
            labels = torch.arange(n) % self.spec.num_classes  # every class in turn
        elif self.conditioning == "none":
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

    def edit(self, x, strength: float = 0.5, **opts):
        self._missing("edit")

    # ---- persistence
    def describe(self) -> dict[str, Any]:
        from .. import __version__

        meta = {"genlab_version": __version__, "kind": self.kind, "config": to_dict(self.config),
                "spec": self.spec.to_dict()}
        if self.components:
            meta["components"] = self.components
        return meta

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
