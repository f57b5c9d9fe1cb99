"""SDEdit on Fashion-MNIST: realism against faithfulness as the edit strength t grows (Meng et al. 2022, Fig. 3).

Guides: the first --n test images turned into coarse "paintings" (7x7 block averages, 4 grey levels, upsampled
with nearest neighbours): the kind of input SDEdit turns into a realistic image. Each is edited by a trained ddpm
run at several strengths (DDIM, 50 steps over the whole chain). Realism: FID/KID/precision/recall of the edits
against the test split (the protocol's extractor). Faithfulness: the RMS difference, in [-1, 1] pixel units,
between the edit's 7x7 block averages and the guide's (what the painting asked for), and between the edit and the
image the guide was made from. Rows for the guides themselves and for plain samples frame the trade-off. Run by
hand (2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.

    genlab train ddpm --data fashion-mnist --minutes 10 --out runs/teacher     # or any trained ddpm run
    python benchmarks/sdedit.py --run runs/teacher --n 500 --out runs/sdedit.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from latent_diffusion import rounded  # benchmarks/ is on the path when run as a script

import genlab
from genlab.io import atomic_write_json
from genlab.metrics.protocol import draw_samples, evaluate_samples
from genlab.report.images import save_samples

STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)


def paint(x: torch.Tensor, block: int = 4, levels: int = 4) -> torch.Tensor:
    """Coarse paintings of model-space images (N, 1, 28, 28): block averages quantised to `levels` grey levels."""
    coarse = F.avg_pool2d(x, block)
    q = torch.round((coarse + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1
    return F.interpolate(q, scale_factor=block, mode="nearest")


def row(name: str, x: torch.Tensor, guides: torch.Tensor, originals: torch.Tensor, **extra) -> dict:
    m = evaluate_samples(x, "fashion-mnist", ["fid", "kid", "pr"])["metrics"]
    rms = lambda a, b: float((a - b).pow(2).mean().sqrt())
    r = {"row": name, **extra, "rms_to_guide_7x7": round(rms(F.avg_pool2d(x, 4), F.avg_pool2d(guides, 4)), 4),
         "rms_to_original": round(rms(x, originals), 4), **rounded(m)}
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True, help="a trained ddpm run on fashion-mnist")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("runs/sdedit.json"))
    ap.add_argument("--figure", type=Path, default=Path("docs/img/sdedit_strengths.png"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = genlab.load(args.run)
    test = genlab.load_dataset("fashion-mnist", "test")
    originals = test.x[: args.n]
    guides = paint(originals)
    rows = [row("guides (strength 0)", guides, guides, originals)]
    result = {"machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d"),
              "run": str(args.run), "n": args.n, "steps": args.steps, "rows": rows}
    shown = [guides[:10]]
    for s in STRENGTHS:
        t0 = time.perf_counter()
        x = torch.cat([model.edit(guides[i:i + 250], s, seed=i, sampler="ddim", steps=args.steps)
                       for i in range(0, args.n, 250)])
        secs = time.perf_counter() - t0
        rows.append(row(f"SDEdit t = {s}", x, guides, originals, strength=s,
                        images_per_s=round(args.n / secs, 2)))
        shown.append(x[:10])
        atomic_write_json(args.out, result)
    s = draw_samples(model, args.n, seed=0, batch_size=250, precision="fp32", sampler="ddim", steps=args.steps)
    rows.append(row("samples (no guide)", s.x, guides, originals))
    atomic_write_json(args.out, result)
    save_samples(torch.cat(shown), model.spec, args.figure, nrow=10)
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
