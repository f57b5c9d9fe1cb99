"""The style-based generator with and without progressive growing beside genlab's DCGAN, on Fashion-MNIST at an
equal wall-clock budget; then the truncation trick's quality/variety trade-off (psi) and a style-mixing grid of
the progressive run. Run by hand (about 3 x MINUTES + 5 minutes):

    python benchmarks/stylegan_fashion.py --minutes 8 --out runs/stylegan_fashion --figures docs/img/stylegan

or at an equal number of full-resolution iterations instead of equal wall clock: --full-res-steps F trains the DCGAN
and the fixed-resolution StyleGAN for F iterations, and the progressive one for the 4 x grow_steps iterations its
schedule spends below 28x28 (with alpha < 1) plus the same F; each row reports its training seconds:

    python benchmarks/stylegan_fashion.py --full-res-steps 800 --grow-steps 100 --out runs/stylegan_equal
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
    "DCGAN ns": ("gan", {}),
    "StyleGAN, progressive 7-14-28": ("stylegan", {}),
    "StyleGAN, 28x28 from the start": ("stylegan", {"progressive": False}),
}
METRICS = ["fid", "kid", "pr", "sharpness"]


def slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-").replace("--", "-")


def measure(name: str, x: torch.Tensor, extra: dict) -> dict:
    res = evaluate_samples(x, "fashion-mnist", METRICS)["metrics"]
    row = {"model": name, "n": len(x), **extra, **{k: v if v is None else round(v, 4) for k, v in res.items()}}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget of each model")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--grow-steps", type=int, default=None, help="the progressive run's iterations per phase")
    ap.add_argument("--full-res-steps", type=int, default=None,
                    help="instead of --minutes: iterations at full resolution for every model")
    ap.add_argument("--psi", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=Path("runs/stylegan_fashion"))
    ap.add_argument("--reuse", action="store_true", help="evaluate existing runs instead of training")
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seeds the initialisation, the training and the samples")
    args = ap.parse_args()
    data = genlab.load_dataset("fashion-mnist")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for setting in args.settings:
        kind, opts = SETTINGS[setting]
        if kind == "stylegan" and opts.get("progressive", True) and args.grow_steps:
            opts = {**opts, "grow_steps": args.grow_steps}
        run = args.out / slug(setting)
        if not args.reuse:
            torch.manual_seed(args.seed)
            model = genlab.create(kind, data, **opts)
            if args.full_res_steps:  # the schedule reaches the top level at alpha = 1 after 2 x top x grow_steps
                grows = kind == "stylegan" and model.config.progressive
                below = 2 * model.top * model.config.grow_steps if grows else 0
                budget = {"steps": below + args.full_res_steps}
            else:
                budget = {"minutes": args.minutes}
            genlab.train(model, data, **budget, out=run, overwrite=True, seed=args.seed, progress=False)
        state = json.loads((run / "checkpoint" / "state.json").read_text())
        model = genlab.load(run)
        psis = args.psi if kind == "stylegan" else [1.0]
        for psi in psis:
            x = draw_samples(model, args.n, seed=args.seed, **({"psi": psi} if kind == "stylegan" else {})).x
            rows.append(measure(setting + (f", psi {psi}" if psi != 1.0 else ""), x,
                                {"iterations": state["step"], "seconds": round(state["elapsed"], 1), "psi": psi,
                                 "params_G": sum(p.numel() for p in model.G.parameters())}))
            if args.figures:
                save_grid(x[:64], model.spec, args.figures / f"{slug(setting)}-psi{psi}.png", nrow=8)
        if args.figures and kind == "stylegan" and opts.get("progressive", True):
            g = torch.Generator().manual_seed(1)
            coarse, fine = torch.randn(6, model.config.latent_dim, generator=g), torch.randn(6, model.config.latent_dim,
                                                                                            generator=g)
            rows_img = [model.mix(coarse, fine, c) for c in range(model.G.n_ws + 1)]  # c = n_ws: all coarse
            grid = torch.stack(rows_img, 1).reshape(-1, *model.spec.shape)  # row i: sample i, crossover 0..n_ws
            save_grid(grid, model.spec, args.figures / "mixing.png", nrow=model.G.n_ws + 1)
        (args.out / "result.json").write_text(json.dumps(rows, indent=1))
    print("\n| model | iterations | training s | G parameters | FID | KID | precision | recall | sharpness ×10³ |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['iterations']} | {r['seconds']:.0f} | {r['params_G']:,} | {r['fid']:.1f} | "
              f"{r['kid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {1000 * r['sharpness']:.1f} |")


if __name__ == "__main__":
    main()
