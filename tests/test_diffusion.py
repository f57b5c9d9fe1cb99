"""Kind ddpm end to end: training on real data, sampling and inpainting through the CLI, and its bad inputs."""

import numpy as np
import pytest
import torch
from helpers import one_line_error, train_cli
from PIL import Image

import genlab
from genlab.metrics.scores import mode_metrics

SMALL_UNET = ["--data", "digits", "--set", "channels=16", "--set", "mults=[1,2]", "--set", "timesteps=100",
              "--set", "sample_steps=4"]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    """A small class-conditional U-Net on digits (8x8)."""
    return train_cli("ddpm", tmp_path_factory.mktemp("runs") / "cond", *SMALL_UNET, "--set", "conditional=true")


@pytest.fixture(scope="module")
def uncond_run(tmp_path_factory):
    return train_cli("ddpm", tmp_path_factory.mktemp("runs") / "uncond", *SMALL_UNET)


@pytest.mark.slow  # 30 s; docs/BENCHMARKS.md §9 measures the same on gaussians25
def test_mlp_ddpm_learns_gaussians8(tmp_path):
    """A real training run: the MLP denoiser finds all 8 modes, most samples within 3 std of one."""
    data = genlab.load_dataset("gaussians8")
    torch.manual_seed(0)
    model = genlab.create("ddpm", data, hidden=(128, 128, 128))
    run = genlab.train(model, data, steps=1500, out=tmp_path / "run", batch_size=256, progress=False, sample_every=1500)
    losses = [r["loss"] for r in run.history if "loss" in r]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:2])  # v-loss: most of it is irreducible noise (0.81 here)
    model = genlab.load(tmp_path / "run")
    x = model.sample(2500, seed=0, sampler="ddpm", steps=1000)
    res = mode_metrics(torch.as_tensor(model.spec.to_original(x)), "gaussians8")
    assert res["modes"] == 8 and res["high_quality"] > 0.7, res  # 0.805 here; other BLAS kernels differ a little


def test_sample_with_each_sampler_and_guidance(cli, cond_run, tmp_path):
    for sampler in ("ddpm", "ddim", "dpm++"):
        out = tmp_path / f"{sampler}.npz"
        code, _, err = cli("sample", cond_run, "--n", "6", "--sampler", sampler, "--steps", "5", "--guidance", "2",
                           "--label", "3", "--out", out)
        assert code == 0, err
        assert np.load(out)["x"].shape == (6, 8, 8, 1)  # uint8 images in original units
    a, b = (np.load(tmp_path / f"{s}.npz")["x"] for s in ("ddim", "dpm++"))
    assert not np.array_equal(a, b)


def test_inpaint_cli_keeps_the_known_pixels(cli, cond_run, tmp_path):
    out = tmp_path / "inpaint.npz"
    code, _, err = cli("sample", cond_run, "--inpaint", "test", "--mask", "left", "--n", "4", "--steps", "5",
                       "--resample", "2", "--label", "0", "--out", out)
    assert code == 0, err
    both = np.load(out)["x"]  # rows: the input with the hole zeroed, then the result
    test = genlab.load_dataset("digits", "test")
    known = test.spec.to_original(test.x[:4])
    assert np.array_equal(both[4:, :, 4:], known[:, :, 4:])  # right half kept exactly
    png = tmp_path / "inpaint.png"
    assert cli("sample", cond_run, "--inpaint", "test", "--n", "3", "--steps", "3", "--out", png)[0] == 0
    w, h = Image.open(png).size
    assert (w, h) == (4 * (3 * 10 + 2), 4 * (2 * 10 + 2))  # 2 rows x 3 of 8x8 images, 2-px padding, upscaled 4x


def test_edit_cli_keeps_more_of_the_input_at_low_strength(cli, cond_run, tmp_path):
    """SDEdit from the CLI: rows input, edit; a low strength stays near the input, strength 1 moves away."""
    test = genlab.load_dataset("digits", "test")
    inputs = test.spec.to_original(test.x[:8]).astype(float)
    dist = {}
    for strength in ("0.05", "1"):
        out = tmp_path / f"edit{strength}.npz"
        code, _, err = cli("sample", cond_run, "--edit", "test", "--strength", strength, "--n", "8", "--sampler",
                           "ddim", "--steps", "20", "--out", out)
        assert code == 0, err
        both = np.load(out)["x"]
        assert np.array_equal(both[:8], test.spec.to_original(test.x[:8]))
        dist[strength] = np.abs(both[8:] - inputs).mean()
    assert dist["0.05"] < dist["1"] / 3, dist
    one_line_error(*cli("sample", cond_run, "--edit", "test", "--strength", "0")[::2], "strength must be in (0, 1]")
    one_line_error(*cli("sample", cond_run, "--edit", "test", "--inpaint", "test")[::2],
                   "--inpaint and --edit are separate tasks")
    one_line_error(*cli("sample", cond_run, "--edit", tmp_path / "none.png")[::2], "no file")


def test_bad_sampling_inputs(cli, cond_run, uncond_run, tmp_path):
    one_line_error(*cli("sample", uncond_run, "--guidance", "2")[::2], "unconditional")
    one_line_error(*cli("sample", cond_run, "--label", "10")[::2], "label 10 is out of range")
    one_line_error(*cli("sample", cond_run, "--sampler", "euler")[::2], "unknown sampler 'euler'")
    one_line_error(*cli("sample", cond_run, "--steps", "0")[::2], "steps must be between 1 and")
    one_line_error(*cli("sample", cond_run, "--steps", "101")[::2], "steps must be between 1 and")
    one_line_error(*cli("sample", cond_run, "--guidance", "-1")[::2], "guidance must be >= 0")
    np.save(tmp_path / "m.npy", np.ones((5, 5)))
    one_line_error(*cli("sample", cond_run, "--inpaint", "test", "--mask", tmp_path / "m.npy")[::2],
                   "mask of shape (5, 5) does not fit")
    one_line_error(*cli("sample", cond_run, "--inpaint", tmp_path / "none.png")[::2], "no file")
    one_line_error(*cli("sample", cond_run, "--inpaint", "test", "--mask", "middle")[::2], "unknown mask 'middle'")
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "big.png")
    one_line_error(*cli("sample", cond_run, "--inpaint", tmp_path / "big.png")[::2], "shape (1, 28, 28)")


def test_inpaint_is_a_diffusion_capability(cli, tmp_path):
    out = train_cli("vae", tmp_path / "vae", "--data", "digits")
    one_line_error(*cli("sample", out, "--inpaint", "test")[::2], "vae has no inpaint; models with it: ddpm")
    one_line_error(*cli("sample", out, "--edit", "test")[::2], "vae has no edit; models with it: ddpm, ldm")
    one_line_error(*cli("sample", out, "--sampler", "ddim")[::2], "vae takes no --sampler")
