"""One-class anomaly detection on Fashion-MNIST: for each of the 10 classes, train on that class's training images
(6000) and score the whole test split (10000; the class's own 1000 test images are normal, the other 9000
anomalies). ROC-AUC per class and its mean, for genlab's detectors (a convolutional VAE scored by reconstruction
error and, the same trained VAE, by its negative ELBO; a PixelCNN scored by its exact negative log-likelihood)
beside scikit-learn's IsolationForest, LOF (novelty) and One-Class SVM and PyOD's ECOD, AutoEncoder and VAE on
the same pixels in [0, 1]. Mean ± std over seeds; LOF, the One-Class SVM and ECOD have no randomness and run
once per class (std 0).

It also looks for the failure of likelihoods that Nalisnick et al. (2019) found: a likelihood model may give
*higher* likelihood to out-of-class images that are simpler (fewer inked pixels) than its own class. For each
likelihood detector and training class, the out-of-class classes whose mean score is below the in-class mean
(i.e. judged more normal than the normal images) are counted over the seeds.

    pip install pyod
    python benchmarks/anomaly_images.py --seeds 0-9 --jobs 2 --out runs/anomaly_images.json
    python benchmarks/anomaly_images.py --merge runs/anomaly_images_a.json runs/anomaly_images_b.json  # parts

Why PyOD's VAE is ahead of genlab's: `--detectors` runs variants (PyOD's VAE with its KL term on, and on pixels
in [0, 1] without its per-pixel standardisation; genlab's VAE with an MLP, and on the flattened pixels, which it
standardises per column; no model at all, the distance to the class mean in standardised pixels):

    python benchmarks/anomaly_images.py --seeds 0-2 --jobs 2 --out runs/anomaly_images_why.json \
        --detectors "VAE (PyOD) with KL,genlab vae mlp,genlab vae on standardised pixels,distance to the mean"
    python benchmarks/anomaly_images.py --seeds 0-2 --jobs 2 --out runs/anomaly_images_why2.json \
        --detectors "VAE (PyOD) on raw pixels"

The training budgets are in steps (about one minute each at two threads on the machine of docs/BENCHMARKS.md),
so the units (one class, one seed) may run side by side in single-thread processes (--jobs 2) and give the
same scores as one process. Run by hand (2 CPU cores, nothing else running); results go to docs/BENCHMARKS.md.
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
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from genlab.apps import AnomalyDetector
from genlab.data.builtin import FASHION_CLASSES

DETERMINISTIC = ("LOF (novelty)", "One-Class SVM", "ECOD (PyOD)", "distance to the mean")  # no seed: run once
MAIN = ("genlab vae", "genlab pixelcnn", "IsolationForest", "LOF (novelty)", "One-Class SVM", "ECOD (PyOD)",
        "AutoEncoder (PyOD)", "VAE (PyOD)")  # the table; the others take apart the gap between the two VAEs
LIKELIHOODS = ("genlab vae (nll: -ELBO)", "genlab pixelcnn (nll)")


def flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).astype(np.float32) / 255


def detectors(seed: int, vae_steps: int, pixelcnn_steps: int) -> dict:
    """name -> (train uint8 images, test uint8 images) -> {name: scores}, higher = more anomalous."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.ecod import ECOD
    from pyod.models.vae import VAE

    def sk(name, make):
        return lambda a, b: {name: -make().fit(flat(a)).score_samples(flat(b))}

    def pyod(name, make):
        return lambda a, b: {name: make().fit(flat(a)).decision_function(flat(b))}

    def vae(a, b):  # one trained VAE, scored both ways
        det = AnomalyDetector(kind="vae", score="reconstruction", steps=vae_steps, random_state=seed).fit(a)
        out = {"genlab vae (reconstruction)": det.decision_function(b)}
        det.score_ = "nll"
        return {**out, "genlab vae (nll: -ELBO)": det.decision_function(b)}

    def vae_variant(name, rows, **options):  # rows: flattened pixels, standardised per pixel as PyOD does
        def fit_score(a, b):
            a, b = (flat(a), flat(b)) if rows else (a, b)
            det = AnomalyDetector(kind="vae", score="reconstruction", steps=vae_steps, options=options,
                                  random_state=seed).fit(a)
            return {name: det.decision_function(b)}
        return fit_score

    def distance_to_mean(a, b):  # no model: how far each image is from the class's mean, per-pixel z-scores
        a, b = flat(a), flat(b)
        mean, std = a.mean(0), a.std(0)
        return {"distance to the class mean (standardised pixels)": np.linalg.norm((b - mean) / (std + 1e-8), axis=1)}

    def pixelcnn(a, b):
        det = AnomalyDetector(kind="pixelcnn", steps=pixelcnn_steps, random_state=seed)
        return {"genlab pixelcnn (nll)": det.fit(a).decision_function(b)}

    return {"genlab vae": vae, "genlab pixelcnn": pixelcnn,
            "IsolationForest": sk("IsolationForest", lambda: IsolationForest(random_state=seed)),
            "LOF (novelty)": sk("LOF (novelty)", lambda: LocalOutlierFactor(novelty=True)),
            "One-Class SVM": sk("One-Class SVM", lambda: OneClassSVM(gamma="scale")),
            "ECOD (PyOD)": pyod("ECOD (PyOD)", lambda: ECOD()),
            "AutoEncoder (PyOD)": pyod("AutoEncoder (PyOD)", lambda: AutoEncoder(random_state=seed, verbose=0)),
            "VAE (PyOD)": pyod("VAE (PyOD)", lambda: VAE(random_state=seed, verbose=0)),
            # PyOD's VAE clamps its KL term to [0, capacity], and capacity defaults to 0: without KL it trains as
            # an autoencoder with a noisy code. A capacity above any KL turns the KL term on.
            "VAE (PyOD) with KL": pyod("VAE (PyOD), capacity=1e9: KL on",
                                      lambda: VAE(random_state=seed, verbose=0, capacity=1e9)),
            "VAE (PyOD) on raw pixels": pyod("VAE (PyOD), preprocessing=False: pixels in [0, 1]",
                                             lambda: VAE(random_state=seed, verbose=0, preprocessing=False)),
            "genlab vae mlp": vae_variant("genlab vae, mlp (reconstruction)", rows=False, arch="mlp"),
            "genlab vae on standardised pixels": vae_variant("genlab vae on standardised pixels, mlp (reconstruction)",
                                                           rows=True),
            "distance to the mean": distance_to_mean}


