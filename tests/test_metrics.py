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
