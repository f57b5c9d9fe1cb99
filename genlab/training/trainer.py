"""The one Trainer for every family.

Each iteration runs the model's `phases` in order — (optimizer name, repeats), each repeat on a fresh batch —
so a VAE does one step and a WGAN five critic steps then one generator step, through the same loop. Around it:
AdamW with linear warm-up and cosine decay (weight decay on matrices only, as nanoGPT), gradient clipping, EMA
(readable by the model as `model.ema_state`), a data-dependent start (`model.on_fit_start`), budgets in
steps/epochs/minutes, atomic checkpoints with exact resume, a NaN/inf guard, metrics.jsonl, sample grids,
optional TensorBoard, and PyTorch DDP when launched by torchrun (gloo on CPU, NCCL on GPU). In-memory data is
indexed directly; a streamed dataset (`dataset.streams`) comes through a DataLoader with workers, in the same
seeded order (training/batches.py). With no run directory (`train(..., out=None)`) the same loop trains in
memory and writes nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import check, from_dict, to_dict
from ..data.dataset import GenDataset
from ..data.stream import FolderStream
from ..errors import GenlabError, Interrupted, TrainingDiverged
from ..io import atomic_write_bytes, read_jsonl
from ..models.base import GenerativeModel
from ..precision import PRECISIONS, autocast, resolve
from .batches import BatchOrder, StreamedBatches
from .checkpoint import (
    checkpoint_dir,
    read_latest_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint_dir,
)


@dataclass
class TrainConfig:
    steps: int | None = None  # budget: iterations ...
    epochs: float | None = None  # ... or passes over the train split ...
    minutes: float | None = None  # ... or wall-clock minutes (compare families at equal compute)
    batch_size: int = 128  # global batch, split across DDP processes
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    betas: tuple[float, ...] = (0.9, 0.999)  # Adam's moment decays
    warmup_steps: int = 100  # linear warm-up of the learning rate
    schedule: str = "cosine"  # cosine (decay to lr * min_lr_ratio) | constant
    min_lr_ratio: float = 0.1  # the cosine schedule ends at lr times this
    grad_clip: float = 1.0  # max global grad norm per optimizer; 0 disables
    ema_decay: float = 0.0  # EMA of the weights (0 disables); saved as ema.safetensors
    log_every: int = 50  # steps between lines of metrics.jsonl
    sample_every: int = 0  # 0: about 8 grids over a step/epoch budget, every 500 steps under a minutes budget
    checkpoint_every: int = 500  # steps between checkpoints (also at step 0, at the end and on Ctrl-C)
    diag_every: int = 0  # 0: with every sample grid
    seed: int = 0  # initial weights, data order and training noise
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto (bf16 where the CPU or GPU computes it natively, else fp32) | fp32 | bf16 | fp16
    channels_last: bool = True  # image models: NHWC memory layout where the model runs faster so (most conv nets)
    workers: int = 2  # DataLoader processes decoding a streamed dataset (0: in the training process)
    tensorboard: bool = False  # also log to RUN/tb for TensorBoard
    progress: bool = True  # show a progress bar

    def __post_init__(self):
        budgets = [b for b in (self.steps, self.epochs, self.minutes) if b is not None]
        check(len(budgets) == 1, "give exactly one budget: --steps, --epochs or --minutes")
        check(all(b > 0 for b in budgets), f"the budget must be > 0, got {budgets[0]}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
              f"betas must be two numbers in [0, 1), got {self.betas}")
        check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        check(self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got '{self.schedule}'")
        check(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("log_every", "checkpoint_every"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check(self.sample_every >= 0 and self.diag_every >= 0, "sample_every and diag_every must be >= 0")
        check(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
              f"device must be auto, cpu, cuda or mps, got '{self.device}'")
        check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, "
              f"got '{self.precision}'")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenlabError("--device cuda but no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise GenlabError("--device mps but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def is_run(path: Path) -> bool:
    from ..runs import RunDir

    return RunDir(path).is_run


@dataclass
class Run:
    """A finished (or stopped) training run: its directory (None when trained in memory), its model, and what it
    logged. `records` holds the records this process logged; `history` reads metrics.jsonl where there is a
    directory (so it also holds what was logged before a --resume) and `records` otherwise."""

    path: Path | None
    model: GenerativeModel
    step: int
    seconds: float
    records: list[dict[str, Any]] | None = None
    precision: str = "fp32"  # what the networks ran in (train.precision resolved)

    @property
    def history(self) -> list[dict[str, Any]]:
        if self.path is None:
            return list(self.records or [])
        from ..runs import RunDir

        return RunDir(self.path).history


def decay_split(model: nn.Module, params: list[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed) as nanoGPT's configure_optimizers: weight decay on tensors of dim >= 2 (linear and
    conv weights), none on norms, biases (dim < 2) and embedding tables (nn.Embedding / nn.EmbeddingBag weights,
    also under a parametrization such as spectral norm). Order within each list follows `params`."""
    tables = {id(p) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for p in m.parameters()}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in tables]
    chosen = {id(p) for p in decay}
    return decay, [p for p in params if id(p) not in chosen]


