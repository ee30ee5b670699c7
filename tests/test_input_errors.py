"""Mistakes a user makes get a clear ``ValueError`` (or a one-line CLI error) and never a silent wrong answer:
the cases found by reviewing the public API and CLI as a user would."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from tests.conftest import parity_dir
from zoo.cli.app import main

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIP = REPO_ROOT / "examples" / "LJ001-0001.wav"


@pytest.fixture(scope="module")
def hifigan():
    return zoo.load("hifigan")


def _mel(voc, frames=12):
    return torch.randn(voc.mel_config.n_mels, frames) - 5.0


# ---------------------------------------------------------------------- CLI vocode: nothing lost
def test_vocode_never_overwrites_an_input(tmp_path, capsys):
    src = tmp_path / "s.wav"
    src.write_bytes(CLIP.read_bytes())
    before = src.read_bytes()
    assert main(["vocode", str(src), "-o", str(tmp_path)]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert main(["vocode", str(src), "-o", str(src), "-m", "griffinlim"]) == 2
    assert src.read_bytes() == before


def test_vocode_refuses_two_inputs_with_one_output_name(tmp_path, capsys, hifigan):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(CLIP.read_bytes())
    np.save(tmp_path / "b" / "x.npy", _mel(hifigan).numpy())
    out = tmp_path / "out"
    assert main(["vocode", str(tmp_path / "a" / "x.wav"), str(tmp_path / "b" / "x.npy"), "-o", str(out),
                 "-m", "griffinlim"]) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir()), "something was written before the refusal"


def test_vocode_refuses_a_batch_in_one_mel_file_and_stream_a_batch(tmp_path, capsys, hifigan):
    path = tmp_path / "two.npy"
    np.save(path, torch.stack([_mel(hifigan), _mel(hifigan)]).numpy())
    assert main(["vocode", str(path), "-o", str(tmp_path / "two.wav"), "-m", "griffinlim"]) == 2
    assert "holds a batch of 2 mels" in capsys.readouterr().err
    with pytest.raises(ValueError, match="got a batch of 2"):
        list(hifigan.stream([torch.stack([_mel(hifigan), _mel(hifigan)])]))


def test_vocode_errors_name_the_file(tmp_path, capsys):
    short = tmp_path / "tiny.wav"
    sf.write(str(short), np.zeros(100, dtype=np.float32), 22050)
    assert main(["vocode", str(short), "-o", str(tmp_path / "t.wav"), "-m", "griffinlim"]) == 2
    assert f"{short}: audio of 100 samples" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    np.save(tmp_path / "m.npy", np.zeros((80, 4), dtype=np.float32) - 5)
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.wav"), "--mel-config", str(bad),
                 "-m", "griffinlim"]) == 2
    assert "is not valid JSON" in capsys.readouterr().err


def test_written_files_follow_the_umask(tmp_path, hifigan):
    old = os.umask(0o022)
    try:
        out = tmp_path / "o.wav"
        assert main(["vocode", str(CLIP), "-o", str(out), "-m", "griffinlim"]) == 0
        saved = zoo.create("griffinlim").save_pretrained(tmp_path / "folder")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
    assert (saved / "config.json").stat().st_mode & 0o777 == 0o644


def test_bench_fails_for_a_model_it_cannot_load(capsys):
    assert main(["bench", "hifgan", "--seconds", "0.2", "--runs", "1"]) == 2
    assert "could not benchmark ['hifgan']" in capsys.readouterr().err
    assert main(["bench", "griffinlim", "--seconds", "0"]) == 2
    assert "--seconds must be positive" in capsys.readouterr().err


# ---------------------------------------------------------------------- vocode
def test_griffinlim_vocodes_the_shortest_mels():
    g = zoo.load("griffinlim")
    for frames in (1, 2, 3):
        audio = g(torch.randn(80, frames) - 5)
        assert audio.shape == (frames * 256,) and torch.isfinite(audio).all()
    audio, lengths = g.vocode(torch.randn(2, 80, 20) - 5, [20, 2])
    assert audio.shape == (2, 20 * 256) and lengths.tolist() == [20 * 256, 2 * 256]


@pytest.mark.parametrize("name,option", [("waveglow", "sigma"), ("flowavenet", "temperature"),
                                         ("parallel_wavenet", "temperature")])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, "hot", None])
def test_noise_scales_are_checked(name, option, value):
    voc = zoo.load(f"{name}.trainpm") if name in ("waveglow", "flowavenet") else zoo.create(name)
    kwargs = {option: value} if value is not None else {option: torch.tensor([1.0, 2.0])}
    with pytest.raises(ValueError, match=f"{option} must be a"):
        voc(_mel(voc, 2), **kwargs)


def test_unbatched_input_gives_unbatched_output_whatever_the_container(hifigan):
    mel = _mel(hifigan)
    expected = hifigan(mel)
    assert expected.shape == (12 * 256,)
    for given in (mel.numpy(), mel.tolist()):
        audio, length = hifigan.vocode(given)
        assert audio.shape == expected.shape and length.shape == ()
        torch.testing.assert_close(audio, expected)


def test_values_that_overflow_the_model_dtype_are_refused():
    voc = zoo.load("griffinlim")
    huge = torch.full((80, 4), 1e39, dtype=torch.float64)  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="exceed the range of torch.float32"):
        voc(huge)
    half = zoo.create("hifigan", upsample_initial_channel=16).to(torch.float16)
    mel = torch.randn(80, 4) - 5
    mel[0, 0] = 1e5
    with pytest.raises(ValueError, match="exceed the range of torch.float16"):
        half(mel)


def test_generator_must_be_a_generator(hifigan):
    with pytest.raises(ValueError, match=r"generator must be a torch.Generator \(e.g. torch.Generator"):
        hifigan(_mel(hifigan), generator=123)


def test_lengths_that_are_not_numbers(hifigan):
    with pytest.raises(ValueError, match="lengths must be integers"):
        hifigan.vocode(torch.randn(2, 80, 20) - 5, "ab")


# ---------------------------------------------------------------------- load / create / mel / adapt
def test_load_checks_device_dtype_and_expect_mel():
    with pytest.raises(ValueError, match="unknown device 'cpux'"):
        zoo.load("griffinlim", device="cpux")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            zoo.load("griffinlim", device="cuda")
    with pytest.raises(ValueError, match="dtype must be a floating-point type"):
        zoo.load("griffinlim", dtype=torch.int8)
    assert zoo.load("griffinlim", expect_mel="hifigan").architecture == "griffinlim"
    with pytest.raises(zoo.MelMismatchError, match="f_max"):
        zoo.load("griffinlim", expect_mel={**zoo.MelConfig.preset("hifigan").to_dict(), "f_max": 7600.0})


def test_create_refuses_unknown_overrides():
    with pytest.raises(ValueError, match=r"unknown config keys \['bogus'\]"):
        zoo.create("hifigan", bogus=1)


def test_mel_refuses_audio_that_is_not_float_audio(hifigan):
    audio, sr = sf.read(str(CLIP), dtype="int16")
    with pytest.raises(ValueError, match="divide 16-bit ones by 32768"):
        hifigan.mel(torch.from_numpy(audio).float(), sample_rate=sr)
    clip = torch.from_numpy(sf.read(str(CLIP), dtype="float32")[0])
    with pytest.raises(ValueError, match="positive whole number of Hz"):
        hifigan.mel(clip, sample_rate=22050.5)
    with pytest.raises(ValueError, match=r"looks like \[samples, channels\]"):
        hifigan.mel(torch.stack([clip, clip], 1))
    assert hifigan.mel(clip, sample_rate=22050.0).shape[0] == 80  # a whole number given as a float is fine


def test_adapt_checks_its_input_like_vocode(hifigan):
    mel = zoo.adapt(_mel(hifigan).numpy(), "hifigan", "hifigan")
    assert isinstance(mel, torch.Tensor)
    with pytest.raises(ValueError, match=r"mel must be \[n_mels, frames\]"):
        zoo.adapt(torch.zeros(80), "hifigan", "tacotron2")
    with pytest.raises(ValueError, match="floating-point"):
        zoo.adapt(torch.zeros(80, 3, dtype=torch.int32), "hifigan", "tacotron2")


def test_export_makes_the_output_folder(tmp_path):
    from zoo.runtime.export import export

    path = export(zoo.create("hifigan", upsample_initial_channel=16), "torchscript", tmp_path / "new" / "e.pt")
    assert path.is_file()


# ---------------------------------------------------------------------- zoo convert: untrusted files, safe outputs
PARITY = parity_dir()


def _truncated(src: Path, dst: Path, keep: int = 2000) -> Path:
    dst.write_bytes(src.read_bytes()[:keep])
    return dst


@pytest.mark.parametrize("source,ckpt", [("waveglow", "waveglow/ckpt_nvidia.pt"), ("waveglow", "waveglow/ckpt_dle.pt"),
                                         ("wavenet", "wavenet/ckpt_mol.pth")])
@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated"])
def test_convert_refuses_damaged_checkpoints_in_one_line(tmp_path, capsys, source, ckpt, damage):
    bad = tmp_path / "bad.pt"
    if damage == "empty":
        bad.write_bytes(b"")
    elif damage == "garbage":
        bad.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\x01" * 7)
    else:
        _truncated(PARITY / ckpt, bad)
    assert main(["convert", "--from", source, str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: ") and str(bad) in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_convert_never_runs_a_pickle_and_says_so_in_one_line(tmp_path, capsys):
    import pickle

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, bad, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    for source in ("waveglow", "wavenet", "hifigan", "clarinet"):
        assert main(["convert", "--from", source, str(bad), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(bad) in err and "weights_only" not in err, err
    assert not marker.exists()


def test_convert_never_destroys_a_folder(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes((PARITY / "wavenet" / "ckpt_mol.pth").read_bytes())
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "thesis.txt").write_text("mine")
    assert main(["convert", "--from", "wavenet", str(ckpt), str(keep)]) == 2
    assert "not a zoo model" in capsys.readouterr().err and (keep / "thesis.txt").read_text() == "mine"
    monkeypatch.chdir(tmp_path)
    assert main(["convert", "--from", "wavenet", "ckpt.pth", "."]) == 2
    assert ckpt.is_file() and (keep / "thesis.txt").is_file()
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["convert", "--from", "wavenet", str(ckpt), str(afile)]) == 2
    assert afile.read_text() == "x"
    out = tmp_path / "model"
    assert main(["convert", "--from", "wavenet", str(ckpt), str(out)]) == 0
    assert main(["convert", "--from", "wavenet", str(ckpt), str(out)]) == 0  # a zoo model folder is replaced


def test_convert_refuses_weights_it_would_drop_or_that_are_broken(tmp_path, capsys):
    state = torch.load(PARITY / "wavenet" / "ckpt_mol.pth", weights_only=True)
    extra = dict(state, state_dict={**state["state_dict"], "bogus.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    assert main(["convert", "--from", "wavenet", str(tmp_path / "extra.pth"), str(tmp_path / "o1")]) == 2
    assert "have no place in the converted model (bogus.weight)" in capsys.readouterr().err
    sd = dict(state["state_dict"])
    key = next(k for k in sd if k.endswith("weight_v"))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    torch.save(dict(state, state_dict=sd), tmp_path / "nan.pth")
    assert main(["convert", "--from", "wavenet", str(tmp_path / "nan.pth"), str(tmp_path / "o2")]) == 2
    assert "NaN or Inf" in capsys.readouterr().err
    g = key[: -len("_v")] + "_g"
    sd = dict(state["state_dict"], **{g: torch.ones(sd[g].numel() + 3, 1, 1)})
    torch.save(dict(state, state_dict=sd), tmp_path / "shape.pth")
    assert main(["convert", "--from", "wavenet", str(tmp_path / "shape.pth"), str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "do not form one weight-normalised weight" in err and str(tmp_path / "shape.pth") in err
    sd = {k: v for k, v in state["state_dict"].items() if k != g}
    torch.save(dict(state, state_dict=sd), tmp_path / "nog.pth")
    assert main(["convert", "--from", "wavenet", str(tmp_path / "nog.pth"), str(tmp_path / "o5")]) == 2
    err = capsys.readouterr().err
    assert "has no matching weight_g" in err and str(tmp_path / "nog.pth") in err
    bad_cfg = tmp_path / "cfg.json"
    bad_cfg.write_text("[1, 2]")
    assert main(["convert", "--from", "wavenet", str(PARITY / "wavenet" / "ckpt_mol.pth"), str(tmp_path / "o4"),
                 "--config", str(bad_cfg)]) == 2
    assert "must hold a JSON object" in capsys.readouterr().err


# ---------------------------------------------------------------------- zoo train / distill
def _tiny_train(train_dir, tmp_path, n=3):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for p in sorted(train_dir.glob("*.wav"))[:n]:
        if not (data / p.name).exists():
            (data / p.name).symlink_to(p)
    return ["train", "waveglow", "--data", str(data), "--set", "n_flows=2", "--set", "n_layers=1",
            "--set", "n_channels=8", "--set", "n_early_every=1", "--set", "upsample_kernel=256",
            "--set", "train.batch_size=1", "--set", "train.segment_length=2048", "--set", "train.val_every=100",
            "--set", "train.ckpt_every=2", "--set", "train.val_files=1", "--set", "train.log_every=1"]


def test_train_resume_keeps_the_run_consistent(train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*_tiny_train(train_dir, tmp_path), "--out", str(run)]
    assert main([*args, "--steps", "3"]) == 0
    capsys.readouterr()
    # a different learning rate (or mel, or model) does not mix into the run
    assert main([*args, "--steps", "5", "--set", "train.lr=0.5"]) == 2
    assert "train.lr differ" in capsys.readouterr().err
    assert main([*args, "--steps", "5", "--set", "mel=hifigan"]) == 2
    assert "mel differ" in capsys.readouterr().err
    # --no-resume into a run with checkpoints is refused (it pruned its own new checkpoints before)
    assert main([*args, "--steps", "2", "--no-resume"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    # rows logged after the last checkpoint (by a run killed before its next one) are dropped on resume
    with (run / "metrics.csv").open("a") as f:
        f.write("4,train,loss,9.9,0.001,1.0,0.0\n5,train,loss,9.9,0.001,1.0,0.0\n")
    assert main(["train", "waveglow", "--data", str(tmp_path / "data"), "--out", str(run), "--steps", "4"]) == 0
    assert "resumed from step 3" in capsys.readouterr().out
    assert ",9.9," not in (run / "metrics.csv").read_text()
    steps = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]
             if ",train," in r and ",loss," in r]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4]
    saved = json.loads((run / "run.json").read_text())["train_config"]
    assert saved["batch_size"] == 1 and saved["segment_length"] == 2048  # the run's settings, not defaults


@pytest.mark.parametrize("setting,message", [("train.lr=abc", "train setting lr must be float"),
                                             ("train.log_every=0", "log_every must be >= 1"),
                                             ("train.bogus=1", "unknown train settings ['bogus']"),
                                             ("model=3", "'model' must be a mapping")])
def test_train_settings_are_checked_in_one_line(train_dir, tmp_path, capsys, setting, message):
    args = [*_tiny_train(train_dir, tmp_path), "--out", str(tmp_path / "r"), "--steps", "1", "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_train_refuses_what_it_cannot_train(train_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    assert main(["train", "hifigan", "--data", str(data), "--out", str(tmp_path / "h")]) == 2
    assert "has no training loss" in capsys.readouterr().err
    assert main(["train", "waveglow", "--data", str(data), "--out", str(tmp_path / "w"), "--device", "cpux"]) == 2
    assert "unknown --device" in capsys.readouterr().err
    assert main([*_tiny_train(train_dir, tmp_path)[:3], str(data), *_tiny_train(train_dir, tmp_path)[4:],
                 "--out", str(tmp_path / "w"), "--steps", "1"]) == 2
    assert "broken.wav: not a readable audio file" in capsys.readouterr().err


def test_distill_never_writes_into_a_model_folder(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    zoo.create("wavenet", output_distribution="gaussian", layers=2, stacks=1, residual_channels=4,
               gate_channels=8, skip_channels=4).save_pretrained(teacher)
    before = (teacher / "config.json").read_text()
    assert main(["distill", "--teacher", str(teacher), "--data", str(tmp_path), "--out", str(teacher),
                 "--steps", "1"]) == 2
    assert "no distillation state" in capsys.readouterr().err
    assert (teacher / "config.json").read_text() == before


# ---------------------------------------------------------------------- numerics across dtypes
@pytest.mark.parametrize("name", ["waveglow", "flowavenet"])
def test_a_seed_draws_the_same_noise_in_every_dtype(name):
    mel = torch.randn(80, 6) - 5
    full = zoo.load(f"{name}.trainpm")(mel, generator=torch.Generator().manual_seed(0))
    half = zoo.load(f"{name}.trainpm", dtype=torch.bfloat16)(mel, generator=torch.Generator().manual_seed(0)).float()
    assert (full - half).abs().max() < 0.25 * (full.abs().max())


def test_griffinlim_constants_survive_a_dtype_round_trip():
    voc = zoo.load("griffinlim")
    mel = torch.randn(80, 8) - 5
    before = voc(mel)
    voc.to(torch.float16)
    assert voc(mel).dtype == torch.float32 == voc.audio_dtype  # 16-bit floats can't hold the audio
    voc.to(torch.float32)
    assert torch.equal(voc(mel), before)


def test_parallel_wavenet_chunk_frames_is_a_config_setting():
    voc = zoo.create("parallel_wavenet", chunk_frames=0, flow_layers=[2], residual_channels=4, gate_channels=8,
                     skip_channels=4)
    assert voc.config.chunk_frames == 0 and "chunk_frames" in voc.config.to_dict()


def test_train_names_an_unusable_validation_split(train_dir, tmp_path, capsys):
    args = _tiny_train(train_dir, tmp_path)
    data = Path(args[3])
    sf.write(str(data / "zz_short.wav"), np.zeros(100, dtype=np.float32), 22050)  # sorted last: the val split
    assert main([*args, "--out", str(tmp_path / "r"), "--steps", "1"]) == 2
    assert "the validation files (zz_short.wav) hold no usable audio" in capsys.readouterr().err


def test_train_config_files_may_write_numbers_as_1e_3(train_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 1e-3\n  lr_decay: 5E-1\n")  # YAML 1.1 leaves these as strings
    run = tmp_path / "r"
    assert main([*_tiny_train(train_dir, tmp_path), "--config", str(config), "--out", str(run), "--steps", "1"]) == 0
    saved = json.loads((run / "run.json").read_text())["train_config"]
    assert saved["lr"] == 1e-3 and saved["lr_decay"] == 0.5
