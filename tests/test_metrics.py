"""The quality metrics of QUALITY.md."""

import math

import pytest
import torch

from zoo.metrics import log_mel_l1, mr_stft_distance


def _signal(n=22050, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 22050
    return 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(n, generator=g)


def test_identical_signals_score_zero():
    x = _signal()
    assert mr_stft_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert log_mel_l1(x, x) == pytest.approx(0.0, abs=1e-9)


def test_scaling_gives_known_distance():
    """B = 2A: SC = 1 per resolution, LM ~ log 2 where A >> 1e-7; the distance is their sum."""
    x = _signal()
    d = mr_stft_distance(2 * x, x)
    assert d == pytest.approx(1 + math.log(2), abs=0.02)
    assert log_mel_l1(2 * x, x) == pytest.approx(math.log(2), abs=0.02)


def test_cut_to_shorter_and_ordering():
    x = _signal()
    noisy = x + 0.05 * torch.randn(x.numel(), generator=torch.Generator().manual_seed(1))
    noisier = x + 0.2 * torch.randn(x.numel(), generator=torch.Generator().manual_seed(1))
    assert mr_stft_distance(noisy, x) < mr_stft_distance(noisier, x)
    assert mr_stft_distance(noisy[:-100], x) == pytest.approx(mr_stft_distance(noisy[:-100], x[:-100]))


def test_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        mr_stft_distance(torch.zeros(2, 10), torch.zeros(10))


def test_quality_benchmark_ranks_models(tmp_path, eval_dir, capsys):
    """benchmarks/quality.py on one 2-second clip: JSON rows, a model that fails to load is reported, and the
    official LJSpeech HiFi-GAN beats Griffin-Lim by the MR-STFT distance (eval-lj means: 0.99 vs 3.39)."""
    import importlib.util
    import json
    from pathlib import Path

    import soundfile as sf

    spec = importlib.util.spec_from_file_location(
        "_quality_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    audio, sr = sf.read(str(eval_dir / "LJ001-0001.wav"), dtype="float32")
    data = tmp_path / "clips"
    data.mkdir()
    sf.write(str(data / "clip.wav"), audio[: 2 * sr], sr)
    out = tmp_path / "q.json"
    assert bench.main(["--data", str(data), "--models", "hifigan.ljspeech,griffinlim,no-such-model",
                       "--json", str(out)]) == 0
    assert "no-such-model" in capsys.readouterr().out
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"hifigan.ljspeech", "griffinlim"}
    hifi, gl = rows["hifigan.ljspeech"], rows["griffinlim"]
    assert hifi["files"] == 1 and hifi["threads"] >= 1 and hifi["rtf"] > 0
    assert hifi["mr_stft"] < 1.2 and 2.5 < gl["mr_stft"] < 4.5
    assert hifi["mr_stft"] == pytest.approx(hifi["per_file"][0]["mr_stft"])
