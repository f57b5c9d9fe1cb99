"""Generative oversampling against the usual answers to class imbalance, on the same splits: no resampling, no
resampling with a tuned decision threshold, random oversampling, SMOTE (imbalanced-learn), and genlab's
GenerativeOversampler (a VAE per rare class). Two-class problems with the minority at 5% and 1% of the rows:
breast cancer (malignant rare), wine (cultivar 1 rare against 2 and 3), and two Fashion-MNIST pairs on pixels
(Shirt rare against T-shirt/top, Sandal rare against Sneaker); at most 1500 majority rows. Each seed draws the
imbalanced set, splits it 70/30 stratified (resampling touches the training part only), and scores logistic
regression and a histogram gradient-boosted model on the test part: minority F1, PR-AUC (average precision),
balanced accuracy. Mean ± std. A draw that leaves fewer than 3 minority rows to train on (wine at 1%: 119
majority rows give 1) is skipped.

    pip install imbalanced-learn
    python benchmarks/oversampling.py --seeds 10 --jobs 2 --out runs/oversampling.json
    (--jobs 2: the draws in two single-thread processes side by side, same scores)

Run by hand (2 CPU cores, nothing else running); results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from jobs import run_units  # benchmarks/jobs.py
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import TunedThresholdClassifierCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genlab.apps import GenerativeOversampler


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (X, y) with y = 1 for the class that will be made rare."""
    out = {}
    X, y = load_breast_cancer(return_X_y=True)
    out["breast-cancer"] = (X, (y == 0).astype(int))
    X, y = load_wine(return_X_y=True)
    out["wine"] = (X, (y == 0).astype(int))
    from genlab.data import load_dataset

    fm = load_dataset("fashion-mnist")
    x = ((fm.x.flatten(1).numpy() + 1) * 127.5).round() / 255
    yy = fm.y.numpy()
    for rare, common, name in ((6, 0, "fashion-mnist shirt vs t-shirt"), (5, 7, "fashion-mnist sandal vs sneaker")):
        keep = (yy == rare) | (yy == common)
        out[name] = (x[keep], (yy[keep] == rare).astype(int))
    return out


def imbalanced(X, y, rate: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """All majority rows (at most 1500) and as many minority rows as make them `rate` of the whole."""
    maj, mino = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    maj = rng.permutation(maj)[:1500]
    k = max(2, int(round(rate / (1 - rate) * len(maj))))
    idx = np.r_[maj, rng.permutation(mino)[:k]]
    return X[idx], y[idx]


def resamplers(seed: int, n_min: int, steps: int) -> dict:
    from imblearn.over_sampling import SMOTE, RandomOverSampler

    return {"none": None, "tuned threshold": "tune", "random oversampling": RandomOverSampler(random_state=seed),
            "SMOTE": SMOTE(random_state=seed, k_neighbors=max(1, min(5, n_min - 1))),
            "genlab vae": GenerativeOversampler(kind="vae", steps=steps, random_state=seed,
                                                mode="per-class" if n_min >= 5 else "conditional")}


def classifiers(seed: int) -> dict:
    return {"logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
            "gradient boosting": lambda: HistGradientBoostingClassifier(random_state=seed)}


def summarise(res: dict, args) -> dict:
    """Mean and std of every score; written to --out (after every draw, so a kill keeps what is done)."""
    table = {d: {rt: {c: {m: {k: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4), len(v)]
                              for k, v in r.items()} for m, r in cr.items()} for c, cr in rr.items()}
                 for rt, rr in dr.items()} for d, dr in res.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "seeds": args.seeds, "image_seeds": args.image_seeds or args.seeds,
                                    "steps": args.steps, "machine": platform.processor() or platform.machine(),
                                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}, indent=1))
    return table


@functools.cache
def cached_datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return datasets()  # once per process


def run_draw(dname: str, rate: float, seed: int, args, threads: int):
    """One imbalanced draw of one dataset: (dname, rate, seed, minority training rows, {classifier: {method:
    {score: value}}}), or the same with None when the draw leaves too few minority rows."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    X, y = cached_datasets()[dname]
    rng = np.random.default_rng(seed)
    Xi, yi = imbalanced(X, y, rate, rng)
    Xtr, Xte, ytr, yte = train_test_split(Xi, yi, test_size=0.3, stratify=yi, random_state=seed)
    n_min = int(ytr.sum())
    if n_min < 3:  # SMOTE, a tuned threshold (3-fold) and a model of the class all need a few rows
        return dname, rate, seed, n_min, None
    scores: dict = {}
    for rname, sampler in resamplers(seed, n_min, args.steps).items():
        t0 = time.perf_counter()
        Xr, yr = (Xtr, ytr) if sampler in (None, "tune") else sampler.fit_resample(Xtr, ytr)
        secs = time.perf_counter() - t0
        for cname, make in classifiers(seed).items():
            clf = make()
            if sampler == "tune":  # the threshold that maximises F1 in 3-fold CV on the training rows
                clf = TunedThresholdClassifierCV(clf, scoring="f1", cv=min(3, n_min), random_state=seed)
            clf.fit(Xr, yr)
            p = clf.predict_proba(Xte)[:, 1]
            pred = clf.predict(Xte)
            scores.setdefault(cname, {})[rname] = {
                "f1": f1_score(yte, pred, zero_division=0), "pr_auc": average_precision_score(yte, p),
                "bal_acc": balanced_accuracy_score(yte, pred), "resample_s": secs}
    return dname, rate, seed, n_min, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--image-seeds", type=int, default=None, help="seeds of the Fashion-MNIST pairs (default --seeds)")
    ap.add_argument("--steps", type=int, default=500, help="training steps of each genlab model")
    ap.add_argument("--datasets", default=None, help="comma-separated subset of the four (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="draws run in this many processes of one thread each "
                    "(1: one process of two threads)")
    ap.add_argument("--out", type=Path, default=Path("runs/oversampling.json"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    res: dict = {}
    units = [(dname, rate, seed, args) for dname, (X, _) in cached_datasets().items()
             if not args.datasets or dname in args.datasets.split(",")
             for rate in (0.05, 0.01)
             for seed in range(args.seeds if X.shape[1] < 100 else args.image_seeds or args.seeds)]
    for dname, rate, seed, n_min, scores in run_units(run_draw, units, args.jobs):
        if scores is None:
            print(f"{dname} rate {rate} seed {seed}: {n_min} minority rows to train on, skipped")
            continue
        for cname, cr in scores.items():
            for rname, vals in cr.items():
                r = res.setdefault(dname, {}).setdefault(str(rate), {}).setdefault(cname, {}).setdefault(rname, {})
                for k, v in vals.items():
                    r.setdefault(k, []).append(float(v))
        print(f"{dname} rate {rate} seed {seed} (train minority {n_min}): " + ", ".join(
            f"{k} {v['f1']:.2f}" for k, v in scores["gradient boosting"].items()), flush=True)
        summarise(res, args)
    table = summarise(res, args)
    for d, dr in table.items():
        for rt, rr in dr.items():
            draws = next(iter(next(iter(rr.values())).values()))["f1"][2]
            print(f"\n{d}, minority {float(rt):.0%} ({draws} draws)\n| method | " + " | ".join(
                f"{c}: F1 / PR-AUC / bal. acc." for c in rr) + " |")
            for m in next(iter(rr.values())):
                cells = [" / ".join(f"{rr[c][m][k][0]:.3f} ± {rr[c][m][k][1]:.3f}" for k in ("f1", "pr_auc", "bal_acc"))
                         for c in rr]
                print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