@functools.cache
def fashion() -> tuple[np.ndarray, ...]:
    """Training and test images as uint8 (N, 28, 28) with their labels; once per process."""
    from genlab.data import load_dataset

    tr, te = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", "test")
    to_u8 = lambda d: ((d.x[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    return to_u8(tr), tr.y.numpy(), to_u8(te), te.y.numpy()


def run_unit(c: int, seed: int, with_deterministic: bool, args, threads: int) -> tuple[int, int, dict]:
    """One class, one seed: (c, seed, {detector: {"auc", "seconds", "simpler_than_normal"}})."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    xtr, ytr, xte, yte = fashion()
    truth = (yte != c).astype(int)
    out = {}
    for name, score in detectors(seed, args.vae_steps, args.pixelcnn_steps).items():
        if name not in args.detectors or name in DETERMINISTIC and not with_deterministic:
            continue
        t0 = time.perf_counter()
        for det, s in score(xtr[ytr == c], xte).items():
            s = np.asarray(s, dtype=np.float64)
            inside = s[yte == c].mean()
            out[det] = {"auc": roc_auc_score(truth, s), "seconds": time.perf_counter() - t0,
                        "simpler_than_normal": [FASHION_CLASSES[k] for k in range(10)
                                                if k != c and s[yte == k].mean() < inside]}
    return c, seed, out


def report(res: dict) -> None:
    """The table (mean ± std over seeds of the 10-class mean ROC-AUC, and each class's mean) and the likelihood
    failures, from {detector: {"auc": {class: {seed: auc}}, "simpler_than_normal": {class: {seed: [...]}}}}."""
    names = [n for n in FASHION_CLASSES if n in res[next(iter(res))]["auc"]]
    seeds = sorted({s for v in res.values() for per in v["auc"].values() for s in per}, key=int)
    print(f"\n{len(seeds)} seeds ({', '.join(seeds)}); deterministic detectors once")
    print("seconds: fit on one class and score the test split, mean over classes and seeds (one thread with "
          "--jobs 2, two without)")
    print(f"| detector | mean ROC-AUC ({len(names)} classes) | " + " | ".join(names) + " | seconds |")
    for k, v in res.items():
        done = [s for s in seeds if all(s in v["auc"][n] for n in names)]  # seeds with every class
        means = [np.mean([v["auc"][n][s] for n in names]) for s in done]
        cells = [f"{np.mean([v['auc'][n][s] for s in done]):.3f}" for n in names]
        secs = np.mean([t for per in v["seconds"].values() for t in per.values()])  # fit + score, one class
        print(f"| {k} | {np.mean(means):.3f} ± {np.std(means):.3f} ({len(done)}) | " + " | ".join(cells)
              + f" | {secs:.1f} |")
    for k in LIKELIHOODS:
        if k in res:
            print(f"\n{k}: out-of-class classes judged more normal than the class itself (seeds out of "
                  f"{len(seeds)}):")
            for n, per in res[k]["simpler_than_normal"].items():
                counts = {m: sum(m in lst for lst in per.values()) for m in FASHION_CLASSES}
                print(f"  trained on {n}: " + (", ".join(f"{m} {c}" for m, c in counts.items() if c) or "-"))


def seed_list(text: str) -> list[int]:
    """'0-9' or '0,3,5' -> the seeds."""
    if "-" in text:
        lo, hi = map(int, text.split("-"))
        return list(range(lo, hi + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default=None, help="'0-9' or a comma-separated list (default 0; with --merge: "
                    "only these seeds of the files)")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--vae-steps", type=int, default=850, help="training steps of genlab's VAE")
    ap.add_argument("--pixelcnn-steps", type=int, default=90, help="training steps of genlab's PixelCNN")
    ap.add_argument("--jobs", type=int, default=1, help="units (class, seed) in this many processes of one "
                    "thread each (1: one process of two threads)")
    ap.add_argument("--detectors", type=lambda t: [d.strip() for d in t.split(",")], default=MAIN,
                    help="comma-separated names (default: the table's); the others, which take apart the gap "
                    "between genlab's VAE and PyOD's: "
                    "VAE (PyOD) with KL, VAE (PyOD) on raw pixels, genlab vae mlp, genlab vae on standardised pixels, "
                    "distance to the mean")
    ap.add_argument("--no-deterministic", action="store_true", help="skip the detectors without randomness "
                    "(LOF, the One-Class SVM, ECOD, the distance to the mean: another part of the run has them)")
    ap.add_argument("--out", type=Path, default=Path("runs/anomaly_images.json"))
    ap.add_argument("--merge", type=Path, nargs="+", help="print the table of earlier runs' JSON files together "
                    "(each with some of the classes or seeds), and train nothing")
    args = ap.parse_args()
    res: dict = {}
    if args.merge:
        for f in args.merge:
            for k, v in json.loads(f.read_text())["detectors"].items():
                r = res.setdefault(k, {})
                for part, per_class in v.items():
                    for n, per_seed in per_class.items():
                        keep = per_seed if args.seeds is None else {
                            k: v for k, v in per_seed.items() if int(k) in seed_list(args.seeds)}
                        r.setdefault(part, {}).setdefault(n, {}).update(keep)
        report(res)
        return
    known = detectors(0, 0, 0)
    if unknown := [d for d in args.detectors if d not in known]:
        ap.error(f"unknown detector(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    warnings.filterwarnings("ignore")
    seeds = seed_list(args.seeds or "0")
    units = [(c, s, s == seeds[0] and not args.no_deterministic, args)
             for s in seeds for c in map(int, args.classes.split(","))]
    if args.no_deterministic and all(d in DETERMINISTIC for d in args.detectors):
        ap.error("--no-deterministic skips every detector chosen: nothing would run")
    for c, seed, out in run_units(run_unit, units, args.jobs):
        for det, v in out.items():
            for part, val in v.items():
                res.setdefault(det, {}).setdefault(part, {}).setdefault(FASHION_CLASSES[c], {})[str(seed)] = val
        print(f"{FASHION_CLASSES[c]}, seed {seed}: " + ", ".join(f"{k} {v['auc']:.3f}" for k, v in out.items()),
              flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({  # after every unit: a kill keeps what is done
            "detectors": res, "vae_steps": args.vae_steps, "pixelcnn_steps": args.pixelcnn_steps,
            "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d")}, indent=1))
    report(res)


if __name__ == "__main__":
    main()
