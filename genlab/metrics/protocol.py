"""The evaluation protocol (DESIGN §4), version 1: `genlab.evaluate(run)` and `evaluate_samples(x, dataset)`.

Picks the metrics that apply: FID, KID, precision/recall, density/coverage, memorisation on features (the
dataset's shipped classifier for images, the standardised data itself for vectors and tables); IS and the
classifier accuracy of conditional samples for images; mode metrics on the 2-D mixtures; likelihood bounds in
bits/dim where the model has log_prob. Reference features are cached by dataset, split and extractor hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import GenlabError
from .distances import frechet_distance, kid
from .manifold import density_coverage, memorization, precision_recall
from .scores import bits_per_dim, inception_score, laplacian_variance, mode_metrics

PROTOCOL_VERSION = "1"
METRICS = {
    "fid": "Fréchet distance of feature Gaussians (lower is better)",
    "kid": "kernel inception distance, unbiased MMD^2, 100 subsets of 1,000 (lower is better)",
    "pr": "precision / recall, k = 3 (Kynkäänniemi et al. 2019)",
    "dc": "density / coverage, k = 5 (Naeem et al. 2020)",
    "is": "inception score from the extractor's softmax (images)",
    "cls_acc": "extractor accuracy on class-conditional samples",
    "sharpness": "mean variance of the Laplacian of samples and of the split's images, intensities in [0, 1]",
    "modes": "modes captured and % high-quality samples (2-D mixtures)",
    "memorization": "nearest-training-example distances of samples vs of test examples",
    "nll": "test-split negative log-likelihood (or its bound) in bits/dim",
}


def cache_dir() -> Path:
    return Path(os.environ.get("GENLAB_CACHE", Path.home() / ".cache" / "genlab"))


def reference_features(dataset: str, split: str, extractor=None, opts: dict | None = None):
    """(features, probs) of a dataset split: extractor outputs for images (cached on disk), the standardised data
    itself for vectors and tables. The split is read 1,000 items at a time (a streamed one is never whole)."""
    from ..data import chunks, load_dataset

    data = load_dataset(dataset, split, **(opts or {}))
    if extractor is None:
        return torch.cat([x.flatten(1).float() for x, _ in chunks(data)]), None
    src = getattr(data, "source", None) or {"name": dataset, "opts": opts or {}}
    tag = "-" + hashlib.sha256(json.dumps(src["opts"], sort_keys=True, default=str).encode()).hexdigest()[:12] \
        if src["opts"] else ""  # data options (binarize, a subset, ...) change the images: their own entry
    key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{src['name']}{tag}-{split}-{extractor.sha256[:16]}")
    path = cache_dir() / "features" / f"{key}.npz"
    if path.is_file():
        z = np.load(path)
        return torch.from_numpy(z["features"]), (torch.from_numpy(z["probs"]) if "probs" in z else None)
    parts = [extractor.run(x) for x, _ in chunks(data)]
    feats = torch.cat([f for f, _ in parts])
    probs = torch.cat([p for _, p in parts]) if parts[0][1] is not None else None
    import io

    from ..io import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, features=feats.numpy(), **({"probs": probs.numpy()} if probs is not None else {}))
    atomic_write_bytes(path, buf.getvalue())
    return feats, probs


def check_names(names: list[str]) -> None:
    for m in names:
        if m not in METRICS:
            raise GenlabError(f"unknown metric '{m}': choose from {', '.join(METRICS)}")


def applicable(spec, model=None) -> list[str]:
    from ..data.builtin import MIXTURES

    if spec.kind == "text":  # sample metrics compare feature vectors; text has only its likelihood here
        return ["nll"] if model is not None and "log_prob" in model.capabilities else []
    names = ["fid", "kid", "pr", "dc"]
    if spec.is_image:
        names += ["is", "memorization", "sharpness"]
        if model is not None and model.conditioning in ("class", "text"):
            names.append("cls_acc")  # text: samples drawn with each class's caption
    if spec.name in MIXTURES:
        names.append("modes")
    if model is not None and "log_prob" in model.capabilities:
        names.append("nll")
    return names


def evaluate_samples(samples: torch.Tensor, dataset: str, metrics: list[str] | None = None, split: str = "test",
                     labels: torch.Tensor | None = None, extractor: str | None = None, opts: dict | None = None,
                     device: str = "cpu", kid_subsets: int = 100) -> dict[str, Any]:
    """Compare model-space samples (N, *shape) with a dataset split. Returns {metric: {...}} plus bookkeeping."""
    from ..data import load_dataset
    from .features import extractor_for

    spec = load_dataset(dataset, split, **(opts or {})).spec
    names = metrics or [m for m in applicable(spec) if m not in ("cls_acc", "nll")]
    check_names(names)
    if tuple(samples.shape[1:]) != spec.shape:
        raise GenlabError(f"samples of shape {tuple(samples.shape[1:])} do not match {dataset}'s {spec.shape}")
    if not torch.isfinite(samples).all():
        raise GenlabError("the samples hold NaN or inf values; the model may have diverged")
    needs_extractor = spec.is_image and set(names) - {"modes", "nll", "sharpness"}
    ext = extractor_for(dataset, extractor, device) if needs_extractor else None
    out: dict[str, Any] = {"n_samples": len(samples)}
    t0 = time.perf_counter()
    if ext is not None:
        fake, probs = ext.run(samples)
        out["extractor"] = {"name": ext.name, "sha256": ext.sha256}
    else:
        fake, probs = samples.flatten(1).float(), None
    out["feature_seconds"] = round(time.perf_counter() - t0, 2)
    real = None
    if set(names) & {"fid", "kid", "pr", "dc", "memorization"}:
        real, _ = reference_features(dataset, split, ext, opts)
        out["n_reference"] = len(real)
    res: dict[str, Any] = {}
    if "fid" in names:
        res["fid"] = frechet_distance(real, fake)
    if "kid" in names:
        mean, std = kid(real, fake, subsets=kid_subsets)
        # with 1,000 or fewer on either side every subset is the whole set, so there is no spread to report
        res["kid"], res["kid_std"] = mean, (std if min(len(real), len(fake)) > 1000 else None)
    if "pr" in names:
        res["precision"], res["recall"] = precision_recall(real, fake, k=3)
    if "dc" in names:
        res["density"], res["coverage"] = density_coverage(real, fake, k=5)
    if "is" in names and probs is not None:
        res["is"], res["is_std"] = inception_score(probs, splits=min(10, len(probs)))
    if "cls_acc" in names:
        if labels is None or probs is None:
            raise GenlabError("cls_acc needs class-conditional samples (labels) of an image dataset")
        res["cls_acc"] = float((probs.argmax(1) == labels.cpu()).double().mean())
    if "memorization" in names:
        train, _ = reference_features(dataset, "train", ext, opts)
        res["memorization"] = memorization(train, real, fake)
    if "modes" in names:
        res["modes"] = mode_metrics(spec.to_original(samples), spec.name)
    if "sharpness" in names:
        if not spec.is_image:
            raise GenlabError("sharpness is for images; drop it for vector or table data")
        lo, hi = spec.value_range
        unit = lambda x: (x.float() - lo) / (hi - lo)
        res["sharpness"] = float(laplacian_variance(unit(samples)).mean())
        from ..data import chunks

        reference = load_dataset(dataset, split, **(opts or {}))
        per_image = torch.cat([laplacian_variance(unit(x)) for x, _ in chunks(reference)])
        res["sharpness_reference"] = float(per_image.mean())
    out["metrics"] = res
    return out


@torch.no_grad()
def likelihood(model, dataset, k: int = 100, n: int | None = None, batch_size: int = 256, seed: int = 0) -> dict:
    """Mean negative log-likelihood (bounds) over (the first n examples of) `dataset`, in nats and bits/dim."""
    if "log_prob" not in model.capabilities:
        raise GenlabError(f"{model.kind} has no log_prob, so no likelihood; `genlab models` lists those with it")
    from ..data import chunks

    count = min(n, len(dataset)) if n else len(dataset)
    model.eval()
    torch.manual_seed(seed)
    out: dict[str, Any] = {"n": count, "dims": model.spec.dims, "type": model.log_prob_type}
    for kk in ([1, k] if model.log_prob_type == "bound" and model.bound_tightens_with_k and k > 1 else [1]):
        total = 0.0
        for x, y in chunks(dataset, batch_size, count):
            xb = x.to(model.device)
            if xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            lp = model.log_prob(xb, y.to(model.device), k=kk)
            total += float(lp.double().sum())
        name = "nll" if model.log_prob_type != "bound" else "elbo" if kk == 1 else f"iwae_k{kk}"
        out[f"{name}_nats"] = -total / count
        out[f"{name}_bpd"] = bits_per_dim(-total / count, model.spec.dims)
    return out


@torch.no_grad()
def draw_samples(model, n: int, seed: int = 0, batch_size: int | None = None, precision: str = "auto", **opts):
    """n samples in batches (balanced labels for class- and text-conditional models) -> Samples (x on the CPU,
    labels, the cost per sample over all batches). opts are the model's sampling options (`genlab models` lists them);
    batch_size defaults to the model's choice for them; precision: what the networks run in (genlab.precision)."""
    from ..models.base import Cost, Samples

    by_class = model.conditioning == "class" or (model.conditioning == "text" and opts.get("prompt") is None)
    labels = torch.arange(n) % model.spec.num_classes if by_class else None  # text: each class's caption
    batch_size = batch_size or model.sample_batch_size(n, model.sample_options(**opts))
    chunks, cost = [], Cost(nfe=0.0, candidates=0.0)
    for i, start in enumerate(range(0, n, batch_size)):
        lab = None if labels is None else labels[start:start + batch_size]
        s = model.generate(min(batch_size, n - start), seed=seed + i, labels=lab, precision=precision, **opts)
        chunks.append(s.x.cpu())
        m = len(s.x)
        cost.nfe += s.cost.nfe * m / n
        cost.candidates += s.cost.candidates * m / n
        cost.seconds += s.cost.seconds
    return Samples(torch.cat(chunks), labels, cost, model.sample_options(**opts), model.sampling_precision(precision))


