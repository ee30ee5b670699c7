"""``zoo train`` and ``zoo distill`` write TensorBoard event files that TensorBoard's own reader loads: loss
terms, learning rate and samples/s, and at validation the clips' audio, spectrograms beside the originals'
and STOI/PESQ (the quality extra is installed with the test extra)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers.toy_likelihood import ToyLikelihood
from tests.test_train import small_data  # noqa: F401, F811 - the fixture: five training utterances
from zoo.train.trainer import TrainConfig, Trainer


def _events(run: Path) -> EventAccumulator:
    assert list(run.glob("events.out.tfevents.*")), "no event file in the run folder"
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    acc.Reload()
    return acc


def test_train_writes_tensorboard_events(small_data, tmp_path):  # noqa: F811
    torch.manual_seed(0)
    model = ToyLikelihood()
    cfg = TrainConfig(steps=4, batch_size=2, segment_length=2048, lr=5e-3, val_every=2, ckpt_every=4, log_every=1,
                      val_files=1, seed=3, sample_seconds=0.5)
    run = tmp_path / "run"
    Trainer(model, small_data, run, cfg, progress=False).fit()
    acc = _events(run)
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/samples_per_s", "val/loss", "val/stoi", "val/pesq_wb"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    loss = [e.value for e in acc.Scalars("train/loss")]
    csv_loss = [float(r["value"]) for r in csv.DictReader((run / "metrics.csv").open())
                if r["split"] == "train" and r["name"] == "loss"]
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert loss == pytest.approx(csv_loss, rel=1e-4)  # the same numbers as metrics.csv
    assert acc.Scalars("train/lr")[0].value == pytest.approx(5e-3)
    assert all(e.value > 0 for e in acc.Scalars("train/samples_per_s"))
    assert [e.step for e in acc.Scalars("val/stoi")] == [2, 4]
    assert all(0 <= e.value <= 1 for e in acc.Scalars("val/stoi"))
    assert all(1 <= e.value <= 4.65 for e in acc.Scalars("val/pesq_wb"))

    assert {"val/clip0/generated", "val/clip0/original"} <= set(tags["audio"])
    gen = acc.Audio("val/clip0/generated")
    assert [e.step for e in gen] == [2, 4]
    assert gen[0].sample_rate == 22050 and gen[0].content_type == "audio/wav"
    n = int(0.5 * 22050) // 256 * 256
    assert len(gen[0].encoded_audio_string) >= 2 * n  # 16-bit wav of the half-second clip
    assert len(acc.Audio("val/clip0/original")) == 1  # the recording, logged once

    images = acc.Images("val/clip0/spectrogram")
    assert [e.step for e in images] == [2, 4]
    frames = n // 256 + 1  # the spectrogram's frames (hop 256, centred)
    assert images[0].width == 2 * frames + 4 and images[0].height > 100  # original | gap | generated
    assert images[0].encoded_image_string.startswith(b"\x89PNG")


def test_distill_writes_tensorboard_events(tmp_path, train_dir):
    from zoo_plugins.parallel_wavenet.distill import DistillConfig, Distiller, student_for_teacher

    from tests.test_parallel_wavenet_distill import tiny_teacher

    data = tmp_path / "wavs"
    data.mkdir()
    for p in sorted(train_dir.glob("*.wav"))[:2]:
        (data / p.name).symlink_to(p)
    teacher = tiny_teacher()
    student = student_for_teacher(teacher, flow_layers=(2, 2), dilation_cycle=2, residual_channels=4,
                                  gate_channels=8, skip_channels=4, front_kernel_size=4)
    cfg = DistillConfig(steps=4, batch_size=1, segment_length=2304, log_every=2, save_every=2)
    Distiller(student, teacher, cfg).fit(data, tmp_path / "out", verbose=False)
    acc = _events(tmp_path / "out")
    scalars = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/kl", "train/lr", "train/samples_per_s", "val/stoi", "val/pesq_wb"} <= scalars
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert {"val/clip0/generated", "val/clip1/generated"} <= set(acc.Tags()["audio"])
    assert [e.step for e in acc.Images("val/clip0/spectrogram")] == [2, 4]


def test_train_without_tensorboard(small_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Without the tensorboard package, training runs as before (metrics.csv, no event files) and says once
    which extra brings the logging."""
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    cfg = TrainConfig(steps=2, batch_size=2, segment_length=2048, val_every=2, ckpt_every=2, log_every=1,
                      val_files=1, sample_seconds=0.5)
    run = tmp_path / "run"
    Trainer(ToyLikelihood(), small_data, run, cfg, progress=True).fit()
    assert (run / "metrics.csv").is_file() and not list(run.glob("events.out.tfevents.*"))
    assert 'pip install "vocoder-zoo[tensorboard]"' in capsys.readouterr().err
