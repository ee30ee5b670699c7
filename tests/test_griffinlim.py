"""Griffin-Lim's bounded-memory windows reproduce the one-shot output."""

from __future__ import annotations

import math

import pytest
import torch

import zoo
from zoo.core.mel import MelConfig


def _mel(voc, batch: int, frames: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, voc.mel_config.n_mels, frames, generator=g) * 0.5 - 4.0


def _odd_hop() -> dict:
    """hop 300 does not divide n_fft 1024, and the window is shorter than n_fft."""
    return dict(MelConfig.preset("hifigan").__dict__, hop_length=300, win_length=800)


@pytest.mark.parametrize("config", [
    {"n_iter": 3},                                # hifigan mel: frames shifted by hop / 2
    {"n_iter": 4, "momentum": 0.0, "mel": "tacotron2"},  # centred frames, classic Griffin-Lim
    {"n_iter": 2, "mel": _odd_hop()},
])
def test_windows_equal_one_shot(config, monkeypatch):
    voc = zoo.create("griffinlim", config)
    ctx = voc.context_frames()
    per = math.ceil(voc.mel_config.n_fft / voc.hop_length)
    assert ctx == (config["n_iter"] + 2) * (per - 1) + per
    mel = _mel(voc, 2, 3 * ctx + 41)
    one_shot = voc._synthesize(mel)
    windows = []
    real = voc._synthesize
    monkeypatch.setattr(voc, "_synthesize", lambda m: windows.append(m.shape[-1]) or real(m))
    for chunk in (1, 5, ctx):
        voc.config.chunk_frames = chunk
        windows.clear()
        out = voc.synthesize(mel)
        assert len(windows) == -(-mel.shape[-1] // chunk) and max(windows) <= chunk + 2 * ctx
        assert torch.equal(out, one_shot), float((out - one_shot).abs().max())


def test_context_is_needed(monkeypatch):
    """With too little context the windows differ from one shot: the equality above is not vacuous."""
    voc = zoo.create("griffinlim", n_iter=3, chunk_frames=8)
    mel = _mel(voc, 1, 120)
    one_shot = voc._synthesize(mel)
    monkeypatch.setattr(voc, "context_frames", lambda: 4)
    assert (voc.synthesize(mel) - one_shot).abs().max() > 1e-4


def test_one_window_runs_in_one_piece(monkeypatch):
    voc = zoo.create("griffinlim", n_iter=3, chunk_frames=10)
    ctx = voc.context_frames()
    calls = []
    real = voc._synthesize
    monkeypatch.setattr(voc, "_synthesize", lambda m: calls.append(m.shape[-1]) or real(m))
    voc.synthesize(_mel(voc, 1, 10 + 2 * ctx))
    assert calls == [10 + 2 * ctx]
    calls.clear()
    voc.synthesize(_mel(voc, 1, 11 + 2 * ctx))
    assert len(calls) == -(-(11 + 2 * ctx) // 10) and max(calls) == 10 + 2 * ctx


def test_vocode_keeps_short_mels_and_padding():
    """The windows go through vocode: padded batches and 1-frame mels still give their exact lengths."""
    voc = zoo.create("griffinlim", n_iter=2, chunk_frames=4)
    mel = _mel(voc, 2, 60)
    audio, lengths = voc.vocode(mel, [60, 33])
    assert lengths.tolist() == [60 * voc.hop_length, 33 * voc.hop_length]
    alone = voc.vocode(mel[1, :, :33])[0]
    torch.testing.assert_close(audio[1, : 33 * voc.hop_length], alone, rtol=0, atol=1e-6)
    assert audio[1, 33 * voc.hop_length:].abs().max() == 0
    assert voc.vocode(mel[0, :, :1])[0].shape == (voc.hop_length,)


def test_chunk_frames_checked():
    with pytest.raises(ValueError, match="chunk_frames must be >= 0"):
        zoo.create("griffinlim", chunk_frames=-1)
