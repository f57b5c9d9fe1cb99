"""Anomaly detection on a real table: breast cancer (scikit-learn's copy of the Wisconsin diagnostic set), benign
rows normal, malignant rows anomalies. Each seed trains every detector on 200 benign rows and scores the other
157 benign rows and all 212 malignant ones; ROC-AUC and PR-AUC (average precision), mean ± std over the seeds.
genlab's detectors beside scikit-learn's IsolationForest, LOF (novelty) and One-Class SVM and PyOD's ECOD,
AutoEncoder and VAE, in the same run on the same splits, every one on standardised features with its defaults.
Run by hand (2 CPU cores, nothing else running); results go to docs/BENCHMARKS.md.

    pip install pyod
    python benchmarks/anomaly_tables.py --seeds 10 --out runs/anomaly_tables.json
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
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from genlab.apps import AnomalyDetector


def detectors(seed: int) -> dict:
    """name -> a fitted-on-call scorer (X_train, X_test) -> anomaly scores, higher = more anomalous."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.ecod import ECOD
    from pyod.models.vae import VAE

    def sk(est):  # scikit-learn's detectors: score_samples is higher for normal rows
        return lambda a, b: -est.fit(a).score_samples(b)

    def pyod(est):
        return lambda a, b: est.fit(a).decision_function(b)

    def genlab(**kw):
        return lambda a, b: AnomalyDetector(random_state=seed, **kw).fit(a).decision_function(b)

    return {
        "genlab vae (reconstruction)": genlab(kind="vae", steps=1000, options={"latent_dim": 4}),
        "genlab vae (nll: -ELBO)": genlab(kind="vae", score="nll", steps=1000, options={"latent_dim": 4}),
        "genlab ae (reconstruction)": genlab(kind="ae", steps=1000, options={"latent_dim": 4}),
        "genlab maf (nll)": genlab(kind="maf", steps=1000),
        "IsolationForest": sk(IsolationForest(random_state=seed)),
        "LOF (novelty)": sk(LocalOutlierFactor(novelty=True)),
        "One-Class SVM": sk(OneClassSVM()),
        "ECOD (PyOD)": pyod(ECOD()),
        "AutoEncoder (PyOD)": pyod(AutoEncoder(random_state=seed, verbose=0)),
        "VAE (PyOD)": pyod(VAE(random_state=seed, verbose=0)),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--train", type=int, default=200, help="benign rows to train on")
    ap.add_argument("--out", type=Path, default=Path("runs/anomaly_tables.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore")
    X, y = load_breast_cancer(return_X_y=True)
    benign, malignant = X[y == 1], X[y == 0]
    res: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        b = benign[rng.permutation(len(benign))]
        X_train, X_test = b[:args.train], np.concatenate([b[args.train:], malignant])
        truth = np.r_[np.zeros(len(b) - args.train), np.ones(len(malignant))]
        scaler = StandardScaler().fit(X_train)
        A, B = scaler.transform(X_train), scaler.transform(X_test)
        for name, score in detectors(seed).items():
            t0 = time.perf_counter()
            s = np.asarray(score(A, B), dtype=np.float64)
            r = res.setdefault(name, {"roc_auc": [], "pr_auc": [], "seconds": []})
            r["roc_auc"].append(roc_auc_score(truth, s))
            r["pr_auc"].append(average_precision_score(truth, s))
            r["seconds"].append(time.perf_counter() - t0)
        print(f"seed {seed}: " + ", ".join(f"{k} {v['roc_auc'][-1]:.3f}" for k, v in res.items()), flush=True)
    table = {k: {m: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)] for m, v in r.items()}
             for k, r in res.items()}
    summary = {"table": table, "seeds": args.seeds, "train_rows": args.train, "test_rows": int(len(X) - args.train),
               "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print("| detector | ROC-AUC | PR-AUC | seconds |")
    for k, r in table.items():
        print(f"| {k} | {r['roc_auc'][0]:.3f} ± {r['roc_auc'][1]:.3f} | {r['pr_auc'][0]:.3f} ± {r['pr_auc'][1]:.3f} "
              f"| {r['seconds'][0]:.1f} |")


if __name__ == "__main__":
    main()
