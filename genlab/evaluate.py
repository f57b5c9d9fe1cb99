"""`genlab.evaluate(run)`: the metrics that apply to a run, written to eval.json.

Implemented here: `nll` — test-split likelihood bounds in bits/dim (ELBO and the importance-weighted bound for
VAEs, exact NLL for exact-likelihood families). The sample-quality metrics of the evaluation protocol
(FID, KID, precision/recall, density/coverage, IS, modes) plug into METRICS as they land.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from .errors import GenlabError
from .metrics import bits_per_dim

PROTOCOL_VERSION = "1"


@torch.no_grad()
def likelihood(model, dataset, k: int = 100, n: int | None = None, batch_size: int = 256, seed: int = 0) -> dict:
    """Mean negative log-likelihood bounds over (the first n examples of) `dataset`, nats and bits/dim."""
    if "log_prob" not in model.capabilities:
        raise GenlabError(f"{model.kind} has no log_prob, so no likelihood; `genlab models` lists those with it")
    x, y = dataset.x[:n] if n else dataset.x, dataset.y[:n] if n else dataset.y
    model.eval()
    dev = model.device
    torch.manual_seed(seed)
    out: dict[str, Any] = {"n": len(x), "dims": model.spec.dims, "type": model.log_prob_type}
    ks = [1, k] if model.log_prob_type == "bound" and k > 1 else [1]
    for kk in ks:
        total = 0.0
        for i in range(0, len(x), batch_size):
            lp = model.log_prob(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev), k=kk)
            total += float(lp.double().sum())
        nll = -total / len(x)
        name = "elbo" if kk == 1 and model.log_prob_type == "bound" else f"iwae_k{kk}" if kk > 1 else "nll"
        out[f"{name}_nats"] = nll
        out[f"{name}_bpd"] = bits_per_dim(nll, model.spec.dims)
    return out


METRICS = {"nll": "test-split negative log-likelihood (bound) in bits/dim"}


def evaluate(run: str | Path, metrics: list[str] | tuple[str, ...] | None = None, n: int | None = None,
             k: int = 100, device: str = "auto", write: bool = True) -> dict[str, Any]:
    """Evaluate a run directory; returns (and writes RUN/eval.json) {"metrics": {...}, "seconds": ...}."""
    from .data import load_dataset
    from .models import load_model
    from .models.base import read_json
    from .train.trainer import resolve_device

    run = Path(run)
    if not (run / "config.json").is_file():
        raise GenlabError(f"{run} is not a genlab run (no config.json)")
    meta = read_json(run / "config.json")
    model = load_model(run, device=str(resolve_device(device)))
    names = list(metrics) if metrics else [m for m in METRICS if m != "nll" or "log_prob" in model.capabilities]
    for m in names:
        if m not in METRICS:
            raise GenlabError(f"unknown metric '{m}': available here: {', '.join(METRICS)}")
    data = meta.get("data", {"name": model.spec.name})
    test = load_dataset(data["name"], "test", **data.get("opts", {}))
    t0 = time.perf_counter()
    result: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "run": str(run), "dataset": data["name"],
                              "split": "test", "metrics": {}}
    if "nll" in names:
        result["metrics"]["nll"] = likelihood(model, test, k=k, n=n)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if write:
        from .train.checkpoint import atomic_write_json

        atomic_write_json(run / "eval.json", result)
    return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Flatten eval results to (name, value) rows for tables and reports."""
    rows = []
    for metric, vals in result.get("metrics", {}).items():
        for key, v in vals.items():
            if isinstance(v, float):
                v = f"{v:.4f}" if math.isfinite(v) else str(v)
            rows.append((f"{metric}.{key}", str(v)))
    return rows
