"""GANs on Fashion-MNIST at an equal wall-clock budget ("Are GANs created equal?", Lucic et al. 2018, on our
protocol): ns, wgan-gp and hinge + spectral-norm DCGANs, and a conditional ns DCGAN (classifier accuracy of its
samples), also with BigGAN's conditional BatchNorm, shared embedding and orthogonal regularisation. Beside them,
for the notes' "VAE samples are blurrier than GAN samples": a VAE run's samples (decoder means) and real train
images, with the same metrics plus sharpness (variance of the Laplacian). Run by hand:

    python benchmarks/gan_fashion.py --minutes 5 --vae runs/bench-vae-fmnist --out runs/gan_fashion \
        --figures docs/img/gan_fashion
(the VAE run comes from `python benchmarks/vae_fashion_mnist.py --epochs 6 --out runs/bench-vae-fmnist`)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import genlab
from genlab.metrics.protocol import draw_samples, evaluate_samples
from genlab.report.images import save_grid

SETTINGS = {
    "ns": {"loss": "ns"},
    "wgan-gp": {"loss": "wgan-gp"},
    "hinge + SN": {"loss": "hinge", "spectral_norm": True},
    "ns, conditional": {"loss": "ns", "conditional": True},
    # BigGAN's tricks that fit small data (Brock et al. 2019): a shared class embedding into conditional BatchNorm
    # with skip-z, and orthogonal regularisation at their 1e-4
    "ns, conditional, BigGAN": {"loss": "ns", "conditional": True, "cond_g": "cbn", "ortho_reg": 1e-4},
}
METRICS = ["fid", "kid", "pr", "sharpness"]


def measure(name: str, x: torch.Tensor, labels, extra: dict) -> dict:
    metrics = METRICS + (["cls_acc"] if labels is not None else [])
    res = evaluate_samples(x, "fashion-mnist", metrics, labels=labels)["metrics"]
    row = {"model": name, "n": len(x), **extra, **{k: round(v, 4) for k, v in res.items()}}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget of each GAN")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--vae", type=Path, default=None, help="a trained VAE run on fashion-mnist")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=Path("runs/gan_fashion"))
    ap.add_argument("--reuse", action="store_true", help="evaluate existing runs instead of training")
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the training and the samples")
    args = ap.parse_args()
    data = genlab.load_dataset("fashion-mnist")
    rows = []
    for setting in args.settings:
        run = args.out / setting.replace(" + ", "-").replace(", ", "-").replace(" ", "")
        if not args.reuse:
            torch.manual_seed(args.seed)
            model = genlab.create("gan", data, **SETTINGS[setting])
            genlab.train(model, data, minutes=args.minutes, out=run, seed=args.seed, progress=False)
        state = json.loads((run / "checkpoint" / "state.json").read_text())
        model = genlab.load(run)
        s = draw_samples(model, args.n, seed=args.seed)
        x, labels = s.x, s.labels
        rows.append(measure(f"GAN {setting}", x, labels, {"iterations": state["step"],
                                                          "params_G": sum(p.numel() for p in model.G.parameters())}))
        if args.figures:
            save_grid(x[:100], model.spec, args.figures / f"{run.name}.png", nrow=10)
    if args.vae:
        vae = genlab.load(args.vae)
        x = draw_samples(vae, args.n, seed=0).x
        rows.append(measure(f"VAE ({args.vae.name}, decoder means)", x, None, {}))
        if args.figures:
            save_grid(x[:100], vae.spec, args.figures / "vae.png", nrow=10)
    real = data.x[torch.randperm(len(data.x), generator=torch.Generator().manual_seed(0))[: args.n]]
    rows.append(measure("real train images", real, None, {}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | iterations | FID | KID | precision | recall | sharpness | class acc. |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = f"{r['cls_acc']:.3f}" if "cls_acc" in r else ""
        print(f"| {r['model']} | {r.get('iterations', '')} | {r['fid']:.1f} | {r['kid']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {1000 * r['sharpness']:.1f} | {acc} |")
    print(f"(sharpness ×10³ of the 10,000 test images: {1000 * rows[-1]['sharpness_reference']:.1f})")


if __name__ == "__main__":
    main()
