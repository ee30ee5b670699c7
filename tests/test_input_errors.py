"""Mistakes a user makes get a clear ``ValueError`` (or a one-line CLI error) and never a silent wrong answer:
the cases found by reviewing the public API and CLI as a user would."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.cli import main

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
    voc = zoo.load(name) if name in ("waveglow", "flowavenet") else zoo.create(name)
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
    from zoo.export import export

    path = export(zoo.create("hifigan", upsample_initial_channel=16), "torchscript", tmp_path / "new" / "e.pt")
    assert path.is_file()
