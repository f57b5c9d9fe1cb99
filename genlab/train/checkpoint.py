"""Atomic writes (temp file, then rename) for JSON, safetensors and checkpoint folders, and RNG state capture."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import GenlabError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_in(directory: Path, suffix: str) -> Path:
    """A temp file beside the target; mkstemp makes it 0600, so give it the permissions a plain open() would."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_in(path.parent, path.suffix)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: dict[str, Any], merge: bool = False) -> None:
    """Write JSON atomically; with merge=True, keys already in the file that `obj` lacks are kept."""
    if merge and path.is_file():
        try:
            obj = {**json.loads(path.read_text()), **obj}
        except json.JSONDecodeError:
            pass
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def save_tensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with the permissions a plain open() would give (it makes files 0600)."""
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


def atomic_save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_in(path.parent, ".safetensors")
    try:
        save_tensors(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise GenlabError(f"cannot read weights {path} ({type(e).__name__}); the file is damaged") from None


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
    tmp.chmod(0o777 & ~_umask())
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