def make_optimizer(model: nn.Module, params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `params`. weight_decay == 0: one group, as genlab always had. weight_decay > 0: two groups,
    [decayed (weight_decay), not decayed (0)], split by `decay_split`; both exist even when one is empty, so a
    checkpoint's structure depends only on the options."""
    # on a GPU the fused kernel: 3x faster than the per-tensor-group default (§18); CPU keeps the default
    fused = {"fused": True} if params and all(p.is_cuda for p in params) else {}
    if cfg.weight_decay == 0:
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)
    decay, keep = decay_split(model, params)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, **fused)


def _regroup(saved: dict[str, Any], opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> dict[str, Any]:
    """An optimizer state saved as one group (genlab before the decay split, which decayed every tensor) laid out
    as `opt`'s two groups, so such a run resumes; the Adam moments of each tensor are kept."""
    if len(saved["param_groups"]) != 1 or len(opt.param_groups) != 2:
        return saved
    old = saved["param_groups"][0]
    if len(old["params"]) != len(params):
        return saved
    index = {id(p): i for i, p in enumerate(params)}  # old index of each tensor: its place in `params`
    order = [index[id(p)] for g in opt.param_groups for p in g["params"]]
    new = {o: n for n, o in enumerate(order)}
    groups, start = [], 0
    for g in opt.param_groups:
        n = len(g["params"])
        groups.append({**old, "weight_decay": g["weight_decay"], "params": list(range(start, start + n))})
        start += n
    warnings.warn("this checkpoint decayed every tensor; from here on norms, biases and embeddings get no weight "
                  "decay (the Adam moments are kept)", stacklevel=3)
    return {"state": {new[int(k)]: v for k, v in saved["state"].items()}, "param_groups": groups}


class EMA:
    """Exponential moving average of every floating-point tensor of the state dict (buffers copied).
    With `step`, the decay warms up as min(decay, (1 + step) / (10 + step)) (as TensorFlow's and diffusers'
    EMA), so a short run's average is not dominated by the random initial weights (0.999^300 = 74% of them)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        live = model.state_dict()
        floats = [k for k, v in live.items() if v.dtype.is_floating_point]
        if floats:  # one foreach call: on a GPU a few kernels instead of one per tensor (5x faster, §18)
            torch._foreach_lerp_([self.state[k] for k in floats], [live[k] for k in floats], 1 - decay)
        for k, v in live.items():
            if not v.dtype.is_floating_point:
                self.state[k].copy_(v)


class Trainer:
    """Trains `model` on `dataset` under `cfg`, writing into the run directory `run` (None: in memory, nothing
    written; `history` keeps the logged records either way). A new run first calls `model.on_fit_start` on a fixed
    seeded batch; `resume` instead continues from the run's last checkpoint."""

    def __init__(self, model: GenerativeModel, dataset: GenDataset | FolderStream, cfg: TrainConfig,
                 run: Path | None, data_info: dict[str, Any], resume: bool):
        self.cfg, self.run, self.dataset, self.data_info = cfg, run, dataset, data_info
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = self.world > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.main = self.rank == 0
        device = resolve_device(cfg.device)
        if self.distributed and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        self.device = device
        # the networks run under autocast; weights, optimizer state and EMA stay float32 (precision.py)
        self.precision, self.precision_why = resolve(cfg.precision, device)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        if cfg.batch_size % self.world:
            raise GenlabError(f"batch_size {cfg.batch_size} must be divisible by the {self.world} processes")
        self.n = len(dataset)
        if cfg.batch_size > self.n:
            raise GenlabError(f"batch_size {cfg.batch_size} is larger than the dataset ({self.n} examples); "
                              f"pass --batch-size {self.n} or less")
        self.order = BatchOrder(self.n, cfg.batch_size, cfg.seed, self.rank, self.world)
        self.steps_per_epoch = self.order.steps_per_epoch
        self.streams = bool(getattr(dataset, "streams", False))
        self._stream: StreamedBatches | None = None
        draws_per_step = sum(r for _, r in model.phases)
        if cfg.steps is not None:
            self.total_steps: int | None = int(cfg.steps)
        elif cfg.epochs is not None:
            self.total_steps = max(1, math.ceil(cfg.epochs * self.steps_per_epoch / draws_per_step))
        else:
            self.total_steps = None
        self.model = model.to(device)
        self.channels_last = cfg.channels_last and model.channels_last(self.precision)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # a fixed seeded order of the train split, apart from the training data order: its head is the batch
        # on_fit_start sees and the (up to 1000) examples diagnostics are computed on
        fixed = torch.randperm(self.n, generator=torch.Generator().manual_seed(cfg.seed))
        self.diag_idx = fixed[: min(1000, self.n)]
        self.start_idx = fixed[: cfg.batch_size]
        self.model.ema_state = None  # set below, once this run's EMA exists (not left over from an earlier run)
        if not resume:
            self._fit_start()
        self.net: nn.Module = model
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.net = DDP(model, device_ids=ids, find_unused_parameters=len(model.phases) > 1)
        self.phase_params = model.param_groups()
        self.optimizers = {name: make_optimizer(model, params, cfg) for name, params in self.phase_params.items()}
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step, self.draws, self.elapsed = 0, 0, 0.0
        self.history: list[dict[str, Any]] = []
        self.tb = None
        if resume:
            self._load_checkpoint()
        else:
            torch.manual_seed(cfg.seed * 1000 + self.rank)  # per-process noise streams, fixed by the seed
        # the model reads its EMA (e.g. a consistency model's target network); a plain attribute, not a buffer
        self.model.ema_state = self.ema.state if self.ema is not None else None

    def announce(self) -> None:
        """One line on stderr, with the progress bar: the precision the networks train in and why."""
        if self.main and self.cfg.progress:
            import sys

            print(f"genlab: training in {self.precision} ({self.precision_why})", file=sys.stderr)

    def _fit_start(self) -> None:
        """model.on_fit_start on the fixed batch `start_idx`: in training mode, without gradients, on a forked RNG
        seeded by cfg.seed, so neither the data order nor the training noise streams move. Under DDP every
        process then takes rank 0's parameters and buffers, before DDP wraps the model and the optimizers and
        the EMA are built on them."""
        x, y = self.dataset.take(self.start_idx)
        x, y = x.to(self.device), y.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []), torch.no_grad():
            torch.default_generator.manual_seed(self.cfg.seed)
            if cuda:
                torch.cuda.manual_seed(self.cfg.seed)  # this process's device, forked above
            self.model.train()
            self.model.on_fit_start(x, y)
        if self.distributed:
            for t in itertools.chain(self.model.parameters(), self.model.buffers()):
                dist.broadcast(t.data, 0)

    # ---- data order: a seeded permutation per epoch, so any step's batch is known without replaying
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of draw `self.draws` (this process's shard): x (B / world, *shape), y (B / world,)."""
        nb = self.device.type == "cuda"
        if self.streams:
            if self._stream is None:  # started at the current draw, so a resumed run goes on where it stopped
                self._stream = StreamedBatches(self.dataset, self.order, self.draws, self.cfg.workers, nb,
                                               self.cfg.seed)
            x, y = self._stream.next()
        else:
            idx = self.order.indices(self.draws)
            x, y = self.dataset.x[idx], self.dataset.y[idx]
        self.draws += 1
        x = x.to(self.device, non_blocking=nb)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=nb)

    def close(self) -> None:
        """Stop the DataLoader workers of a streamed dataset."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def lr_factor(self, progress: float) -> float:
        c = self.cfg
        warm = min(1.0, (self.step + 1) / c.warmup_steps) if c.warmup_steps else 1.0
        if c.schedule == "constant":
            return warm
        return warm * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))

    def progress(self) -> float:
        if self.total_steps is not None:
            return self.step / self.total_steps
        return self.elapsed / (self.cfg.minutes * 60)

    def done(self) -> bool:
        finished = self.progress() >= 1.0
        if self.distributed and self.total_steps is None:  # wall-clock budgets: rank 0 decides for all
            flag = torch.tensor([float(finished)], device=self.device)
            dist.broadcast(flag, 0)
            finished = bool(flag.item())
        return finished

    # ---- one iteration
    def train_step(self) -> dict[str, torch.Tensor | float]:
        """One iteration; the logged terms stay tensors (no device sync) until a logging step."""
        factor = self.lr_factor(self.progress())
        logs: dict[str, torch.Tensor | float] = {}
        scale = self.model.lr_scale()
        for phase, repeats in self.model.phases:
            opt = self.optimizers[phase]
            for group in opt.param_groups:
                group["lr"] = self.cfg.lr * factor * scale.get(phase, 1.0)
            for _ in range(repeats):
                x, y = self._batch()
                with autocast(self.precision, self.device):
                    loss, parts = self.net(x, y, phase=phase, step=self.step)
                self._guard(loss, phase)
                opt.zero_grad(set_to_none=True)
                if self.scaler is None:
                    loss.backward()
                else:  # fp16: the loss scaled up so small gradients survive, unscaled before clipping
                    self.scaler.scale(loss).backward()
                    self.scaler.unscale_(opt)
                if self.cfg.grad_clip > 0:
                    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                    torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
                if self.scaler is None:
                    opt.step()
                else:
                    self.scaler.step(opt)  # skipped where the scaled gradients overflowed
                    self.scaler.update()
                self.model.after_step(phase)
            prefix = "" if len(self.model.phases) == 1 else f"{phase}/"
            logs.update({prefix + k: v.detach() for k, v in parts.items()})
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        logs["lr"] = self.cfg.lr * factor
        return logs

    def _guard(self, loss: torch.Tensor, phase: str) -> None:
        ok = torch.isfinite(loss.detach()).to(torch.float32)
        if self.distributed:
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item() < 1:
            if self.run is None:
                raise TrainingDiverged(f"training diverged: the {phase} loss became {loss.item()} at step "
                                       f"{self.step}; trained in memory, nothing kept; lower lr or set grad_clip")
            ck = checkpoint_dir(self.run)
            what = f"training diverged: the {phase} loss became {loss.item()} at step {self.step}"
            if ck is None:
                raise TrainingDiverged(f"{what}; train again with a lower lr (or set grad_clip)")
            kept = f"the last good checkpoint (step {json.loads((ck / 'state.json').read_text())['step']}) is in {ck}"
            raise TrainingDiverged(f"{what}; {kept}: resume from it with a lower learning rate, "
                                   f"train(..., out='{self.run}', resume=True, lr=...)",
                                   cli=f"{what}; {kept}: resume from it with a lower learning rate, "
                                       f"genlab train --resume --out {self.run} --lr LR")

    # ---- checkpoints
    def save_checkpoint(self) -> None:
        if self.main and self.run is not None:  # in memory: nothing to write, but the processes still meet
            files: dict[str, Any] = {
                "state.json": {"step": self.step, "draws": self.draws, "elapsed": self.elapsed},
                "model.safetensors": self.model.state_dict(),
                "optim.pt": {**{k: o.state_dict() for k, o in self.optimizers.items()},
                             **({SCALER: self.scaler.state_dict()} if self.scaler is not None else {})},
                "rng.pt": rng_state(),
            }
            if self.ema is not None:
                files["ema.safetensors"] = self.ema.state
            write_checkpoint_dir(self.run, files)
            self.model.save(self.run, self.ema.state if self.ema else None)
        if self.distributed:
            dist.barrier()

    def _load_checkpoint(self) -> None:
        import sys

        ck, _ = read_latest_checkpoint(self.run, warn=lambda line: print(f"genlab: {line}", file=sys.stderr))
        self.model.load_state_dict(ck["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(_regroup(ck["optim"][name], opt, self.phase_params[name]))
        if self.scaler is not None and SCALER in ck["optim"]:
            self.scaler.load_state_dict(ck["optim"][SCALER])
        if self.ema is not None and "ema" in ck:
            self.ema.state = {k: v.to(self.device) for k, v in ck["ema"].items()}
        st = ck["state"]
        self.step, self.draws, self.elapsed = st["step"], st["draws"], st["elapsed"]
        set_rng_state(ck["rng"])
        if self.distributed:  # the checkpoint holds rank 0's stream; give each process its own again
            torch.manual_seed(self.cfg.seed * 1000 + self.rank + 7919 * self.step)
        if self.main:  # the run's weights are the checkpoint's again (a damaged model.safetensors is rewritten)
            self.model.save(self.run, self.ema.state if self.ema else None)
        if self.main:  # forget what was logged after the checkpoint: those steps are done again
            f = self.run / "metrics.jsonl"
            if f.is_file():
                keep = [json.dumps(r) for r in read_jsonl(f) if r.get("step", 0) <= self.step]
                atomic_write_bytes(f, ("\n".join(keep) + "\n" if keep else "").encode())

    # ---- interruption: a checkpoint at the current step, then one line
    def _stopping(self, signum: int) -> bool:
        if not self.distributed:
            return signum != 0
        flag = torch.tensor([float(signum)], device=self.device)  # any process signalled: all stop together
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag.item() > 0

    def _interrupted(self, signum: int):
        name = signal.Signals(signum).name if signum else "another process"
        if self.run is None:
            raise Interrupted(f"stopped by {name} at step {self.step}; trained in memory, nothing is kept", signum or 2)
        where = f"stopped by {name} at step {self.step}; the checkpoint is in {self.run / 'checkpoint'}"
        raise Interrupted(f"{where}: continue with train(..., out='{self.run}', resume=True)", signum or 2,
                          cli=f"{where}: continue with genlab train --resume --out {self.run}")

    # ---- samples and diagnostics, on the main process, never touching the training RNG streams
    @contextlib.contextmanager
    def _side_work(self, use_ema: bool):
        devices = [self.device] if self.device.type == "cuda" else []
        backup = None
        if use_ema and self.ema is not None:
            backup = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema.state)
        was = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                yield
        finally:
            self.model.train(was)
            if backup is not None:
                self.model.load_state_dict(backup)

    def write_samples(self) -> None:
        from ..report.images import save_samples

        with self._side_work(use_ema=True):
            if self.model.spec.kind == "text":
                self._write_text_samples()
                return
            n = 64 if self.model.spec.is_image else 1000
            x = self.model.sample(n, seed=self.cfg.seed, precision=self.cfg.precision)  # the model's sampling choice
            ref = self.dataset.take(torch.arange(min(2000, self.n)))[0] if self.model.spec.dims == 2 else None
            save_samples(x.cpu(), self.model.spec, self.run / "samples" / f"step_{self.step:07d}.png", ref,
                         f"step {self.step}")

    def _write_text_samples(self) -> None:
        """Four continuations of 120 characters, as plain text (models that cannot write are skipped)."""
        from ..errors import GenlabError
        from ..io import atomic_write_bytes

        try:
            x = self.model.sample(4, seed=self.cfg.seed, precision=self.cfg.precision, length=120)
        except GenlabError:
            return
        text = "\n\n----\n\n".join(self.model.spec.to_original(x))
        atomic_write_bytes(self.run / "samples" / f"step_{self.step:07d}.txt", text.encode())

    def diagnostics(self) -> dict[str, Any]:
        with self._side_work(use_ema=False):
            x, y = self.dataset.take(self.diag_idx)
            return self.model.diagnostics(x.to(self.device), y.to(self.device))

    def log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.run is None:
            return
        with open(self.run / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.cfg.tensorboard:
            if self.tb is None:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise GenlabError("tensorboard=true needs tensorboard: pip install 'genlab[tensorboard]'") from None
                self.tb = SummaryWriter(str(self.run / "tb"))
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    # ---- the loop
    def fit(self) -> None:
        cfg = self.cfg
        every_sample = cfg.sample_every or (max(1, self.total_steps // 8) if self.total_steps else 500)
        every_diag = cfg.diag_every or every_sample
        bar = _Progress(self.total_steps, cfg.minutes, enabled=cfg.progress and self.main, start=self.step,
                        elapsed=self.elapsed)
        sums: dict[str, torch.Tensor | float] = {}
        count, window_start = 0, time.perf_counter()
        last = time.perf_counter()
        self.model.train()
        if self.step == 0:  # resumable from the start: a kill before the first periodic checkpoint loses nothing
            self.save_checkpoint()
        final = self.done()  # once per step: under DDP with a minutes budget it is a broadcast
        with bar, _StopSignals() as stop, contextlib.closing(self):  # closing: the DataLoader workers stop
            while not final:
                if self._stopping(stop.signum):
                    self.save_checkpoint()
                    self._interrupted(stop.signum)
                logs = self.train_step()
                self.step += 1
                now = time.perf_counter()
                self.elapsed += now - last
                last = now
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                final = self.done()
                diag = self.step % every_diag == 0 or final
                if self.main and (self.step % cfg.log_every == 0 or diag):
                    rate = count * cfg.batch_size / max(now - window_start, 1e-9)
                    record = {"step": self.step, "epoch": round(self.draws / self.steps_per_epoch, 4),
                              "time": round(self.elapsed, 3), "images_per_s": round(rate, 1),
                              **{k: float(v) / count for k, v in sums.items()}}
                    if diag:
                        record.update(self.diagnostics())
                    self.log(record)
                    loss = next((v for k, v in record.items() if k == "loss" or k.endswith("/loss")), math.nan)
                    bar.update(self.step, self.elapsed, loss, rate)
                    sums, count, window_start = {}, 0, time.perf_counter()
                if self.main and self.run is not None and (self.step % every_sample == 0 or final):
                    self.write_samples()
                if self.step % cfg.checkpoint_every == 0 or final:
                    self.save_checkpoint()
                last = time.perf_counter()  # side work (logging, samples, checkpoints) is not training time
        if self.tb is not None:
            self.tb.close()
        if self.channels_last:  # hand the model back in the standard layout, as it was given
            self.model.to(memory_format=torch.contiguous_format)


SCALER = "grad_scaler"  # fp16's GradScaler state, beside the optimizers' in checkpoint/optim.pt


class _StopSignals:
    """While training: the first SIGINT (Ctrl-C) or SIGTERM is noted (`signum`) so the loop can save a checkpoint
    at the end of its step and stop; the handlers are then put back, so a second signal stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0
        self.saved: dict[int, Any] = {}

    def _note(self, signum, frame) -> None:
        self.signum = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        self.saved = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in self.SIGNALS:
                self.saved[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc):
        self._restore()


