"""Synthetic tables: genlab's synthesizers beside the Gaussian-copula baseline and SDV's CTGAN and TVAE (the `ctgan`
package, Business Source licence: a benchmark peer only, never a genlab dependency), on ISLR Credit, the Palmer
penguins and breast cancer. Each seed holds out 20% of the rows (the reference for utility and privacy), fits
every synthesizer on the rest (the peers on its complete rows: the ctgan package refuses missing numbers),
samples as many rows as it trained on and computes genlab's report
(genlab.apps.table_metrics): fidelity, TSTR utility (R^2 of Credit's Balance, macro-F1 of the penguins' species
and of the tumour class), DCR and the membership-inference AUC. Mean ± std over seeds.

    pip install ctgan                         # the peer, for this benchmark only
    python benchmarks/synth_tables.py --seeds 10 --jobs 2 --out runs/synth_tables.json
    python benchmarks/synth_tables.py --part dp --seeds 10 --jobs 2 --out runs/synth_dp.json   # the cost of privacy

--part dp trains genlab's ddpm with DP-SGD at ε = 1 and 10 (δ = 1 / (10 N)) and without, same steps, batch and
network, and reports utility and fidelity.
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
from jobs import run_units  # benchmarks/jobs.py

from genlab.apps.table_metrics import evaluate
from genlab.apps.tabular import TabularSynthesizer, split_frame
from genlab.data.tables import frame_of

TABLES = ("credit", "penguins", "breast-cancer")


def genlab_synth(kind: str, **kw):
    def fit_sample(train, seed):
        s = TabularSynthesizer(kind=kind, categorical="infer", random_state=seed, **kw).fit(train)
        return s.sample(len(train)), s.codec_, s

    return fit_sample


def peer(name: str):
    def fit_sample(train, seed):
        import ctgan

        torch.manual_seed(seed)
        np.random.seed(seed)
        cats = [c for c in train.columns if train[c].dtype.kind not in "fiub"]
        m = getattr(ctgan, name)(epochs=300)  # the package's default epochs
        m.fit(train.dropna(), cats)  # the ctgan package refuses missing numbers: complete rows only
        return m.sample(len(train)), None, None

    return fit_sample


def synthesizers(args) -> dict:
    if args.part == "dp":
        net = {"net.hidden": [256, 256]}
        return {f"genlab ddpm, ε = {e}" if e else "genlab ddpm, not private":
                genlab_synth("ddpm", steps=args.dp_steps, batch_size=64, options=net, epsilon=e)
                for e in (None, 10.0, 1.0)}
    out = {"genlab copula (baseline)": genlab_synth("copula"),
           "genlab vae": genlab_synth("vae", steps=args.steps),
           "genlab ddpm": genlab_synth("ddpm", steps=args.steps),
           "genlab gan": genlab_synth("gan", steps=args.steps,
                                      options=json.loads(args.gan_options) if args.gan_options else None)}
    if not args.no_peers:
        out |= {"CTGAN (SDV)": peer("CTGAN"), "TVAE (SDV)": peer("TVAE")}
    return out


def save(rows: dict, args) -> dict:
    table_out = {t: {n: {k: [round(float(np.mean(v)), 4), round(float(np.std(v)), 4)] for k, v in r.items()}
                     for n, r in d.items()} for t, d in rows.items()}
    summary = {"table": table_out, "seeds": args.seeds, "steps": args.steps, "part": args.part,
               "processes": max(args.jobs, 1), "threads": 1 if args.jobs > 1 else 2,
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    return table_out


def run_seed(table: str, seed: int, args, threads: int) -> tuple[str, dict[str, dict[str, float]]]:
    """Fit and score every synthesizer on one table and one seed's split; {name: {metric: value}}."""
    from genlab.apps.table_codec import TableCodec

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    df, target = frame_of(table)
    train, hold = split_frame(df, 0.2, seed)
    codec = TableCodec("infer").fit(train)  # the metrics' view of the columns, the same for every synthesizer
    out = {}
    for name, fit_sample in synthesizers(args).items():
        t0 = time.perf_counter()
        fake, _, s = fit_sample(train, seed)
        secs = time.perf_counter() - t0
        m = evaluate(train, fake, hold, codec, target, seed=seed)
        u = m["utility"]
        key = "macro_f1" if "macro_f1" in u["real"] else "r2"  # a numeric target is regressed
        vals = {"fidelity": m["fidelity"]["overall"], "shapes": m["fidelity"]["column_shapes"],
                "pairs": m["fidelity"]["column_pair_trends"], "tstr": u["synthetic"][key],
                "trtr": u["real"][key], "dcr": m["privacy"]["dcr_synthetic_median"],
                "dcr_holdout": m["privacy"]["dcr_holdout_median"], "mia_auc": m["privacy"]["mia_auc"],
                "copies": m["privacy"]["exact_copies"], "seconds": secs}
        if s is not None and s.epsilon_:
            vals["epsilon"], vals["noise_multiplier"] = s.epsilon_, s.noise_multiplier_
        out[name] = {k: float(v) for k, v in vals.items()}
        print(f"{table} seed {seed} {name}: fidelity {vals['fidelity']:.3f} TSTR {key} {vals['tstr']:.3f} "
              f"(real {vals['trtr']:.3f}) MIA {vals['mia_auc']:.3f} {secs:.0f}s"
              + (f" noise multiplier {vals['noise_multiplier']:.2f}" if "noise_multiplier" in vals else ""),
              flush=True)
    return table, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["compare", "dp"], default="compare")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000, help="training steps of genlab's models")
    ap.add_argument("--dp-steps", type=int, default=300)
    ap.add_argument("--tables", default=",".join(TABLES))
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--gan-options", default="", help='JSON options for genlab gan, e.g. \'{"loss": "ns", "pac": 1}\' '
                    "(genlab's plain GAN instead of CTGAN's recipe)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run in this many processes of one thread each "
                    "(1: one process of two threads); small tables train faster this way on a 2-core machine")
    ap.add_argument("--out", type=Path, default=Path("runs/synth_tables.json"))
    args = ap.parse_args()
    rows: dict[str, dict[str, dict[str, list[float]]]] = {}

    def collect(table: str, out: dict) -> None:
        for name, vals in out.items():
            r = rows.setdefault(table, {}).setdefault(name, {})
            for k, v in vals.items():
                r.setdefault(k, []).append(v)
        save(rows, args)

    units = [(t, seed, args) for t in args.tables.split(",") for seed in range(args.seeds)]
    for table, out in run_units(run_seed, units, args.jobs):
        collect(table, out)
    table_out = save({t: rows[t] for t in args.tables.split(",") if t in rows}, args)  # tables in the order asked
    for t, d in table_out.items():
        print(f"\n{t}\n| synthesizer | fidelity | column shapes | pair trends | TSTR: R² or macro-F1 (real: TRTR) | "
              "DCR median (holdout) | MIA AUC | seconds |")
        for n, r in d.items():
            f = lambda k, r=r: f"{r[k][0]:.3f} ± {r[k][1]:.3f}"
            print(f"| {n} | {f('fidelity')} | {f('shapes')} | {f('pairs')} | {f('tstr')} ({r['trtr'][0]:.3f}) "
                  f"| {r['dcr'][0]:.4f} ({r['dcr_holdout'][0]:.4f}) | {f('mia_auc')} | {r['seconds'][0]:.0f} |")


if __name__ == "__main__":
    main()
