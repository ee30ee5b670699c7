"""The `zoo` command line: listing, info, vocoding and its error handling (Griffin-Lim: no weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.cli.app import main

REPO = Path(__file__).resolve().parents[1]


def _wav(path: Path, seconds: float = 0.3, sr: int = 22050) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


def test_list_and_verbose(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "griffinlim.hifigan" in out and "architectures:" in out
    assert main(["list", "--verbose", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "griffinlim" in data["architectures"] and any(p["plugin"] == "griffinlim" for p in data["plugins"])


def test_verbose_list_names_the_converters(capsys):
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "converters (zoo convert --from NAME):" in out and "  waveglow " in out


def test_output_cut_by_the_reader_is_not_an_error():
    import subprocess
    import sys

    code = "import sys; from zoo.cli.app import main; sys.exit(main(['info', 'hifigan.universal']))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before anything is written (`| head` that already exited)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Broken pipe" not in err and b"Traceback" not in err, err.decode()


def test_info_prints_card(capsys):
    assert main(["info", "griffinlim.hifigan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and "architecture: griffinlim" in out


def test_unknown_model_is_one_line_error(capsys):
    assert main(["info", "griffinlm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error: unknown model 'griffinlm'") and "griffinlim" in err
    assert "Traceback" not in err


def test_vocode_wav_and_mel_files(tmp_path):
    wav = _wav(tmp_path / "a.wav")
    mel = torch.zeros(80, 5) - 5.0
    np.save(tmp_path / "b.npy", mel.numpy())
    torch.save(mel, tmp_path / "c.pt")
    out = tmp_path / "out"
    assert main(["vocode", str(wav), str(tmp_path / "b.npy"), str(tmp_path / "c.pt"), "-o", str(out),
                 "--model", "griffinlim"]) == 0
    a, sr = sf.read(str(out / "a.wav"))
    assert sr == 22050 and abs(len(a) - 0.3 * 22050) < 256
    b, _ = sf.read(str(out / "b.wav"))
    assert len(b) == 5 * 256
    assert (out / "c.wav").is_file()


def test_vocode_resamples_other_rates(tmp_path):
    wav = _wav(tmp_path / "a16k.wav", sr=16000, seconds=0.5)
    assert main(["vocode", str(wav), "-o", str(tmp_path / "o.wav"), "--model", "griffinlim"]) == 0
    y, sr = sf.read(str(tmp_path / "o.wav"))
    assert sr == 22050 and abs(len(y) - 0.5 * 22050) <= 256


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: (d / "bad.wav").write_bytes(b"not audio") and d / "bad.wav", "cannot read audio"),
        (lambda d: np.save(d / "m.npy", np.zeros((79, 4), np.float32)) or d / "m.npy", "n_mels=80"),
        (lambda d: np.save(d / "n.npy", np.full((80, 4), np.nan, np.float32)) or d / "n.npy", "NaN"),
        (lambda d: np.save(d / "i.npy", np.zeros((80, 4), np.int64)) or d / "i.npy", "floating"),
        (lambda d: (d / "x.txt").write_text("hi") and d / "x.txt", "unsupported input"),
    ],
    ids=["missing", "corrupt-wav", "wrong-n-mels", "nan-mel", "int-mel", "wrong-type"],
)
def test_vocode_bad_input_one_line_error_nothing_written(tmp_path, capsys, make, message):
    good = _wav(tmp_path / "good.wav")
    bad = make(tmp_path)
    out = tmp_path / "out"
    code = main(["vocode", str(good), str(bad), "-o", str(out), "--model", "griffinlim"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("zoo: error:") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir()), "nothing may be written when an input is bad"


def test_vocode_many_inputs_need_a_folder(tmp_path, capsys):
    a, b = _wav(tmp_path / "a.wav"), _wav(tmp_path / "b.wav")
    assert main(["vocode", str(a), str(b), "-o", str(tmp_path / "o.wav"), "--model", "griffinlim"]) == 2
    assert "folder" in capsys.readouterr().err


def test_vocode_cuda_unavailable_is_clear(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; the error path cannot be exercised")
    wav = _wav(tmp_path / "a.wav")
    assert main(["vocode", str(wav), "-o", str(tmp_path / "o.wav"), "--model", "griffinlim", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_vocode_adapts_saved_mels_with_mel_config(tmp_path, capsys):
    from zoo.core.mel import MelConfig, mel_spectrogram

    other = MelConfig.preset("hifigan").replace(log="log10")
    t = torch.arange(22050) / 22050
    mel = mel_spectrogram(0.3 * torch.sin(2 * torch.pi * 220 * t), other)
    np.save(tmp_path / "m.npy", mel.numpy())
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "o.wav"), "--model", "griffinlim",
                 "--mel-config", json_file(tmp_path, other)]) == 0
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.wav"), "--model", "griffinlim",
                 "--mel-config", "pwg_ljspeech"]) == 2
    assert "cannot adapt" in capsys.readouterr().err
    assert main(["vocode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "d.wav"), "--model", "griffinlim",
                 "--mel-config", "hifigan", "--denoise", "0.1"]) == 0


def json_file(folder: Path, cfg) -> str:
    path = folder / "mel.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)


def test_saved_models_carry_the_mel_contract(tmp_path):
    import zoo
    from zoo.core.mel import reference_hash

    voc = zoo.load("griffinlim")
    voc.save_pretrained(tmp_path / "g")
    data = json.loads((tmp_path / "g" / "config.json").read_text())
    assert data["mel_fingerprint"] == voc.mel_config.fingerprint()
    assert data["mel_reference_hash"] == reference_hash(voc.mel_config)
    assert f"mel_fingerprint: {voc.mel_config.fingerprint()}" in zoo.card("griffinlim").to_markdown()
