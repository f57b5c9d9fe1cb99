"""Checkpoint folders, written atomically (built in a temp folder, then swapped in), and RNG state capture."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..io import load_tensors, save_tensors, umask


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


def write_checkpoint_dir(run: Path, files: dict[str, Any]) -> None:
    """Write a complete checkpoint into run/checkpoint atomically: build it in a temp folder, then swap folders.

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
        final, old = run / "checkpoint", run / "checkpoint.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_dir(run: Path) -> Path | None:
    """The newest complete checkpoint: run/checkpoint, or run/checkpoint.old if a swap was interrupted."""
    for d in (run / "checkpoint", run / "checkpoint.old"):
        if (d / "state.json").is_file():
            return d
    return None


def read_checkpoint(d: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"state": json.loads((d / "state.json").read_text())}
    for f in d.iterdir():
        if f.suffix == ".safetensors":
            out[f.stem] = load_tensors(f)
        elif f.suffix == ".pt":
            out[f.stem] = torch.load(f, map_location="cpu", weights_only=True)
    return out
