"""A run's lifecycle through the CLI: what is already written is never lost or overwritten."""

from __future__ import annotations

import hashlib

from helpers import one_line_error, train_cli

from genlab.cli import fresh_dir


def _hashes(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_demo_never_writes_over_an_existing_run(tmp_path, cli):
    run = train_cli("ae", tmp_path / "run", "--data", "digits")
    before = _hashes(run)
    one_line_error(*cli("demo", "--out", run, "--steps", "2")[::2], "holds a genlab run; the demo writes only")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    one_line_error(*cli("demo", "--out", tmp_path / "other", "--steps", "2")[::2], "is not empty")
    assert _hashes(run) == before and (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_demo_default_directory_is_always_new(tmp_path):
    assert fresh_dir(tmp_path, "demo") == tmp_path / "demo"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").mkdir()
    assert fresh_dir(tmp_path, "demo") == tmp_path / "demo-3"
