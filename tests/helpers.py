"""Helpers shared by the CLI tests."""

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
