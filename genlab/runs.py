"""RunDir: the one owner of a run directory's layout. Everything that reads or writes a run goes through it.

    RUN/config.json         kind, model config, data spec, training options, data source, seed, genlab version
    RUN/model.safetensors   weights (ema.safetensors: their moving average, where EMA is on)
    RUN/checkpoint/         optimizer, RNG and step state for an exact --resume (training/checkpoint.py)
    RUN/metrics.jsonl       one JSON object per logged step
    RUN/samples/            sample grids over training, and what `genlab sample` writes by default
    RUN/evals/KEY.json      one file per evaluation, KEY naming the protocol version and the options, so
                            evaluations with other samplers, sample counts or seeds live side by side
    RUN/eval.json           the latest evaluation (what the report shows)
    RUN/.lock               held by the process training the run (a second writer is refused)

A saved model (`model.save(dir)`) is a directory with config.json and model.safetensors only; it opens as a
RunDir too, without history or data.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import GenlabError
from .io import atomic_write_json, file_sha256, read_json, read_jsonl

CHECKPOINTS = ("checkpoint", "checkpoint.old")  # the newest complete checkpoint, and the one before it
CONFIG, WEIGHTS, EMA_WEIGHTS, METRICS, EVALS, LATEST_EVAL, LOCK = (
    "config.json", "model.safetensors", "ema.safetensors", "metrics.jsonl", "evals", "eval.json", ".lock")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir('{self.path}')"

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run or saved model; a one-line error when `path` is neither."""
        run = cls(path)
        if not run.has_model:
            raise GenlabError(f"{run.path} is not a genlab run or saved model (no {CONFIG} + {WEIGHTS})")
        return run

    # ---- what is there
    @property
    def has_model(self) -> bool:
        return (self.path / CONFIG).is_file() and (self.path / WEIGHTS).is_file()

    @property
    def is_run(self) -> bool:
        """A training run (not only a saved model): config.json and a history or a checkpoint."""
        return (self.path / CONFIG).is_file() and ((self.path / METRICS).exists() or any(
            (self.path / d / "state.json").is_file() for d in CHECKPOINTS))

    # ---- the writer's lock, and what a killed writer leaves behind
    @contextlib.contextmanager
    def lock(self):
        """Hold RUN/.lock while training writes the run: a second writer is refused in one line. The kernel
        releases the lock of a process that dies, so a stale lock file from a killed run blocks nothing."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: no lock
            yield
            return
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "unknown"
            f.close()
            raise GenlabError(f"{self.path} is being written by another genlab process (pid {pid}); wait for it "
                              "to finish or choose another out") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def clean_leftovers(self) -> list[Path]:
        """Remove the half-written files a kill during a write leaves (.checkpoint-* folders, .tmp-* files) in
        the folders training writes; call it holding the lock."""
        found = [*self.path.glob(".checkpoint-*"), *self.path.glob(".tmp-*"), *self.path.glob("samples/.tmp-*"),
                 *self.path.glob(f"{EVALS}/.tmp-*")]
        for p in found:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return found

    def is_empty(self) -> bool:
        """No files but a lock and leftovers of an interrupted write."""
        if not self.path.exists():
            return True
        return all(p.name == LOCK or p.name.startswith((".tmp-", ".checkpoint-")) for p in self.path.iterdir())

    # ---- config.json
    @cached_property
    def meta(self) -> dict[str, Any]:
        if not (self.path / CONFIG).is_file():
            raise GenlabError(f"{self.path} is not a genlab run (no {CONFIG})")
        return read_json(self.path / CONFIG)

    def write_meta(self, meta: dict[str, Any], merge: bool = False) -> None:
        atomic_write_json(self.path / CONFIG, meta, merge=merge)
        self.__dict__.pop("meta", None)

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def model_config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def train_config(self) -> dict[str, Any]:
        return self.meta.get("train", {})

    @property
    def spec(self):
        from .data.spec import DataSpec

        return DataSpec.from_dict(self.meta["spec"])

    @property
    def data(self) -> dict[str, Any]:
        """The training data's source: {"name": ..., "opts": {...}} (a saved model: its spec's name)."""
        d = self.meta.get("data") or {"name": self.meta["spec"]["name"]}
        return {"name": d["name"], "opts": dict(d.get("opts") or {})}

    def dataset(self, split: str = "train", data: dict[str, Any] | None = None):
        """A split of the run's data (or of `data`, a {"name", "opts"} source)."""
        from .data import load_dataset

        d = data or self.data
        return load_dataset(d["name"], split, **d.get("opts", {}))

    # ---- weights
    def model(self, weights: str = "auto", device: str = "cpu"):
        from .models import load_model

        return load_model(self.path, weights=weights, device=device)

    def weights_sha256(self) -> str:
        return file_sha256(self.path / WEIGHTS)

    # ---- history
    @property
    def history(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / METRICS)

    # ---- evaluations
    def save_eval(self, result: dict[str, Any]) -> Path:
        """Write an evaluation to evals/KEY.json (KEY from its protocol and options) and as eval.json."""
        path = self.path / EVALS / f"{eval_key(result)}.json"
        atomic_write_json(path, result)
        atomic_write_json(self.path / LATEST_EVAL, result)
        return path

    def evals(self) -> list[dict[str, Any]]:
        """Every evaluation kept in evals/, oldest key first."""
        d = self.path / EVALS
        return [read_json(f) for f in sorted(d.glob("*.json")) if not f.name.startswith(".")] if d.is_dir() else []

    def sample_grids(self) -> list[Path]:
        """The sample grids written over training (samples/step_*.png), oldest first."""
        d = self.path / "samples"
        return sorted(d.glob("step_*.png")) if d.is_dir() else []

    def latest_eval(self) -> dict[str, Any]:
        f = self.path / LATEST_EVAL
        return read_json(f) if f.is_file() else {}


def eval_key(result: dict[str, Any]) -> str:
    """'v1-n=10000-seed=0-sampler=ddim-steps=20': the protocol version and every option that changes the numbers."""
    opts = result.get("options", {})
    parts = [f"v{result['protocol']}"] + [f"{k}={v}" for k, v in opts.items() if v is not None]
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "-".join(parts))