# A rich Progress shown by an outer job (`genlab bench`): training adds its bar to it instead of opening its own
SHARED_PROGRESS: contextvars.ContextVar = contextvars.ContextVar("genlab_shared_progress", default=None)


class _Progress:
    """A rich progress bar with loss and images/s (steps, or seconds under a minutes budget)."""

    def __init__(self, total_steps, minutes, enabled: bool, start: int, elapsed: float):
        self.enabled, self.by_time = enabled, total_steps is None
        self.total = total_steps if total_steps is not None else minutes * 60
        self.start = elapsed if self.by_time else start
        self.p, self.owned = None, False

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.p = SHARED_PROGRESS.get()
            if self.p is None:
                cols = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%")]
                if not self.by_time:
                    cols.append(MofNCompleteColumn())
                cols += [TextColumn("{task.fields[extra]}"), TimeRemainingColumn()]
                self.p, self.owned = Progress(*cols, transient=False), True
                self.p.__enter__()
            self.task = self.p.add_task("train", total=self.total, completed=self.start, extra="")
        return self

    def update(self, step: int, elapsed: float, loss: float, rate: float) -> None:
        if self.p is not None:
            self.p.update(self.task, completed=min(elapsed if self.by_time else step, self.total),
                          extra=f"loss {loss:.4g}  {rate:.0f} img/s")

    def __exit__(self, *exc):
        if self.p is not None and self.owned:
            self.p.__exit__(*exc)
        elif self.p is not None:
            self.p.remove_task(self.task)


