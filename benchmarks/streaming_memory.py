"""Peak memory and speed of `genlab train` on an image folder, streamed (DataLoader workers) or in memory.

Writes N seeded 28x28 grey PNGs ("digits-like" blobs, 10 class folders) under --dir (reused when present), then
runs `genlab train vae --data folder:DIR:stream=... --steps S --batch-size 128` in a subprocess per mode, and
samples the resident memory of its process tree (the trainer and its DataLoader workers) every 0.1 s. It reports
the peak of the summed RSS (a page shared by the forked workers counts once per process, so this overstates),
the peak of the summed PSS (shared pages split between the processes that map them) and the trainer's own peak
RSS, with the training steps/s from the run's metrics.jsonl (time spent training, data waits included, side
work such as sample grids excluded) and the wall-clock seconds of the whole command (loading included). With
--repeats R the modes alternate R times: the largest memory peaks, the median speed and wall time are reported.

    python benchmarks/streaming_memory.py --dir /tmp/genlab-stream --n 10000 100000 [--steps 200] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = {"memory": ("false", 0), "stream-w0": ("true", 0), "stream-w2": ("true", 2)}


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    """n 28x28 grey PNGs in folder/0 ... folder/9: a bright blob whose place is set by the class, a fainter one
    anywhere, and noise. Reused when folder/.complete says it holds n images."""
    from PIL import Image

    done = folder / ".complete"
    if done.is_file() and done.read_text().strip() == str(n):
        return folder
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28].astype(np.float32)
    for c in range(10):
        (folder / str(c)).mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 1000):
        m = min(1000, n - start)
        labels = np.arange(start, start + m) % 10
        angle = 2 * np.pi * labels / 10 + rng.normal(0, 0.2, m)
        cy, cx = 14 + 7 * np.sin(angle), 14 + 7 * np.cos(angle)
        oy, ox = rng.uniform(5, 23, (2, m))
        s1, s2 = rng.uniform(2, 4, m), rng.uniform(1.5, 3, m)
        blob = lambda y, x, s: np.exp(-((yy - y[:, None, None]) ** 2 + (xx - x[:, None, None]) ** 2)
                                      / (2 * s[:, None, None] ** 2))
        img = 230 * blob(cy, cx, s1) + 120 * blob(oy, ox, s2) + rng.normal(0, 10, (m, 28, 28))
        img = np.clip(img, 0, 255).astype(np.uint8)
        for i in range(m):
            Image.fromarray(img[i]).save(folder / str(labels[i]) / f"{start + i:06d}.png")
    done.write_text(str(n))
    return folder


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run cmd; return peak summed RSS and PSS of its process tree and its own peak RSS (MiB), wall seconds."""
    peak = {"rss_sum": 0, "pss_sum": 0, "rss_main": 0, "procs": 0}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            pids = _tree(proc.pid)
            rss = [_kib(f"/proc/{p}/status", "VmRSS:") for p in pids]
            pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
            peak.update(rss_sum=max(peak["rss_sum"], sum(rss)), pss_sum=max(peak["pss_sum"], pss),
                        rss_main=max(peak["rss_main"], rss[0]), procs=max(peak["procs"], len(pids)))
            stop.wait(0.1)

    t0 = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{output}")
    return {**{k: v / 1024 for k, v in peak.items() if k != "procs"}, "procs": peak["procs"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="where the PNG folders go (outside the repository)")
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--repeats", type=int, default=1, help="alternate the modes this many times")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    for n in args.n:
        t0 = time.perf_counter()
        folder = make_images(args.dir / f"pngs-{n}", n)
        print(f"{n} images in {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
        for _ in range(args.repeats):
            for mode in args.modes:
                stream, workers = MODES[mode]
                with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
                    cmd = [sys.executable, "-m", "genlab", "train", "vae", "--data",
                           f"folder:{folder}:stream={stream}", "--steps", str(args.steps), "--batch-size",
                           str(args.batch_size), "--no-progress", "--set", f"train.workers={workers}",
                           "--out", f"{tmp}/run"]
                    res = measure(cmd, env)
                    last = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[-1])
                res["steps_per_s"] = args.steps / last["time"]
                runs[mode].append(res)
                print(f"n={n:>7} {mode:<9} peak RSS sum {res['rss_sum']:7.0f} MiB  PSS sum {res['pss_sum']:7.0f} MiB  "
                      f"trainer RSS {res['rss_main']:7.0f} MiB  processes {res['procs']}  "
                      f"{res['steps_per_s']:.2f} steps/s  wall {res['wall_s']:.0f} s  load {os.getloadavg()[0]:.1f}",
                      flush=True)
        for mode, rs in runs.items():
            rows.append((n, mode, {**{k: max(r[k] for r in rs) for k in ("rss_sum", "pss_sum", "rss_main")},
                                   **{k: statistics.median(r[k] for r in rs) for k in ("steps_per_s", "wall_s")}}))
    print("\n| images | mode | peak RSS, sum (MiB) | peak PSS, sum (MiB) | trainer peak RSS (MiB) | steps/s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for n, mode, r in rows:
        print(f"| {n:,} | {mode} | {r['rss_sum']:.0f} | {r['pss_sum']:.0f} | {r['rss_main']:.0f} | "
              f"{r['steps_per_s']:.2f} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
