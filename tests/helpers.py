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
