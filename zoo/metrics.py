"""Quality metrics, exactly as defined in the project's QUALITY.md.

* :func:`mr_stft_distance`: mean over (n_fft, hop) in (512, 128), (1024, 256), (2048, 512) of spectral
  convergence ``||A - B||_F / ||A||_F`` plus log-magnitude distance ``mean |log(A + 1e-7) - log(B + 1e-7)|``,
  with ``A = |STFT(reference)|``, ``B = |STFT(estimate)|`` (Hann window, centred).
* :func:`log_mel_l1`: mean absolute difference of the ``hifigan`` log-mel features.

Both cut the two signals to the shorter length. Lower is better.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.mel import MelConfig, mel_spectrogram

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))


def _pair(estimate: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    for name, x in (("estimate", estimate), ("reference", reference)):
        if not isinstance(x, Tensor) or x.dim() != 1 or not x.is_floating_point():
            raise ValueError(f"{name} must be a 1-D float tensor of samples")
    n = min(estimate.numel(), reference.numel())
    if n == 0:
        raise ValueError("empty signal")
    return estimate[:n].double(), reference[:n].double()


def mr_stft_distance(estimate: Tensor, reference: Tensor) -> float:
    """Multi-resolution STFT distance between ``estimate`` (vocoded) and ``reference`` (1-D signals)."""
    x, y = _pair(estimate, reference)
    total = 0.0
    for n_fft, hop in RESOLUTIONS:
        window = torch.hann_window(n_fft, dtype=torch.float64)
        a = torch.stft(y, n_fft, hop, n_fft, window, center=True, return_complex=True).abs()
        b = torch.stft(x, n_fft, hop, n_fft, window, center=True, return_complex=True).abs()
        sc = torch.linalg.norm(a - b) / torch.linalg.norm(a)
        lm = (torch.log(a + 1e-7) - torch.log(b + 1e-7)).abs().mean()
        total += float(sc + lm)
    return total / len(RESOLUTIONS)


def log_mel_l1(estimate: Tensor, reference: Tensor) -> float:
    """Mean |M(estimate) - M(reference)| with the ``hifigan`` log-mel preset."""
    x, y = _pair(estimate, reference)
    cfg = MelConfig.preset("hifigan")
    return float((mel_spectrogram(x, cfg) - mel_spectrogram(y, cfg)).abs().mean())
