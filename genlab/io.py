"""Where genlab writes files: atomic writes (temp file beside the target, then rename) of bytes, JSON,
safetensors, PNG, NPZ and CSV, and the readers that turn a damaged file into a one-line error."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import GenlabError


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_in(directory: Path, suffix: str) -> Path:
    """A temp file beside the target; mkstemp makes it 0600, so give it the permissions a plain open() would."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.fchmod(fd, 0o666 & ~umask())
    os.close(fd)
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_in(path.parent, path.suffix)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: dict[str, Any], merge: bool = False) -> None:
    """Write JSON atomically; with merge=True, keys already in the file that `obj` lacks are kept."""
    path = Path(path)
    if merge and path.is_file():
        try:
            obj = {**json.loads(path.read_text()), **obj}
        except json.JSONDecodeError:
            pass
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise GenlabError(f"cannot read {path} ({e}); the run may be corrupt") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line (metrics.jsonl); a missing file is empty. A last line cut short (the writer was
    killed mid-line) is dropped; a damaged line before it is a one-line error."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if i == len(lines) - 1:
                break
            raise GenlabError(f"{path} line {i + 1} is damaged ({e}); remove that line") from None
        out.append(record)
    return out


def save_tensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' save_file, with the permissions a plain open() would give (it makes files 0600)."""
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~umask())


def atomic_save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    path = Path(path)
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


def file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Arrays as .npz (object arrays, e.g. decoded categories, as strings), atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{k: v.astype(str) if v.dtype == object else v for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Named columns of equal length as CSV, atomically."""
    n = len(next(iter(columns.values()))) if columns else 0
    lines = [",".join(columns)] + [",".join(str(columns[c][i]) for c in columns) for i in range(n)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
