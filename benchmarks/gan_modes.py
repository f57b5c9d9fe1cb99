"""Mode collapse, measured: the VEEGAN/PacGAN protocol on gaussians8 and gaussians25 (2,500 samples per run,
several seeds): modes captured and % high-quality samples (within 3 std of a mode) for GAN losses and tricks,
beside the published rows. One recipe for every row: 2-D latent, 3x256 MLPs, batch 256, Adam with cosine decay
to 10%, EMA of G; the learning rate per loss as listed in SETTINGS. Run by hand (one process per dataset):

    python benchmarks/gan_modes.py --data gaussians8 --seeds 5 --steps 2500 --figures docs/img/gan_modes \
        > runs/gan_modes_gaussians8.log
    python benchmarks/gan_modes.py --data gaussians25 --seeds 5 --steps 2500 --figures docs/img/gan_modes \
        > runs/gan_modes_gaussians25.log
    python benchmarks/gan_modes.py --report runs/gan_modes_*.log    # one table from the JSON lines of both

--figures draws the samples of seed 0 (--figure-seed N: of seed N) per setting. --drs 80 95 adds rows for the
same runs sampled with discriminator rejection sampling; --reuse scores runs
already in --out instead of training them; --opts / --train add model / training options (JSON).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import genlab
from genlab.metrics.scores import mode_metrics
from genlab.report.images import save_scatter

# name -> (model options, learning rate, share of --steps as generator iterations). wgan-gp runs 5 critic steps
# per iteration at its paper's lr (Gulrajani et al. 2017), so it gets 1/3 of the iterations (about equal time);
# hinge + SN at 1e-3 captured no mode in a trial, so it keeps the library default 2e-4.
SETTINGS = {
    "minimax": ({"loss": "minimax"}, 1e-3, 1.0),
    "ns": ({"loss": "ns"}, 1e-3, 1.0),
    "wgan-gp": ({"loss": "wgan-gp"}, 1e-4, 1 / 3),
    "wgan (clip 0.01)": ({"loss": "wgan"}, 1e-4, 1 / 3),  # Arjovsky et al. 2017's weight clipping, as wgan-gp's budget
    "hinge + SN": ({"loss": "hinge", "spectral_norm": True}, 2e-4, 1.0),
    "ns + PacGAN4": ({"loss": "ns", "pac": 4}, 1e-3, 1.0),
    "ns + minibatch std": ({"loss": "ns", "minibatch_std": True}, 1e-3, 1.0),
    # Metz et al. 2017: G's loss through 5 look-ahead D steps; the same iterations (each costs 5-8x, §44)
    "ns + unrolled 5": ({"loss": "ns", "unroll": 5}, 1e-3, 1.0),
    "minimax + unrolled 5": ({"loss": "minimax", "unroll": 5}, 1e-3, 1.0),  # minimax collapses on the ring (§13)
    # Salimans et al. 2016: feature matching (here added to ns's loss at weight 1) and one-sided smoothing to 0.9
    "ns + feature matching": ({"loss": "ns", "feature_matching": 1.0}, 1e-3, 1.0),
    "ns + label smoothing 0.1": ({"loss": "ns", "label_smoothing": 0.1}, 1e-3, 1.0),
    # Heusel et al. 2017 (TTUR): D's lr 4x G's; D keeps ns's 1e-3, G gets a quarter of it
    "ns + TTUR 4": ({"loss": "ns", "d_lr_ratio": 4.0}, 2.5e-4, 1.0),
}
# VEEGAN (Srivastava et al. 2017) Table 1 and PacGAN (Lin et al. 2018) Table 2: modes, % high quality
PUBLISHED = {"gaussians8": {"GAN (VEEGAN)": "1.0 / 99.3%", "PacGAN4": "7.8 / 94.3%"},
             "gaussians25": {"GAN (VEEGAN)": "3.3 / 0.5%", "PacGAN4": "24.8 / 94.2%"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", nargs="+", default=["gaussians8", "gaussians25"])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--start-seed", type=int, default=0, help="run seeds start-seed .. start-seed + seeds - 1")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--out", type=Path, default=Path("runs/gan_modes"))
    ap.add_argument("--figures", type=Path, default=None, help="scatter of one seed's samples per setting")
    ap.add_argument("--figure-seed", type=int, default=None, help="the seed whose samples --figures draws (0)")
    ap.add_argument("--opts", type=json.loads, default={}, help='more model options as JSON, e.g. \'{"r1": 0.1}\'')
    ap.add_argument("--train", type=json.loads, default={}, help='more training options as JSON, e.g. '
                    '\'{"min_lr_ratio": 0.01}\'')
    ap.add_argument("--drs", type=float, nargs="*", default=[], help="also score samples drawn with discriminator "
                    "rejection sampling at these percentiles (one more row per run and percentile)")
    ap.add_argument("--reuse", action="store_true", help="score the runs already in --out instead of training")
    ap.add_argument("--report", type=Path, nargs="+", default=None, help="only print the table of these logs")
    args = ap.parse_args()
    if args.figure_seed is not None and not args.start_seed <= args.figure_seed < args.start_seed + args.seeds:
        ap.error(f"--figure-seed {args.figure_seed} is not among the seeds run "
                 f"({args.start_seed}..{args.start_seed + args.seeds - 1})")
    if args.report:
        rows = [json.loads(line) for f in args.report for line in f.read_text().splitlines() if line.startswith("{")]
        return table(rows)
    rows = []
    for name in args.data:
        data = genlab.load_dataset(name)
        for setting in args.settings:
            for seed in range(args.start_seed, args.start_seed + args.seeds):
                run = args.out / f"{name}-{setting.replace(' ', '')}-{seed}"
                opts, lr, share = SETTINGS[setting]
                steps = round(args.steps * share)
                kw = {"batch_size": 256, "lr": lr, "schedule": "cosine", "seed": seed, **args.train}
                t0 = time.perf_counter()
                if not args.reuse:
                    shutil.rmtree(run, ignore_errors=True)
                    torch.manual_seed(seed)
                    model = genlab.create("gan", data, **{"latent_dim": 2, **opts, **args.opts})
                    genlab.train(model, data, steps=steps, out=run, progress=False, **kw)
                else:  # the run must hold this setting; its training time is its last logged time
                    meta = json.loads((run / "config.json").read_text())
                    wrong = {k: v for k, v in {**opts, **args.opts}.items() if meta["config"].get(k) != v}
                    wrong |= {k: v for k, v in kw.items() if meta["train"].get(k) != v}
                    if wrong:
                        raise SystemExit(f"{run} was trained with other options than {wrong}")
                    t0 -= json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["time"]
                seconds = round(time.perf_counter() - t0, 1)
                trained = genlab.load(run)
                x = trained.sample(args.n, seed=1000 + seed)
                label = setting + "".join(f" {json.dumps(o)}" for o in (args.opts, args.train) if o)
                for drs in (None, *args.drs):
                    s = x if drs is None else trained.sample(args.n, seed=1000 + seed, drs=drs)
                    m = mode_metrics(torch.as_tensor(trained.spec.to_original(s)), name)
                    rows.append({"data": name, "setting": label + (f" + DRS {drs:g}" if drs is not None else ""),
                                 "seed": seed, "iterations": steps, "lr": kw["lr"], "modes": m["modes"],
                                 "high_quality": m["high_quality"], "seconds": seconds})
                    print(json.dumps(rows[-1]), flush=True)
                    if seed == (args.figure_seed or 0) and args.figures:
                        stem = f"{name}_{setting.replace(' ', '')}" + (f"_seed{seed}" if seed else "")
                        stem += "_drs" if drs is not None else ""
                        save_scatter(s, trained.spec, args.figures / f"{stem}.png", reference=data.x[: args.n],
                                     title=f"{rows[-1]['setting']}, seed {seed}")
    table(rows)


def table(rows: list[dict]) -> None:
    print("\n| data | setting | iterations | seeds | modes (mean, min) | high quality (mean, min) |\n"
          "|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["data"] for r in rows):
        for setting, its in dict.fromkeys((r["setting"], r["iterations"]) for r in rows if r["data"] == name):
            r = [x for x in rows if x["data"] == name and x["setting"] == setting and x["iterations"] == its]
            modes, hq = [x["modes"] for x in r], [x["high_quality"] for x in r]
            print(f"| {name} | {setting} | {r[0]['iterations']} | {len(r)} | {sum(modes) / len(r):.1f} "
                  f"({min(modes)}) | {100 * sum(hq) / len(r):.1f}% ({100 * min(hq):.1f}%) |")
        for k, v in PUBLISHED[name].items():
            print(f"| {name} | {k}, published | | | {v} | |")


if __name__ == "__main__":
    main()
