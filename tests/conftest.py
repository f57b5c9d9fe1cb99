import sys
from pathlib import Path

import pytest
import torch

from genlab.cli import main


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `genlab ARGS` in-process; return (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, *args)


ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
