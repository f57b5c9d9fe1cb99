"""Streamed image folders: the same items, batches, weights and resume as in-memory data; clear read errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import genlab
from genlab.data import GenDataset, stream
from genlab.data.stream import FolderStream
from genlab.errors import GenlabError
from genlab.training import trainer as trainer_mod
from genlab.training.batches import BatchOrder, StreamedBatches
from genlab.training.trainer import TrainConfig, Trainer

from .helpers import FAST, one_line_error

OPTS = dict(batch_size=64, lr=3e-3, warmup_steps=2, seed=3, progress=False, log_every=1, sample_every=3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """300 seeded 8x8 grey PNGs, 150 per class: bright blobs ('blob') and faint noise ('noise')."""
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:8, :8]
    for c in ("blob", "noise"):
        (root / c).mkdir()
        for i in range(150):
            if c == "blob":
                cy, cx = rng.uniform(1, 6, 2)
                img = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3) + rng.normal(0, 8, (8, 8))
            else:
                img = rng.normal(60, 25, (8, 8))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / c / f"{i:03d}.png")
    return root


def _both(folder, split="train"):
    return (genlab.load_dataset(f"folder:{folder}", split, stream="false"),
            genlab.load_dataset(f"folder:{folder}:stream=true", split))


def test_streamed_items_spec_and_split_equal_in_memory(folder):
    for split in ("train", "test"):
        mem, st = _both(folder, split)
        assert isinstance(st, FolderStream) and not isinstance(mem, FolderStream)
        assert st.spec == mem.spec and st.spec.class_names == ["blob", "noise"] and len(st) == len(mem)
        assert torch.equal(st.y, mem.y)
        x, y = st.take(torch.arange(len(st)))
        assert torch.equal(x, mem.x) and torch.equal(y, mem.y)
    with pytest.raises(GenlabError, match="streams from disk"):
        _ = st.x
    # the protocol's reference data goes through take() in chunks: same numbers
    from genlab.metrics.protocol import reference_features

    feats, _ = reference_features(f"folder:{folder}:stream=true", "test")
    assert torch.equal(feats, mem.x.flatten(1))


def test_stream_rule(folder, monkeypatch):
    assert isinstance(genlab.load_dataset(f"folder:{folder}"), GenDataset)  # small: in memory
    monkeypatch.setattr(stream, "STREAM_BYTES", 300 * 64 * 4 - 1)  # 300 grey 8x8 float32 images pass it
    assert isinstance(genlab.load_dataset(f"folder:{folder}", size=8), FolderStream)
    with pytest.raises(GenlabError, match="data.stream must be auto, true or false"):
        genlab.load_dataset(f"folder:{folder}", stream="maybe")


def test_streamed_batches_equal_in_memory_batches_step_by_step(folder, tmp_path):
    mem, st = _both(folder)
    cfg = TrainConfig(steps=10, **OPTS, workers=2)
    trainers = []
    for i, ds in enumerate((mem, st)):
        torch.manual_seed(0)
        model = genlab.create("ae", ds.spec, latent_dim=2, channels=(4, 8))
        trainers.append(Trainer(model, ds, cfg, tmp_path / str(i), {}, resume=False))
    a, b = trainers
    assert a.steps_per_epoch == 4 and not a.streams and b.streams
    for _ in range(10):  # two and a half epochs
        (xa, ya), (xb, yb) = a._batch(), b._batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xb.is_contiguous(memory_format=torch.channels_last)
    b.close()
    # one DDP process's shard, from a draw in the middle (where a resumed run starts)
    order = BatchOrder(len(st), 64, seed=5, rank=1, world=2)
    batches = StreamedBatches(st, order, start=6, workers=0, pin=False, seed=5)
    for draw in range(6, 11):
        x, y = batches.next()
        idx = order.indices(draw)
        assert len(idx) == 32 and torch.equal(x, mem.x[idx]) and torch.equal(y, mem.y[idx])
    batches.close()


def _train(ds, out, steps=6, resume=False, **kw):
    torch.manual_seed(0)
    model = genlab.create("vae", ds.spec, latent_dim=2, channels=(4, 8))
    genlab.train(model, ds, steps=steps, out=out, resume=resume, **{**OPTS, **kw})
    return model.state_dict()


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _logs(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s")} for r in rows]


def test_streamed_training_with_workers_equals_in_memory_bitwise(folder, tmp_path):
    mem, st = _both(folder)
    wm = _train(mem, tmp_path / "mem", workers=0)
    ws = _train(st, tmp_path / "stream", workers=2)
    assert _same(wm, ws)
    assert _logs(tmp_path / "mem") == _logs(tmp_path / "stream")  # losses and diagnostics (diag batch via take)


class _Killed(Exception):
    pass


def test_streamed_resume_after_interruption_is_exact(folder, tmp_path, monkeypatch):
    _, st = _both(folder)
    whole = _train(st, tmp_path / "whole", checkpoint_every=3)
    save = Trainer.save_checkpoint

    def save_then_die(self):
        save(self)
        if self.step == 3:
            raise _Killed  # as if the process died right after its step-3 checkpoint

    monkeypatch.setattr(trainer_mod.Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _train(st, tmp_path / "cut", checkpoint_every=3)
    monkeypatch.setattr(trainer_mod.Trainer, "save_checkpoint", save)
    resumed = _train(st, tmp_path / "cut", resume=True, checkpoint_every=3)
    assert _same(whole, resumed)
    assert _logs(tmp_path / "whole") == _logs(tmp_path / "cut")


def _copies(folder, dest, n=80):
    dest.mkdir()
    for i in range(n):
        (dest / f"{i:03d}.png").write_bytes((folder / "blob" / f"{i:03d}.png").read_bytes())
    return dest


def test_unreadable_streamed_images_are_one_line_errors_naming_the_file(folder, tmp_path, cli):
    bad = _copies(folder, tmp_path / "bad")
    (bad / "zz-broken.png").write_bytes(b"\x89PNG not really")
    ds = genlab.load_dataset(f"folder:{bad}:stream=true")  # only the first image is read at load time
    assert ds.names[-1] == b"zz-broken.png"  # in the train split (the seeded split puts the last file there)
    with pytest.raises(GenlabError, match="cannot read image .*zz-broken.png"):
        ds.take(torch.arange(len(ds)))
    one_line_error(*cli("train", "ae", "--data", f"folder:{bad}:stream=true", *FAST,
                        "--out", tmp_path / "r1")[::2], "zz-broken.png")  # raised in a DataLoader worker
    mixed = _copies(folder, tmp_path / "mixed")
    Image.new("L", (16, 8), 9).save(mixed / "zz-wide.png")
    for workers in (0, 2):  # read here, or in a worker
        code, _, err = cli("train", "ae", "--data", f"folder:{mixed}:stream=true", *FAST, "--set",
                           f"train.workers={workers}", "--out", tmp_path / f"w{workers}")
        one_line_error(code, err, "zz-wide.png is 16x8")
        assert "mixed image sizes" in err
    ok = genlab.load_dataset(f"folder:{mixed}:stream=true", size=8)  # resized on read: every image fits
    assert ok.take(torch.arange(len(ok)))[0].shape == (len(ok), 1, 8, 8)
