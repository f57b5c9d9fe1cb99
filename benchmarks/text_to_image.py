"""Text-to-image on Fashion-MNIST: a `ddpm` with the minilm text encoder (`text=minilm`), trained for --minutes on
captions built from the class labels, then prompted with phrasings held out of training ("a pair of running
shoes" for sneakers). For each guidance weight: the protocol classifier's accuracy on the class each prompt
describes, FID/KID/precision/recall against the test split, samples/s; one grid of samples per weight. Run by hand
(2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.

    python benchmarks/text_to_image.py --minutes 15 --n 500 --out runs/t2i_fm --figures docs/img/t2i
    python benchmarks/text_to_image.py --minutes 20 --text-noise 0.5 --out runs/t2i_noise   # LAFITE's perturbation
    python benchmarks/text_to_image.py --minutes 20 --text-noise 0.5 --modifiers --out runs/t2i_mod
    python benchmarks/text_to_image.py --run runs/t2i_fm/model --n 500     # evaluate a trained run only
    python benchmarks/text_to_image.py --part encoder   # cosine of each held-out prompt to each class's captions
    python benchmarks/text_to_image.py --part step      # seconds per training step, U-Net with and without text
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
from latent_diffusion import rounded  # benchmarks/ is on the path when run as a script

import genlab
from genlab.data.captions import captions
from genlab.metrics.protocol import evaluate_samples
from genlab.report.images import save_samples


def prompted(model, prompts: list[str], per: int, guidance: float, steps: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                          float]:
    """`per` samples of each prompt (prompt k describes class k), the same noise for every prompt."""
    xs, t = [], 0.0
    for k, p in enumerate(prompts):
        s = model.generate(per, seed=k, prompt=p, labels=k, sampler="dpm++", steps=steps, guidance=guidance,
                           precision="fp32")
        xs.append(s.x)
        t += s.cost.seconds
    labels = torch.arange(len(prompts)).repeat_interleave(per)
    return torch.cat(xs), labels, t


def encoder_part() -> None:
    """The text encoder alone: for each held-out prompt, the highest cosine to any training caption of each class
    (mean-pooled, normalised tokens, as sentence-transformers pools all-MiniLM-L6-v2)."""
    from genlab.data.captions import captions as caps_of
    from genlab.text import text_encoder

    enc = text_encoder("minilm")

    def sentence(prompts):
        tokens, mask = enc(prompts)
        m = mask.float()[..., None]
        return torch.nn.functional.normalize((tokens * m).sum(1) / m.sum(1), dim=-1)

    caps = caps_of(genlab.load_dataset("fashion-mnist").spec)
    train = [sentence(list(c)) for c in caps.train]
    for k, held in enumerate(caps.held_out):
        for p in held:
            cos = [round(float((sentence([p]) @ t.T).max()), 2) for t in train]
            print(json.dumps({"class": k, "prompt": p, "nearest": int(torch.tensor(cos).argmax()), "cosine": cos}))


def step_part(repeats: int = 4) -> None:
    """Seconds per training step (forward, backward, Adam) at batch 128 of the default U-Net, without and with
    text conditioning."""
    data = genlab.load_dataset("fashion-mnist")
    x, y = data.x[:128].contiguous(memory_format=torch.channels_last), data.y[:128]
    for opts in ({}, {"text": "minilm"}):
        torch.manual_seed(0)
        model = genlab.create("ddpm", data.spec, **opts).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters())
        for i in range(repeats + 2):  # two warm-up steps
            if i == 2:
                t0 = time.perf_counter()
            loss, _ = model(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(json.dumps({**opts, "seconds_per_step": round((time.perf_counter() - t0) / repeats, 3)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("benchmark", "encoder", "step"), default="benchmark")
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--run", type=Path, help="a trained text model to evaluate (skips training)")
    ap.add_argument("--n", type=int, default=500, help="samples per row (n/10 per prompt)")
    ap.add_argument("--steps", type=int, default=10, help="DPM-Solver++ steps")
    ap.add_argument("--text-noise", type=float, default=0.0, help="the model's text_noise (LAFITE's perturbation)")
    ap.add_argument("--modifiers", action="store_true", help="caption_modifiers=true: class-neutral words in captions")
    ap.add_argument("--out", type=Path, default=Path("runs/t2i_fm"))
    ap.add_argument("--figures", type=Path, help="write a grid of samples per guidance weight here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.part != "benchmark":
        return encoder_part() if args.part == "encoder" else step_part()
    data = genlab.load_dataset("fashion-mnist")
    train: dict = {}
    if args.run is None:
        args.run = args.out / "model"
        shutil.rmtree(args.run, ignore_errors=True)
        torch.manual_seed(0)
        model = genlab.create("ddpm", data.spec, text="minilm", text_noise=args.text_noise,
                              caption_modifiers=args.modifiers)
        run = genlab.train(model, data, minutes=args.minutes, batch_size=128, out=args.run, progress=False,
                           precision="fp32")
        train = {"text_noise": args.text_noise, "caption_modifiers": args.modifiers, "steps": run.step,
                 "seconds": round(run.seconds, 1),
                 "train_images_per_s": run.history[-1]["images_per_s"]}
        print(json.dumps(train), flush=True)
    model = genlab.load(args.run)
    caps = captions(model.spec)
    per = args.n // model.spec.num_classes
    sets = {"held-out": [h[0] for h in caps.held_out], "held-out template": [h[-1] for h in caps.held_out],
            "training captions": [caps.default(k) for k in range(model.spec.num_classes)]}
    rows = []
    for name, w in (("held-out", 1.0), ("held-out", 3.0), ("held-out", 5.0), ("held-out template", 3.0),
                    ("training captions", 3.0), ("held-out", 0.0)):
        x, labels, seconds = prompted(model, sets[name], per, w, args.steps)
        m = evaluate_samples(x, "fashion-mnist", ["fid", "kid", "pr", "cls_acc"], labels=labels)["metrics"]
        k_all = model.spec.num_classes
        share = torch.tensor([[evaluate_samples(x[labels == k], "fashion-mnist", ["cls_acc"],
                                                labels=torch.full((per,), j))["metrics"]["cls_acc"]
                               for j in range(k_all)] for k in range(k_all)])  # [prompt, class]: share named j
        row = {"prompts": name, "guidance": w, "samples_per_s": round(len(x) / seconds, 2), **rounded(m),
               "cls_acc_per_prompt": [round(float(share[k, k]), 3) for k in range(k_all)],
               "most_named_class": share.argmax(1).tolist()}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if args.figures and name == "held-out":
            args.figures.mkdir(parents=True, exist_ok=True)
            pick = torch.cat([torch.arange(k * per, k * per + 8) for k in range(model.spec.num_classes)])
            save_samples(x[pick], model.spec, args.figures / f"guidance_{w:g}.png", nrow=8)
    summary = {"train": train, "rows": rows, "prompts": sets, "n": args.n, "sampler": f"dpm++ {args.steps} steps",
               "run": str(args.run), "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d")}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
