"""The quality metrics of QUALITY.md."""

import math

import pytest
import soundfile as sf
import torch

from zoo.audio import metrics
from zoo.audio.metrics import dnsmos, log_mel_l1, mr_stft_distance, pesq_wb, score, stoi


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
    # STOI and PESQ say both are intelligible, HiFi-GAN more natural (eval-lj means: PESQ 3.6 vs 3.2)
    assert hifi["stoi"] > 0.9 and gl["stoi"] > 0.9 and hifi["pesq_wb"] > 3.0 and gl["pesq_wb"] > 2.5
    assert 1 < gl["dnsmos_p808"] < 5 and 1 < hifi["dnsmos_ovrl"] < 5
    doc = json.loads(out.read_text())
    assert doc["versions"]["pystoi"] != "missing" and doc["versions"]["pesq"] != "missing"
    assert doc["machine"]["cpu_count"] >= 1 and doc["command"].startswith("python benchmarks/quality.py")
    assert doc["original"]["dnsmos_p808"] > 1


# ---------------------------------------------------------------------- STOI, PESQ, DNSMOS
@pytest.fixture(scope="module")
def speech(eval_dir):
    """Two seconds of an eval-lj recording (22.05 kHz) and white noise of the same power."""
    audio, sr = sf.read(str(eval_dir / "LJ001-0001.wav"), dtype="float32")
    x = torch.from_numpy(audio[: 2 * sr])
    noise = torch.randn(x.numel(), generator=torch.Generator().manual_seed(0)) * x.pow(2).mean().sqrt()
    return x, noise, sr


def test_stoi_known_values(speech):
    x, noise, sr = speech
    assert stoi(x, x, sr) == pytest.approx(1.0, abs=1e-6)
    # Noise alone is unintelligible. STOI's clipping of the degraded envelopes to the clean ones leaves
    # independent noise a floor near 0.3 rather than 0 (QUALITY.md's noise-emitting seeds: 0.31-0.36).
    assert stoi(noise, x, sr) < 0.4
    assert stoi(noise, x, sr) < stoi(x + noise, x, sr) < stoi(x + 0.1 * noise, x, sr) < 1.0


def test_pesq_known_values(speech):
    x, noise, sr = speech
    assert pesq_wb(x, x, sr) == pytest.approx(metrics.PESQ_MAX, abs=1e-4)  # the P.862.2 maximum, 4.64
    assert pesq_wb(noise, x, sr) < 1.3
    assert pesq_wb(noise, x, sr) < pesq_wb(x + noise, x, sr) < pesq_wb(x + 0.1 * noise, x, sr) < metrics.PESQ_MAX
    # any rate: resampled to 16 kHz first
    assert pesq_wb(x[::2].contiguous(), x[::2].contiguous(), sr // 2) == pytest.approx(metrics.PESQ_MAX, abs=1e-3)


def test_dnsmos_clean_above_noisy(speech):
    x, noise, sr = speech
    clean, noisy = dnsmos(x, sr), dnsmos(x + noise, sr)  # 0 dB SNR
    assert set(clean) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    assert all(1.0 <= v <= 5.0 for v in (*clean.values(), *noisy.values()))
    assert clean["dnsmos_ovrl"] > noisy["dnsmos_ovrl"] + 0.5
    assert clean["dnsmos_p808"] > noisy["dnsmos_p808"] + 0.5
    assert clean["dnsmos_bak"] > noisy["dnsmos_bak"]


def test_score_columns_and_no_reference(speech):
    x, noise, sr = speech
    full = score(x + 0.1 * noise, x, sr)
    assert set(metrics.METRIC_COLUMNS) <= set(full)
    assert set(score(x, None, sr)) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}
    assert set(score(x, x, sr, perceptual=False)) == {"mr_stft", "log_mel_l1"}
    with pytest.raises(ValueError, match="1-D"):
        dnsmos(torch.zeros(2, 100), sr)


