"""CycleGAN between mnist5k (A) and Fashion-MNIST (B): how often translations land in the target domain, and
the cycle reconstruction error. The judge is a domain probe: logistic regression on the features of the
Fashion-MNIST extractor (the protocol's classifier), fit on real train images of both domains and scored on
their test images. Run by hand:

    python benchmarks/cyclegan_domains.py --minutes 10 --out runs/cyclegan --figure docs/img/cyclegan.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import genlab
from genlab.metrics import frechet_distance
from genlab.metrics.features import extractor_for
from genlab.metrics.protocol import reference_features
from genlab.report.images import save_grid


def translate(model, x: torch.Tensor, direction: str, batch: int = 500) -> torch.Tensor:
    return torch.cat([model.translate(x[i:i + batch], direction).cpu() for i in range(0, len(x), batch)])


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=Path("runs/cyclegan"))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the family's (16)")
    ap.add_argument("--reuse", action="store_true", help="evaluate an existing run instead of training")
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()
    a_train, a_test = genlab.load_dataset("mnist5k"), genlab.load_dataset("mnist5k", "test")
    b_train, b_test = genlab.load_dataset("fashion-mnist"), genlab.load_dataset("fashion-mnist", "test")
    if not args.reuse:
        torch.manual_seed(0)
        model = genlab.create("cyclegan", a_train, target="fashion-mnist")
        batch = {"batch_size": args.batch_size} if args.batch_size else {}
        genlab.train(model, a_train, minutes=args.minutes, out=args.out, seed=0, progress=False, **batch)
    state = json.loads((args.out / "checkpoint" / "state.json").read_text())
    model = genlab.load(args.out)
    model.eval()

    ext = extractor_for("fashion-mnist")
    pick = lambda x, n: x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]
    n_fit = len(a_train.x)
    feats = lambda x: ext.run(x)[0].numpy()
    fit_x = np.concatenate([feats(a_train.x), feats(pick(b_train.x, n_fit))])
    fit_y = np.r_[np.zeros(n_fit), np.ones(n_fit)]  # 0: domain A (digits), 1: domain B (fashion)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(fit_x, fit_y)
    a, b = pick(a_test.x, len(a_test.x)), pick(b_test.x, len(a_test.x))
    ab, ba = translate(model, a, "ab"), translate(model, b, "ba")
    aba, bab = translate(model, ab, "ba"), translate(model, ba, "ab")
    l1 = lambda x, y: float((x - y).abs().mean() / 2)  # mean absolute error in [0, 1] intensity units
    f_ab, p_ab = ext.run(ab)  # once: for the probe, the FID and the classes
    as_b = lambda f: float(probe.predict(np.asarray(f)).mean())  # share classified as fashion
    fid_ab = frechet_distance(reference_features("fashion-mnist", "test", ext)[0], f_ab)
    classes = np.bincount(p_ab.argmax(1).numpy(), minlength=10).tolist()
    res = {"iterations": state["step"], "n_test": len(a),
           "probe_real_a_as_a": 1 - as_b(feats(a)), "probe_real_b_as_b": as_b(feats(b)),
           "ab_as_b": as_b(f_ab), "ba_as_a": 1 - as_b(feats(ba)),
           "cycle_l1_aba": l1(aba, a), "cycle_l1_bab": l1(bab, b),
           "identity_l1_ab": l1(ab, a), "fid_ab_vs_fashion_test": fid_ab, "ab_fashion_classes": classes}
    print(json.dumps(res, indent=1))
    (args.out / "domains.json").write_text(json.dumps(res, indent=1))
    if args.figure:  # rows: A, A->B, A->B->A, B, B->A, B->A->B
        k = 12
        save_grid(torch.cat([a[:k], ab[:k], aba[:k], b[:k], ba[:k], bab[:k]]), model.spec, args.figure, nrow=k)


if __name__ == "__main__":
    main()
