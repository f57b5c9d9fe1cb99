"""Helpers shared by the tests."""

FAST = ["--steps", "30", "--batch-size", "64", "--no-progress"]


def one_line_error(code, err, pattern):
    """The contract for bad input: exit code 2 and exactly one line on stderr that names the problem."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("genlab: error: "), err
    assert pattern in lines[0], lines[0]


def train_cli(kind: str, out, *args: str):
    """`genlab train KIND ARGS --out OUT` in-process with the fast options; fails the test if it fails."""
    from genlab.cli import main

    try:
        main(["train", kind, *args, *FAST, "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None), f"genlab train {kind} exited with {e.code}"
    return out


def gaussian_posterior_on_a_grid(xt: float, x0: float, ratio: float, a_prev: float) -> tuple[float, float]:
    """Mean and variance of p(x_s | x_t, x0) ∝ N(x_t; sqrt(ratio) x_s, 1 - ratio) N(x_s; sqrt(a_prev) x0, 1 - a_prev),
    normalised numerically on a fine grid (Bayes' rule, independent of the closed form). ratio = abar_t / abar_s."""
    import math

    import numpy as np

    grid = np.linspace(-8, 8, 400_001)
    logp = (-(xt - math.sqrt(ratio) * grid) ** 2 / (2 * (1 - ratio))
            - (grid - math.sqrt(a_prev) * x0) ** 2 / (2 * (1 - a_prev)))
    w = np.exp(logp - logp.max())
    w /= w.sum()
    m = float((w * grid).sum())
    return m, float((w * (grid - m) ** 2).sum())


CHROMIUM = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# Run after the page has loaded: how many images it has and how many did not decode, written where --dump-dom shows it.
_PROBE = ("<script>addEventListener('load', () => document.body.setAttribute('data-probe', "
          "document.images.length + ' ' + [...document.images].filter(i => !i.naturalWidth).length));</script>")


def render_in_chromium(page) -> tuple[str, list[str], int, int]:
    """Load an HTML file in headless Chromium with every host unreachable; returns (the DOM after load, console
    messages, images, images that did not decode). Skips the test where no Chromium is installed (Debian:
    `apt-get install chromium-headless-shell`)."""
    import re
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import pytest

    exe = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    if exe is None:
        pytest.skip("no headless Chromium installed (Debian: apt-get install chromium-headless-shell)")
    html = Path(page).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "page.html"  # the page as written, with the probe added before </body>
        probed.write_text(html.replace("</body>", _PROBE + "</body>") if "</body>" in html else html + _PROBE)
        out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                              "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp}/profile",
                              "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    console = [ln for ln in out.stderr.splitlines() if ":CONSOLE" in ln]
    probe = re.search(r'data-probe="(\d+) (\d+)"', out.stdout)
    assert probe, "the page never finished loading"
    return out.stdout, console, int(probe.group(1)), int(probe.group(2))
