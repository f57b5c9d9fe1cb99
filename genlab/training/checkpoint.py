"""Checkpoint folders, written atomically (built in a temp folder, then swapped in), and RNG state capture."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import GenlabError
from ..io import load_tensors, save_tensors, umask
from ..runs import CHECKPOINTS


def rng_state() -> dict[str, Any]:
    """Torch's global RNG (all genlab's training noise comes from it; data order has its own seeded stream)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


CURRENT, PREVIOUS = CHECKPOINTS


def write_checkpoint_dir(run: Path, files: dict[str, Any]) -> None:
    """Write a complete checkpoint into run/checkpoint atomically: build it in a temp folder, then swap folders.
    The checkpoint it replaces stays as run/checkpoint.old, the fallback should the newer one be damaged.

    `files` maps file name -> tensors dict (.safetensors), JSON-able dict (.json) or torch-saveable state (.pt,
    plain tensors and containers only, read back with weights_only=True)."""
    tmp = Path(tempfile.mkdtemp(dir=run, prefix=".checkpoint-"))
    tmp.chmod(0o777 & ~umask())
    try:
        for name, obj in files.items():
            if name.endswith(".safetensors"):
                save_tensors(obj, tmp / name)
            elif name.endswith(".json"):
                (tmp / name).write_text(json.dumps(obj, indent=2))
            else:
                torch.save(obj, tmp / name)
        final, old = run / CURRENT, run / PREVIOUS
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_dirs(run: Path) -> list[Path]:
    """The complete checkpoints, newest first: run/checkpoint, then run/checkpoint.old."""
    return [d for d in (run / CURRENT, run / PREVIOUS) if (d / "state.json").is_file()]


def checkpoint_dir(run: Path) -> Path | None:
    found = checkpoint_dirs(run)
    return found[0] if found else None


def read_checkpoint(d: Path) -> dict[str, Any]:
    """Every file of a checkpoint; a damaged or missing file is a one-line GenlabError naming it."""
    try:
        state = json.loads((d / "state.json").read_text())
        if not all(isinstance(state.get(k), (int, float)) for k in ("step", "draws", "elapsed")):
            raise ValueError("step, draws and elapsed must be numbers")
    except (OSError, ValueError, AttributeError) as e:
        raise GenlabError(f"{d / 'state.json'} is damaged ({e})") from None
    out: dict[str, Any] = {"state": state}
    for f in d.iterdir():
        if f.suffix == ".safetensors":
            out[f.stem] = load_tensors(f)
        elif f.suffix == ".pt":
            try:
                out[f.stem] = torch.load(f, map_location="cpu", weights_only=True)
            except Exception as e:  # truncated or foreign: torch raises several types
                raise GenlabError(f"{f} is damaged ({type(e).__name__})") from None
    missing = {"model", "optim", "rng"} - set(out)
    if missing:
        raise GenlabError(f"{d} is incomplete (no {', '.join(sorted(missing))})")
    return out


def read_latest_checkpoint(run: Path, warn) -> tuple[dict[str, Any], Path]:
    """The newest checkpoint that reads whole; `warn(line)` says when a damaged one is passed over."""
    found = checkpoint_dirs(run)
    if not found:
        raise GenlabError(f"{run} has no checkpoint to resume from")
    errors = []
    for d in found:
        try:
            ck = read_checkpoint(d)
        except GenlabError as e:
            errors.append(str(e))
            continue
        if errors:
            warn(f"{errors[0]}; resuming from the previous checkpoint, {d} (step {ck['state']['step']})")
        return ck, d
    raise GenlabError(f"cannot resume {run}: {'; '.join(errors)}")