def test_missing_extra_names_it(monkeypatch, speech):
    x, _, sr = speech
    real = metrics.importlib.import_module

    def fake(name, *a, **k):
        if name == "pystoi":
            raise ImportError("No module named 'pystoi'")
        return real(name, *a, **k)

    monkeypatch.setattr(metrics.importlib, "import_module", fake)
    with pytest.raises(metrics.MissingExtraError, match=r'pip install "vocoder-zoo\[quality\]"'):
        stoi(x, x, sr)
    assert score(x, x, sr, perceptual=False)  # the core metrics need no extra


def test_card_and_readme_rewrite():
    """--write-cards replaces a card's quality block (only) and the README table's number columns."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "_quality_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = {"model": "m.x", "stoi": 0.97812, "pesq_wb": 3.6012, "dnsmos_ovrl": 3.1, "dnsmos_p808": 3.89,
           "mr_stft": 0.9881, "log_mel_l1": 0.2031, "rtf": 0.351}
    card = ("---\nname: m.x\nquality:\n  eval-lj:\n    mr_stft: 1.0\n    measured: old\n      continued\n"
            "sources: []\n---\n# M\n")
    new = bench.rewrite_card(card, bench.quality_block(res, 'cmd "q", 2026'))
    import yaml

    front = yaml.safe_load(new.split("---\n")[1])
    assert front["quality"]["eval-lj"] == {"stoi": 0.978, "pesq_wb": 3.6, "dnsmos_ovrl": 3.1, "dnsmos_p808": 3.89,
                                           "mr_stft": 0.988, "log_mel_l1": 0.203, "rtf": 0.351,
                                           "measured": 'cmd "q", 2026'}
    assert front["sources"] == [] and new.endswith("# M\n")
    readme = ("x\n| model | architecture | weights | eval-lj MR-STFT | log-mel L1 | RTF (CPU) | license |\n"
              "|---|---|---|---|---|---|---|\n| `m.x` | A | w | 1.0 | 0.3 | 0.4 | MIT |\n"
              "| `other` | B | v | 2.0 | 0.5 | 0.6 | BSD |\n\nafter\n")
    table = bench.rewrite_readme_table(readme, {"m.x": res}).split("\n")
    assert table[1] == ("| model | architecture | weights | STOI | PESQ-wb | DNSMOS ovrl | DNSMOS P.808 | "
                        "eval-lj MR-STFT | log-mel L1 | RTF (CPU) | license |")
    assert table[2] == "|" + "---|" * 11
    assert table[3] == "| `m.x` | A | w | 0.978 | 3.60 | 3.10 | 3.89 | 0.988 | 0.203 | 0.351 | MIT |"
    assert table[4] == "| `other` | B | v |  |  |  |  | 2.0 | 0.5 | 0.6 | BSD |"
    assert table[5:] == ["", "after", ""]

    # --keep-rtf: the card keeps its RTF and says where it was measured
    import shutil
    import tempfile

    import zoo

    name = "hifigan.ljspeech"
    old = zoo.card(name).quality["eval-lj"]
    with tempfile.TemporaryDirectory() as tmp:
        cards = Path(tmp)
        shutil.copy(Path(__file__).resolve().parents[1] / "model_cards" / f"{name}.md", cards)
        (cards / "README.md").write_text(readme.replace("`m.x`", f"`{name}`"))
        assert bench.write_cards([{**res, "model": name}], "new run", cards, cards / "README.md", keep_rtf=True)
        front = yaml.safe_load((cards / f"{name}.md").read_text().split("---\n")[1])["quality"]["eval-lj"]
        assert front["rtf"] == old["rtf"] and front["rtf_measured"] == old.get("rtf_measured", old["measured"])
        assert front["stoi"] == 0.978 and front["measured"] == "new run"
        assert f"| 0.988 | 0.203 | {old['rtf']:.3f} | MIT |" in (cards / "README.md").read_text()
