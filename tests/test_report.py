"""`genlab report`: the latent-space view (against scikit-learn's PCA) and the families' diagnostics (the
diffusion loss by timestep against the forward process written out by hand)."""

import json

import html5lib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genlab
from genlab.report.figures import model_figures, project_2d
from genlab.report.html import write_report

from .helpers import render_in_chromium


def test_projection_equals_sklearn_pca():
    from sklearn.decomposition import PCA

    z = torch.randn(300, 6, generator=torch.Generator().manual_seed(0)) * torch.tensor([5.0, 3, 1, 1, 0.5, 0.1])
    p, var = project_2d(z)
    ref = PCA(2).fit(z.numpy().astype(np.float64))
    want = ref.transform(z.numpy().astype(np.float64))
    assert np.allclose(np.abs(p.numpy()), np.abs(want), atol=1e-6)  # each axis up to its sign
    assert np.allclose(var, ref.explained_variance_ratio_, atol=1e-9)


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A small VAE on digits, in a directory whose name a page must escape."""
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("report") / "vae<i>"
    genlab.train(genlab.create("vae", data.spec, latent_dim=4, channels=(8, 16)), data, steps=40, batch_size=64,
                 progress=False, out=run)
    return run


def test_vae_report_has_the_latent_view_and_the_kl_bars(vae_run):
    run = vae_run
    paths = model_figures(run)
    assert run / "figures" / "latent.png" in paths
    html = write_report(run).read_text()
    assert 'alt="latent"' in html and "Training curves" in html
    from genlab.models import VAE
    from genlab.report.html import diagnostic_bars
    from genlab.runs import RunDir

    history = RunDir(run).history
    ((caption, bars),) = diagnostic_bars(history, VAE.diagnostic_plots)  # what the report draws under the curves
    last = [r["kl_per_dim"] for r in history if "kl_per_dim" in r][-1]
    assert caption.startswith("KL per latent dimension") and bars == sorted(last, reverse=True) and len(bars) == 4
    html5lib.HTMLParser(strict=True).parse(html)  # no parse error anywhere


def test_report_renders_in_chromium_offline_and_escaped(vae_run):
    model_figures(vae_run)
    page = write_report(vae_run)
    dom, console, images, broken = render_in_chromium(page)
    assert console == []  # no script errors, no failed loads
    assert images >= 3 and broken == 0  # samples, curves, latent view: every one decoded
    assert "<table" in dom and "vae&lt;i&gt;" in dom and "<i>" not in dom.split("<body", 1)[1]


def test_ddpm_logs_its_loss_by_timestep_as_the_forward_process_gives_it(tmp_path):
    data = genlab.load_dataset("digits")
    torch.manual_seed(0)
    run = tmp_path / "ddpm"
    genlab.train(genlab.create("ddpm", data.spec, channels=8, mults=(1, 2), timesteps=50, schedule="linear",
                               target="eps"), data,
                 steps=16,
                 batch_size=32, progress=False, out=run, precision="fp32", sample_every=16)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r["loss_by_t"] for r in rows if "loss_by_t" in r]
    assert logged and all(len(v) == 10 for v in logged)
    model = genlab.load(run, weights="model")
    x = data.x[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:64]]  # the Trainer's batch
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    betas = torch.linspace(2e-3, 0.4, 50, dtype=torch.float64)  # Ho et al. 2020's 1e-4..0.02, scaled by 1000/T
    abar = torch.cumprod(1 - betas, 0)
    want = []
    with torch.no_grad():
        for t in [2, 7, 12, 17, 22, 27, 32, 37, 42, 47]:  # (k + 0.5) * 50 / 10
            a = abar[t].float()
            xt = a.sqrt() * x + (1 - a).sqrt() * noise
            pred = model.net(xt, torch.full((64,), t), None)
            want.append(float(F.mse_loss(pred.float(), noise)))
    assert model.config.target == "eps"
    assert logged[-1] == pytest.approx(want, rel=1e-3, abs=1e-5)
    assert min(want[:3]) < 1.2 and max(want) < 5  # the loss at each level is an MSE on unit-variance noise
