"""Seeded samples of a few-step run of every kind and every diffusion sampler, recorded once and held bitwise.

A refactor of the seams (run directories, sampling options, diffusion components, the trainer) must not change
what a seeded run produces on CPU. `tests/data/golden.npz` holds the samples each case gave when recorded; to
record them again after an intended change of behaviour: `python tests/test_golden.py --record [RUN ...]` (the
named runs only, or all). Recorded again since: gan-gaussians8 (its training defaults became the 2-D mixture
recipe: lr 1e-3 with cosine decay; again when minibatch std took Karras et al.'s 1e-8 under the root, in float32:
at most 2.6e-6 apart); ddpm-digits and ddpm-digits-cond (samples are clipped to the data's range
[-1, 1]: every new array equals np.clip of the old one). Every case trains and samples in float32
(precision=fp32, which the default `auto` is not on a CPU with native bfloat16), as when they were recorded.

Bitwise holds only on the CPU kernel set the samples were recorded with (torch's AVX512 kernels; the file says
which): AVX2 kernels round differently (seen: at most 2.6e-8 apart on samples in [-1, 1], 3.8e-6 for CycleGAN,
whose instance norms amplify rounding). On another kernel set the samples must agree to 2e-5: a changed default,
seed use, clip or loss moves them further; a change below that shows only on the recording kernels.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "golden.npz"
KERNELS = "_kernels"  # the entry naming torch's CPU kernel set the samples were recorded with
TOLERANCE = 2e-5  # on another kernel set: 5x the largest difference seen between AVX512 and AVX2 kernels

# kind, data, model options, training options, cases: name -> sampling call on the loaded model
RUNS = {
    "ae-digits": ("ae", "digits", {"latent_dim": 4, "channels": (8, 16)}, {}),
    "dae-digits": ("dae", "digits", {"latent_dim": 4, "channels": (8, 16)}, {}),
    "vae-digits-cond": ("vae", "digits", {"latent_dim": 4, "channels": (8, 16), "conditional": True}, {}),
    "vae-moons": ("vae", "moons", {"latent_dim": 2}, {}),
    "ddpm-digits": ("ddpm", "digits", {"channels": 8, "mults": (1, 2), "timesteps": 50}, {}),
    "ddpm-digits-cond": ("ddpm", "digits", {"channels": 8, "mults": (1, 2), "timesteps": 50,
                                             "conditional": True}, {}),
    "ddpm-moons": ("ddpm", "moons", {"hidden": (32, 32), "timesteps": 100}, {}),
    "gan-digits": ("gan", "digits", {"latent_dim": 8, "channels": (16, 8)}, {}),
    "gan-gaussians8": ("gan", "gaussians8", {"latent_dim": 2, "hidden": (32, 32), "minibatch_std": True}, {}),
    "cyclegan-digits": ("cyclegan", "digits", {"target": "digits", "channels": 4, "d_channels": 4,
                                                "res_blocks": 1}, {"batch_size": 8}),
}


def _cases(run: str, model) -> dict[str, torch.Tensor]:
    kind = run.split("-")[0]
    s = functools.partial(model.sample, precision="fp32")
    if kind == "ddpm":
        out = {f"{sampler}": s(6, seed=3, sampler=sampler, steps=5) for sampler in ("ddpm", "ddim", "dpm++")}
        out["ddim-eta"] = s(6, seed=3, sampler="ddim", steps=7, eta=0.5)
        if model.config.conditional:
            out["guided"] = s(6, seed=3, sampler="dpm++", steps=4, guidance=2.0, labels=[0, 1, 2, 3, 4, 5])
            out["uncond"] = s(6, seed=3, sampler="ddim", steps=4, guidance=0.0)
        if model.spec.is_image:
            from genlab.data import load_dataset

            x = load_dataset("digits", "test").x[:3]
            mask = torch.zeros(8, 8)
            mask[2:6, 2:6] = 1
            out["inpaint"] = model.inpaint(x, mask, seed=3, steps=4, resample=2, **(
                {"labels": 1} if model.config.conditional else {}))
        return out
    if kind == "gan" and not model.spec.is_image:
        return {"default": s(6, seed=3), "drs": s(6, seed=3, drs=50)}
    if kind == "vae" and model.config.conditional:
        return {"default": s(6, seed=3), "label": s(6, seed=3, labels=7)}
    return {"default": s(6, seed=3)}


def produce(run: str, out_dir: Path) -> dict[str, np.ndarray]:
    import genlab

    kind, data_name, opts, train_opts = RUNS[run]
    data = genlab.load_dataset(data_name)
    torch.manual_seed(0)
    model = genlab.create(kind, data.spec, **opts)
    genlab.train(model, data, steps=3, out=out_dir / run, progress=False,
                 **{"batch_size": 32, "seed": 0, "precision": "fp32", **train_opts})
    loaded = genlab.load(out_dir / run)
    return {f"{run}/{case}": x.detach().cpu().numpy() for case, x in _cases(run, loaded).items()}


@pytest.mark.parametrize("run", list(RUNS))
def test_seeded_samples_are_bitwise_as_recorded(run, tmp_path):
    torch.set_num_threads(1)  # one thread: reductions in one fixed order
    recorded = np.load(GOLDEN)
    bitwise = str(recorded[KERNELS]) == torch.backends.cpu.get_cpu_capability()
    got = produce(run, tmp_path)
    for key, x in got.items():
        assert key in recorded, f"no recorded samples for {key}"
        want = recorded[key]
        assert x.shape == want.shape and x.dtype == want.dtype, (key, x.shape, want.shape)
        diff = float(np.abs(x.astype(np.float64) - want).max())
        if bitwise:
            assert np.array_equal(x, want), f"{key}: samples differ from the recorded ones (max |diff| {diff:.3g})"
        else:
            assert diff <= TOLERANCE, (f"{key}: samples differ from the ones recorded with {recorded[KERNELS]} "
                                       f"kernels by {diff:.3g} (> {TOLERANCE})")


def record(runs: list[str]) -> None:
    torch.set_num_threads(1)
    arrays: dict[str, np.ndarray] = dict(np.load(GOLDEN)) if runs and GOLDEN.is_file() else {}
    with tempfile.TemporaryDirectory() as d:
        for run in runs or RUNS:
            arrays.update(produce(run, Path(d)))
            print(run, "recorded")
    if runs and str(arrays.get(KERNELS)) != torch.backends.cpu.get_cpu_capability():
        sys.exit(f"the file was recorded with {arrays.get(KERNELS)} kernels and this CPU uses "
                 f"{torch.backends.cpu.get_cpu_capability()}: record all runs (no names), not some")
    arrays[KERNELS] = np.array(torch.backends.cpu.get_cpu_capability())
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **arrays)
    print(f"wrote {len(arrays)} arrays to {GOLDEN}")


if __name__ == "__main__":
    if "--record" in sys.argv:
        record(sys.argv[sys.argv.index("--record") + 1:])
