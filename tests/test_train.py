"""The training loop: falling loss, exact resume, checkpoints, and 2-process DDP (gloo) under torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.toy_likelihood import ToyLikelihood
from zoo.train.trainer import TrainConfig, Trainer, parse_overrides, split_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_data(train_dir, tmp_path_factory) -> Path:
    """Five training utterances (symlinked) to keep the tests quick."""
    folder = tmp_path_factory.mktemp("data")
    for p in sorted(train_dir.glob("*.wav"))[:5]:
        (folder / p.name).symlink_to(p)
    return folder


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=2, segment_length=2048, lr=5e-3, val_every=4, ckpt_every=4, log_every=1,
                val_files=1, seed=3, deterministic=True)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_loss_falls_and_artifacts_written(small_data, tmp_path):
    torch.manual_seed(0)
    model = ToyLikelihood()
    trainer = Trainer(model, small_data, tmp_path / "run", _cfg(steps=40, lr=2e-2, val_every=20, ckpt_every=20),
                      progress=False)
    first = trainer.train_step()["loss"]
    trainer.fit()
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    train_losses = [float(r["value"]) for r in rows if r["split"] == "train" and r["name"] == "loss"]
    assert train_losses[-1] < first - 0.05, (first, train_losses[-5:])
    assert any(r["split"] == "val" for r in rows)
    assert (tmp_path / "run" / "samples" / "step_00000040.wav").is_file()
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step_00000040"


def test_resume_is_exact(small_data, tmp_path):
    torch.manual_seed(0)
    straight = ToyLikelihood()
    Trainer(straight, small_data, tmp_path / "a", _cfg(), progress=False).fit()

    torch.manual_seed(0)
    half = ToyLikelihood()
    Trainer(half, small_data, tmp_path / "b", _cfg(), progress=False).fit(steps=4)
    torch.manual_seed(99)  # a different process state: resume must restore everything itself
    resumed = ToyLikelihood()
    trainer = Trainer(resumed, small_data, tmp_path / "b", _cfg(), progress=False)
    assert trainer.resume() and trainer.step == 4
    trainer.fit()
    for a, b in zip(_weights(straight), _weights(resumed), strict=True):
        assert torch.equal(a, b), "N steps and N/2 + resume + N/2 must give identical weights"


def test_overrides_split_model_and_train():
    data = parse_overrides(["lr=1e-3", "channels=8", "train.steps=5", "mel.n_mels=40"])
    model, train = split_config(ToyLikelihood.config_class, data)
    assert train == {"lr": 1e-3, "steps": 5}
    assert model == {"channels": 8, "mel": {"n_mels": 40}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_torchrun_two_processes_gloo(small_data, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "tests" / "helpers" / "ddp_train.py"), str(small_data), str(tmp_path / "run"), str(report)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r0 = json.loads((report / "rank0.json").read_text())
    r1 = json.loads((report / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # Each rank trains on its own shard, so equal weights at the end show the gradients were synchronised
    # (without the all-reduce, ranks stepping on different batches drift apart).
    assert r0["first_batch"] != r1["first_batch"], "the ranks must see different data (DistributedSampler)"
    assert r0["digest"] == r1["digest"], "both ranks must hold identical weights after DDP training"
    assert all(s is not None for s in r0["saved"]) and len(r0["saved"]) == 2
    assert r1["saved"] == [None, None], "only rank 0 writes checkpoints"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == ["step_00000003",
                                                                                         "step_00000006"]


def test_torchrun_bulk_vocoding_shards_files(tmp_path, eval_dir):
    """`zoo vocode DIR -o OUT` under torchrun: every file vocoded exactly once across the ranks."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in sorted(eval_dir.glob("*.wav"))[:5]:
        (inputs / p.name).symlink_to(p)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "zoo.cli",
         "vocode", str(inputs), "-o", str(out), "--model", "griffinlim"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in inputs.iterdir())
    written = [line for line in proc.stderr.splitlines() if ".wav  (" in line]
    assert len(written) == 5, "each file is vocoded by exactly one rank"


def test_feature_cache_entries_are_whole_or_recomputed(tmp_path):
    """The mel cache is written aside and renamed (torchrun ranks share it); an entry cut short by a killed
    run is recomputed, not a crash."""
    from zoo.core.mel import MelConfig
    from zoo.train.data import SegmentDataset

    clip = Path(__file__).resolve().parents[1] / "examples" / "LJ001-0001.wav"
    mel = MelConfig.preset("hifigan")
    cache = tmp_path / "cache"
    first = SegmentDataset([clip], mel, 8192, cache_dir=cache)
    entries = list(cache.iterdir())
    assert len(entries) == 1 and entries[0].suffix == ".pt"
    entries[0].write_bytes(entries[0].read_bytes()[:100])
    again = SegmentDataset([clip], mel, 8192, cache_dir=cache)
    assert torch.equal(again.utterances[0].mel, first.utterances[0].mel)
    assert [p.name for p in cache.iterdir()] == [entries[0].name]