BUDGETS = ("steps", "epochs", "minutes")  # a run has exactly one
# training options a resumed run may change (recorded in config.json's "history"); the rest make the weights
RESUMABLE = {"steps", "epochs", "minutes", "lr", "grad_clip", "log_every", "sample_every", "checkpoint_every",
             "diag_every", "device", "precision", "tensorboard", "progress", "workers"}


def _check_resume(run, model: GenerativeModel, cfg: TrainConfig, data_info: dict[str, Any]) -> dict[str, list]:
    """What a resume changes, as {option: [old, new]}; a change to the model, the data or a training option
    outside RESUMABLE is a one-line error naming it."""
    meta = run.meta

    def refuse(what: str):
        raise GenlabError(f"resume cannot change {what}; start a new run (another out, or overwrite=True)",
                          cli=f"--resume cannot change {what}; start a new run (another --out, or --overwrite)")

    if model.kind != meta["kind"]:
        refuse(f"the model kind ({meta['kind']} -> {model.kind})")
    for k, v in to_dict(model.config).items():
        if meta["config"].get(k, v) != v:
            refuse(f"the model option {k} (the run's weights were made with {meta['config'][k]!r}, got {v!r})")
    old_data = {"name": meta["data"]["name"], "opts": meta["data"].get("opts", {})}
    if {"name": data_info["name"], "opts": data_info.get("opts", {})} != old_data:
        refuse(f"the data (the run trains on {old_data['name']}, got {data_info['name']})")
    changed = {}
    for k, v in to_dict(cfg).items():
        old = meta["train"].get(k, v)
        if old != v:
            if k not in RESUMABLE:
                refuse(f"the training option {k} ({old!r} -> {v!r}), which shapes how the weights are made")
            changed[k] = [old, v]
    return changed


