"""The seed models trained by the zoo itself and shipped inside the package (one per likelihood architecture).

Each loads offline from the installed package through its model card (sha256 checked, float16 storage cast
back to float32), vocodes a real LJSpeech clip to the right length, and stays under the 10 MB budget.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

import zoo
from zoo.audio.metrics import mr_stft_distance
from zoo.hub.sources import fetch_source
from zoo.train.data import load_audio

SEED_ARCHITECTURES = ["waveglow", "wavenet", "flowavenet", "parallel_wavenet"]


@pytest.mark.parametrize("arch", SEED_ARCHITECTURES)
def test_seed_model_loads_offline_from_the_package(arch, monkeypatch, tmp_path, eval_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path))
    card = zoo.card(f"{arch}.trainpm")  # waveglow's default is NVIDIA's published model (a download)
    assert card.architecture == arch
    (source,) = card.sources
    assert source.kind == "package" and source.package == "vocoder-zoo"
    path = fetch_source(source, offline=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256
    assert path.stat().st_size < 10 * 2**20, "shipped weights stay under 10 MB"
    quality = card.quality["eval-lj"]
    assert {"mr_stft", "log_mel_l1", "rtf", "measured"} <= set(quality)
    training = card.extra["training"]
    assert "--data ../shared/data/train-pm" in training["command"] + training["continue"]

    voc = zoo.load(card.name)
    assert voc.architecture == arch and voc.mel_config == card.mel
    assert all(p.dtype == torch.float32 for p in voc.parameters())
    clip = load_audio(eval_dir / "LJ001-0002.wav", voc.sample_rate)[: voc.sample_rate // 2]
    mel = voc.mel(clip)
    audio = voc(mel, generator=torch.Generator().manual_seed(0))
    assert audio.shape[-1] == mel.shape[-1] * voc.hop_length
    assert torch.isfinite(audio).all() and audio.abs().max() > 1e-3


def test_waveglow_seed_model_copy_synthesis_beats_noise(eval_dir):
    """A cheap quality regression: the shipped WaveGlow on 2 s of a held-out clip against white noise of
    the same loudness (a broken model or mel front-end lands near or above the noise)."""
    voc = zoo.load("waveglow.trainpm")
    clip = load_audio(eval_dir / "LJ001-0003.wav", voc.sample_rate)[: 2 * voc.sample_rate]
    out = voc(voc.mel(clip), generator=torch.Generator().manual_seed(0))[: clip.numel()]
    noise = torch.randn(clip.numel(), generator=torch.Generator().manual_seed(0)) * clip.std()
    assert mr_stft_distance(out, clip) < 0.8 * mr_stft_distance(noise, clip)


def _quality_benchmark():
    """``benchmarks/quality.py`` as a module (it is a script, not part of the package)."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("zoo_quality_benchmark", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _quality_run() -> dict:
    import json

    from tests.conftest import REPO

    return json.loads((REPO / "benchmarks" / "results" / "quality_eval_lj.json").read_text())


def test_cards_carry_the_committed_quality_run():
    """Every card the quality run measured states that run's means (to the digits the card shows), so a card
    cannot drift from the measurement it cites."""
    run = _quality_run()
    assert run["results"], "the committed quality run measured no model"
    for result in run["results"]:
        card = zoo.card(result["model"]).quality["eval-lj"]
        for key in ("stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808", "mr_stft", "log_mel_l1"):
            shown = card[key]
            digits = len(str(shown).split(".")[1]) if "." in str(shown) else 0
            assert shown == pytest.approx(round(result[key], digits), abs=10 ** -digits / 2 + 1e-12), \
                (result["model"], key, shown, result[key])


@pytest.mark.parametrize("name", ["hifigan.ljspeech", "griffinlim.hifigan", "waveglow.trainpm"])
def test_quality_numbers_are_remeasured(name, eval_dir):
    """The first clip of the committed run, measured again now the way benchmarks/quality.py measures it (same
    seed, same warm-up, so a stochastic model draws the same noise): the same STOI, PESQ, MR-STFT and log-mel
    L1. A change to a model, its weights, the mel front-end or a metric that moves the numbers fails here
    until the cards are re-measured."""
    run = _quality_run()
    (result,) = [r for r in run["results"] if r["model"] == name]
    first = result["per_file"][0]
    again = _quality_benchmark().evaluate(name, [eval_dir / first["file"]])["per_file"][0]
    for key in ("stoi", "pesq_wb", "mr_stft", "log_mel_l1"):
        assert again[key] == pytest.approx(first[key], rel=1e-3, abs=1e-3), (name, key, again[key], first[key])
