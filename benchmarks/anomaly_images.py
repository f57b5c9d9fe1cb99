"""One-class anomaly detection on Fashion-MNIST: for each of the 10 classes, train on that class's training images
(6000) and score the whole test split (10000; the class's own 1000 test images are normal, the other 9000
anomalies). ROC-AUC per class and its mean, for genlab's detectors (a convolutional VAE scored by reconstruction
error and by its negative ELBO; a PixelCNN scored by its exact negative log-likelihood) beside scikit-learn's
IsolationForest, LOF (novelty) and One-Class SVM and PyOD's ECOD, AutoEncoder and VAE on the same pixels in [0, 1].

It also looks for the failure of likelihoods that Nalisnick et al. (2019) found: a likelihood model may give
*higher* likelihood to out-of-class images that are simpler (fewer inked pixels) than its own class. For each
likelihood detector and training class, the out-of-class classes whose mean score is below the in-class mean
(i.e. judged more normal than the normal images) are listed.

    pip install pyod
    python benchmarks/anomaly_images.py --minutes 1 --out runs/anomaly_images.json
    python benchmarks/anomaly_images.py --merge runs/anomaly_images_a.json runs/anomaly_images_b.json  # parts

Run by hand (2 CPU cores, nothing else running); results go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from genlab.apps import AnomalyDetector
from genlab.data.builtin import FASHION_CLASSES


def detectors(minutes: float, seed: int) -> dict:
    """name -> (train uint8 images, test uint8 images) -> scores, higher = more anomalous."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.ecod import ECOD
    from pyod.models.vae import VAE

    flat = lambda a: a.reshape(len(a), -1).astype(np.float32) / 255

    def sk(make):
        return lambda a, b: -make().fit(flat(a)).score_samples(flat(b))

    def pyod(make):
        return lambda a, b: make().fit(flat(a)).decision_function(flat(b))

    def genlab(**kw):
        return lambda a, b: AnomalyDetector(minutes=minutes, random_state=seed, **kw).fit(a).decision_function(b)

    return {
        "genlab vae (reconstruction)": genlab(kind="vae"),
        "genlab vae (nll: -ELBO)": genlab(kind="vae", score="nll"),
        "genlab pixelcnn (nll)": genlab(kind="pixelcnn"),
        "IsolationForest": sk(lambda: IsolationForest(random_state=seed)),
        "LOF (novelty)": sk(lambda: LocalOutlierFactor(novelty=True)),
        "One-Class SVM": sk(lambda: OneClassSVM(gamma="scale")),
        "ECOD (PyOD)": pyod(lambda: ECOD()),
        "AutoEncoder (PyOD)": pyod(lambda: AutoEncoder(random_state=seed, verbose=0)),
        "VAE (PyOD)": pyod(lambda: VAE(random_state=seed, verbose=0)),
    }


LIKELIHOODS = ("genlab vae (nll: -ELBO)", "genlab pixelcnn (nll)")


def report(res: dict) -> None:
    """The table (mean ROC-AUC and each class's) and the likelihood failures, from {detector: {...}}."""
    names = list(res[next(iter(res))]["auc"])
    print(f"\n| detector | mean ROC-AUC ({len(names)} classes) | " + " | ".join(names) + " |")
    for k, v in res.items():
        print(f"| {k} | {np.mean(list(v['auc'].values())):.3f} | " + " | ".join(f"{v['auc'][n]:.3f}" for n in names)
              + " |")
    for k in LIKELIHOODS:
        if k in res:
            print(f"\n{k}: out-of-class classes judged more normal than the class itself:")
            for n, lst in res[k]["simpler_than_normal"].items():
                print(f"  trained on {n}: {', '.join(lst) or '-'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=2.0, help="training budget of each genlab detector")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/anomaly_images.json"))
    ap.add_argument("--merge", type=Path, nargs="+", help="print the table of earlier runs' JSON files together "
                    "(each with some of the classes), and train nothing")
    args = ap.parse_args()
    if args.merge:
        res: dict = {}
        for f in args.merge:
            for k, v in json.loads(f.read_text())["detectors"].items():
                r = res.setdefault(k, {"auc": {}, "seconds": {}, "simpler_than_normal": {}})
                for part in r:
                    r[part].update(v[part])
        report(res)
        return
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    from genlab.data import load_dataset

    tr, te = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", "test")
    to_u8 = lambda d: ((d.x[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    xtr, ytr, xte, yte = to_u8(tr), tr.y.numpy(), to_u8(te), te.y.numpy()
    res = {}
    for c in map(int, args.classes.split(",")):
        truth = (yte != c).astype(int)
        for name, score in detectors(args.minutes, args.seed).items():
            t0 = time.perf_counter()
            s = np.asarray(score(xtr[ytr == c], xte), dtype=np.float64)
            r = res.setdefault(name, {"auc": {}, "seconds": {}, "simpler_than_normal": {}})
            r["auc"][FASHION_CLASSES[c]] = roc_auc_score(truth, s)
            r["seconds"][FASHION_CLASSES[c]] = time.perf_counter() - t0
            inside = s[yte == c].mean()
            r["simpler_than_normal"][FASHION_CLASSES[c]] = [
                FASHION_CLASSES[k] for k in range(10) if k != c and s[yte == k].mean() < inside]
            print(f"{FASHION_CLASSES[c]}: {name} ROC-AUC {r['auc'][FASHION_CLASSES[c]]:.3f} "
                  f"({r['seconds'][FASHION_CLASSES[c]]:.0f} s)", flush=True)
        summary = {"detectors": {k: {**v, "mean_auc": float(np.mean(list(v["auc"].values())))}
                                 for k, v in res.items()},
                   "minutes": args.minutes, "seed": args.seed, "machine": platform.processor() or platform.machine(),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1))  # after every class: a kill keeps what is done
    report(res)


if __name__ == "__main__":
    main()