def evaluate(run: str | Path, metrics: list[str] | tuple[str, ...] | None = None, n: int | None = None,
             k: int = 100, device: str = "auto", extractor: str | None = None, seed: int = 0,
             write: bool = True, sample_opts: dict[str, Any] | None = None, precision: str = "auto") -> dict[str, Any]:
    """Evaluate a run on the test split of the data its samples model (the training data, or a translation's
    target domain); writes RUN/evals/KEY.json and RUN/eval.json. n: samples generated (default 10,000, or the
    test split's size if smaller), and also the number of test examples scored for nll (default all);
    k: importance samples of the IWAE bound; sample_opts: the model's sampling options (sampler, steps, ...);
    precision: what the networks run in while drawing the samples (auto | fp32 | bf16 | fp16; the feature
    extractor and likelihoods are float32 in every case)."""
    from ..runs import RunDir
    from ..training.trainer import resolve_device

    rd = RunDir.open(run)
    dev = str(resolve_device(device))
    model = rd.model(device=dev)
    sample_opts = dict(sample_opts or {})
    model.sample_options(**sample_opts)  # a bad option fails before any work
    precision = model.sampling_precision(precision)
    if model.channels_last(precision):  # NHWC convolutions are about 1.25x faster on CPU (as in training)
        model.to(memory_format=torch.channels_last)
    data = model.output_data(rd.data)
    test = rd.dataset("test", data)
    names = list(metrics) if metrics else [m for m in applicable(model.spec, model)
                                           if m != "nll" or model.nll_by_default]
    check_names(names)
    if model.spec.kind == "text" and set(names) - {"nll"}:
        raise GenlabError(f"{', '.join(sorted(set(names) - {'nll'}))} compare image or vector features; a text "
                          "model is scored by its likelihood: --metrics nll")
    for m in names:
        if m == "nll" and "log_prob" not in model.capabilities:
            raise GenlabError(f"{model.kind} has no log_prob, so no nll; `genlab models` lists those with it")
        if m == "cls_acc" and model.conditioning not in ("class", "text"):
            raise GenlabError(f"cls_acc needs a class- or text-conditional model; this {model.kind} is unconditional")
    if n is not None and n < 2:
        raise GenlabError(f"--n must be >= 2 samples, got {n}")
    t0 = time.perf_counter()
    sample_metrics = [m for m in names if m != "nll"]
    n_samples = n or min(10_000, len(test))
    uses_k = "nll" in names and (model.log_prob_type != "bound" or model.bound_tightens_with_k)
    options = {"n": n_samples if sample_metrics else n, "seed": seed, **sample_opts,
               "metrics": "+".join(names) if metrics else None, "k": k if uses_k else None,
               "extractor": extractor, "precision": precision if sample_metrics and precision != "fp32" else None}
    result: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "run": str(rd.path), "task": model.task,
                              "trained_on": rd.data["name"], "dataset": data["name"], "split": "test",
                              "options": options, "metrics": {}}
    history = rd.history if rd.is_run else []
    if history:  # the weights scored: a later `genlab compare` tells an evaluation made before more training
        result["trained_steps"] = history[-1].get("step")
    if sample_metrics:
        s = draw_samples(model, n_samples, seed=seed, precision=precision, **sample_opts)
        result["sampling"] = {"n": n_samples, "precision": precision, "seconds": round(s.cost.seconds, 2),
                              "samples_per_s": float(f"{n_samples / max(s.cost.seconds, 1e-9):.4g}"),
                              "nfe_per_sample": round(s.cost.nfe, 2),
                              "candidates_per_sample": round(s.cost.candidates, 2), **sample_opts}
        res = evaluate_samples(s.x, data["name"], sample_metrics, labels=s.labels, extractor=extractor,
                               opts=data.get("opts"), device=dev)
        result["metrics"].update(res.pop("metrics"))
        result.update(res)
    if "nll" in names:
        result["metrics"]["nll"] = likelihood(model, rd.dataset("test"), k=k, n=n)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if write:
        rd.save_eval(result)
    return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows for tables and reports; sample counts ride along with the sample metrics."""
    n = result.get("n_samples")
    rows = []

    def fmt(v):
        if v is None:
            return "n/a"
        return (f"{v:.4f}" if math.isfinite(v) else str(v)) if isinstance(v, float) else str(v)

    for metric, v in result.get("metrics", {}).items():
        if isinstance(v, dict):
            rows += [(f"{metric}.{key}", fmt(val)) for key, val in v.items() if not isinstance(val, list)]
        else:
            rows.append((f"{metric} (n={n})" if n else metric, fmt(v)))
    return rows
