"""`zoo train` from the command line (with resume) and `zoo bench` (JSON output, machine info)."""

from __future__ import annotations

import json

import torch

import zoo
from zoo.cli.app import main as cli_main


def test_zoo_train_cli_and_resume(train_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(train_dir.glob("*.wav"))[:4]:
        (data / p.name).symlink_to(p)
    run = tmp_path / "run"
    args = ["train", "waveglow", "--data", str(data), "--out", str(run), "--set", "n_flows=2", "--set", "n_layers=1",
            "--set", "n_channels=8", "--set", "n_early_every=1", "--set", "upsample_kernel=256",
            "--set", "train.batch_size=2", "--set", "train.segment_length=2048", "--set", "train.val_every=2",
            "--set", "train.ckpt_every=2", "--set", "train.val_files=1"]
    assert cli_main([*args, "--steps", "2"]) == 0
    assert (run / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    assert cli_main([*args, "--steps", "4"]) == 0  # resumes from step 2
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    model = zoo.load(str(run / "final"))
    assert model.architecture == "waveglow" and model.config.n_flows == 2
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,split,name,value") and any(",val," in r for r in rows)
    assert (run / "samples" / "step_00000004.wav").is_file()


def test_zoo_train_init_with_training_only_settings(train_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for p in sorted(train_dir.glob("*.wav"))[:3]:
        (data / p.name).symlink_to(p)
    tiny = ["--set", "train.batch_size=2", "--set", "train.segment_length=1024", "--set", "train.val_every=1",
            "--set", "train.ckpt_every=1", "--set", "train.val_files=1", "--steps", "1"]
    first = ["train", "wavenet", "--data", str(data), "--out", str(tmp_path / "a"),
             "--set", "output_distribution=gaussian", "--set", "layers=2", "--set", "stacks=1",
             "--set", "residual_channels=4", "--set", "gate_channels=8", "--set", "skip_channels=4", *tiny]
    assert cli_main(first) == 0
    start = zoo.load(str(tmp_path / "a" / "final"))
    again = ["train", "wavenet", "--data", str(data), "--init", str(tmp_path / "a" / "final"), *tiny]
    assert cli_main([*again, "--out", str(tmp_path / "b"), "--set", "train_input_noise=0.01",
                     "--set", "layers=2"]) == 0  # a setting equal to the model's own is accepted
    model = zoo.load(str(tmp_path / "b" / "final"))
    assert model.config.train_input_noise == 0.01 and model.config.layers == 2
    assert not torch.equal(model.state_dict()["head2.weight"], start.state_dict()["head2.weight"])
    capsys.readouterr()
    assert cli_main([*again, "--out", str(tmp_path / "c"), "--set", "residual_channels=8"]) != 0
    assert "change the model's weights" in capsys.readouterr().err


def test_zoo_bench_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "griffinlim", "--seconds", "1", "--runs", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    row = data["results"][0]
    assert row["model"] == "griffinlim" and row["rtf"] > 0 and row["samples_per_s"] > 0
    assert data["machine"]["torch"] and data["machine"]["threads"] >= 1
    assert "RTF" in capsys.readouterr().out