def _source(dataset) -> dict[str, Any]:
    """How the run records its data: the name and options it was loaded with, else the spec's name."""
    src = getattr(dataset, "source", None)
    if src and src.get("opts"):
        return {"name": src["name"], "opts": dict(src["opts"])}
    return {"name": dataset.spec.name}


def train(model: GenerativeModel, dataset: GenDataset | FolderStream, *, steps: int | None = None,
          epochs: float | None = None, minutes: float | None = None, out: str | Path | None = None,
          resume: bool = False, overwrite: bool = False, data: dict[str, Any] | None = None,
          **options: Any) -> Run:
    """Train `model` on `dataset` with exactly one budget and return a Run.

    out: the run directory to write (config, weights, checkpoints, metrics.jsonl, sample grids; locked while
    training), or None to train in memory: nothing is written anywhere, the Run has path None and its `history`
    holds the logged records, and (under a steps or epochs budget) the weights are bitwise those a run written to
    disk with the same seed and options ends with. resume=True continues the run in `out` from its newest
    checkpoint with the run's own training options, save those given again (the budget, lr and logging may
    change, recorded in config.json's history; the model and data may not); overwrite=True replaces a run in
    `out`. options are TrainConfig fields (batch_size, lr, ema_decay, seed, device, ...); a family's preferences
    (model.train_defaults()) fill what the caller leaves out."""
    from ..runs import RunDir

    budget = {k: v for k, v in zip(BUDGETS, (steps, epochs, minutes)) if v is not None}
    prior = RunDir(out) if resume and out is not None else None
    saved = {}
    if prior is not None and prior.is_run:
        # the run's own options stand unless given again (its budget too, unless a new one is given)
        saved = {k: v for k, v in prior.train_config.items()
                 if k != "progress" and (k not in BUDGETS or (not budget and v is not None))}
    cfg = from_dict(TrainConfig, {**model.train_defaults(), **saved, **options, **budget}, where="train")
    if dataset.spec.shape != model.spec.shape:
        raise GenlabError(f"the model was built for data of shape {model.spec.shape}, "
                          f"the dataset has {dataset.spec.shape}")
    if resume and overwrite:
        raise GenlabError("resume=True and overwrite=True contradict each other: choose one",
                          cli="--resume and --overwrite contradict each other: choose one")
    if out is None:
        if resume:
            raise GenlabError("resume needs out=RUN_DIR, the run to continue; a run trained in memory keeps nothing")
        if cfg.tensorboard:
            raise GenlabError("tensorboard=true writes into the run directory; pass out=RUN_DIR")
        trainer = Trainer(model, dataset, cfg, None, data or _source(dataset), False)
        trainer.announce()
        t0 = time.perf_counter()
        trainer.fit()
        return Run(None, model, trainer.step, time.perf_counter() - t0, trainer.history, trainer.precision)
    run = RunDir(out)
    data_info = data or _source(dataset)
    if resume and not run.is_run:
        raise GenlabError(f"{run.path} is not a genlab run, nothing to resume; start one with train(..., "
                          f"out='{run.path}')", cli=f"{run.path} is not a genlab run, nothing to resume; start one "
                          f"with genlab train KIND --data NAME --out {run.path}")
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun, process 0 owns the run directory
    if main and not resume and not overwrite and not run.is_empty():
        what = "holds a run" if run.is_run else "is not empty"
        raise GenlabError(f"{run.path} {what}; pass resume=True to continue it, overwrite=True to replace it, or "
                          "choose another out", cli=f"{run.path} {what}; pass --resume to continue it, --overwrite to "
                          "replace it, or choose another --out")
    if overwrite and run.path.exists() and not run.is_run and not run.is_empty():
        raise GenlabError(f"{run.path} is not a genlab run; overwrite replaces runs only: choose another out",
                          cli=f"{run.path} is not a genlab run; --overwrite replaces runs only: choose another --out")
    created = not run.path.exists()
    trainer = None
    try:
        with run.lock() if main else contextlib.nullcontext():
            if main and overwrite:
                _clear(run.path)
            if main:
                run.clean_leftovers()
            changed = _check_resume(run, model, cfg, data_info) if resume else {}
            try:
                trainer = Trainer(model, dataset, cfg, run.path, data_info, resume)
                if trainer.main:
                    history = run.meta.get("history", []) if resume else []
                    if changed:
                        history = [*history, {"step": trainer.step, "resumed": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                              "changed": changed}]
                    meta = {**model.describe(), "train": to_dict(cfg), "data": trainer.data_info, "seed": cfg.seed,
                            "world_size": trainer.world, "precision": trainer.precision,
                            **({"history": history} if history else {})}
                    run.write_meta(meta)
                trainer.announce()
                t0 = time.perf_counter()
                trainer.fit()
            except GenlabError as e:
                # a new run that failed on its options before its first step is no run: leave the folder as found
                if main and not resume and not isinstance(e, (Interrupted, TrainingDiverged)) and (
                        trainer is None or trainer.step == 0):
                    _clear(run.path)
                raise
    finally:
        if main and created and run.is_empty():
            shutil.rmtree(run.path, ignore_errors=True)
    return Run(run.path, model, trainer.step, time.perf_counter() - t0, trainer.history, trainer.precision)


def _clear(folder: Path) -> None:
    """Remove everything in a run folder but its lock."""
    for p in folder.iterdir():
        if p.name != ".lock":
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
