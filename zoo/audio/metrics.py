"""Quality metrics, exactly as defined in the project's QUALITY.md.

* :func:`mr_stft_distance`: mean over (n_fft, hop) in (512, 128), (1024, 256), (2048, 512) of spectral
  convergence ``||A - B||_F / ||A||_F`` plus log-magnitude distance ``mean |log(A + 1e-7) - log(B + 1e-7)|``,
  with ``A = |STFT(reference)|``, ``B = |STFT(estimate)|`` (Hann window, centred).
* :func:`log_mel_l1`: mean absolute difference of the ``hifigan`` log-mel features.

Both cut the two signals to the shorter length. Lower is better.

Beside them, as QUALITY.md asks, the measures vocoder papers report (higher is better; they need the optional
``quality`` extra, ``pip install "vocoder-zoo[quality]"``):

* :func:`stoi`: short-time objective intelligibility (``pystoi``), 0 to 1.
* :func:`pesq_wb`: wideband PESQ (``pesq``) at 16 kHz, 1.04 to 4.64.
* :func:`dnsmos`: DNSMOS overall and P.808 MOS (``speechmos``'s ONNX models on onnxruntime), 1 to 5, no
  reference needed.

:func:`score` computes all of them for one clip, named as in :data:`METRIC_COLUMNS`.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor

from zoo.core.mel import MelConfig, mel_spectrogram

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


# ---------------------------------------------------------------------- perceptual and intelligibility metrics
# STOI, wideband PESQ and DNSMOS come from optional packages (``pip install "vocoder-zoo[quality]"``): pystoi,
# pesq and speechmos (whose wheel ships Microsoft's DNSMOS ONNX models, run here with onnxruntime).

QUALITY_EXTRA = 'pip install "vocoder-zoo[quality]"'
QUALITY_PACKAGES = ("pystoi", "pesq", "speechmos", "onnxruntime")
#: Column names of every metric, as the benchmark, ``zoo compare``'s page and its ``metrics.csv`` spell them.
METRIC_COLUMNS = ("stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808", "mr_stft", "log_mel_l1")
#: Higher is better for these; lower for the rest.
HIGHER_IS_BETTER = frozenset({"stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808"})
PESQ_MAX = 4.643888  # wideband PESQ (P.862.2 mapping) of a signal against itself
PESQ_RATE = 16000
DNSMOS_RATE = 16000


class MissingExtraError(ImportError):
    """An optional dependency of a metric is not installed; the message names the extra that brings it."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{module} is not installed; STOI, PESQ and DNSMOS need the quality extra: "
                                f"{QUALITY_EXTRA}") from exc


def quality_available() -> bool:
    """True when every package of the ``quality`` extra imports."""
    return all(importlib.util.find_spec(m) is not None for m in QUALITY_PACKAGES)


def metric_versions() -> dict[str, str]:
    """Versions of the packages the metrics come from (``"missing"`` for one that is not installed)."""
    out = {}
    for pkg in ("torch", *QUALITY_PACKAGES):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def resample(audio: Tensor, orig: int, new: int) -> Tensor:
    """Band-limited (sinc, Hann window) resampling of a 1-D signal, as torchaudio does it."""
    if orig == new:
        return audio

    return AF.resample(audio.float(), orig, new)


def _np(x: Tensor) -> Any:
    return x.detach().double().cpu().numpy()


def stoi(estimate: Tensor, reference: Tensor, sample_rate: int) -> float:
    """Short-time objective intelligibility (Taal et al. 2011), 0 to 1, higher is better
    (``pystoi.stoi(reference, estimate, sample_rate, extended=False)``; both cut to the shorter length)."""
    x, y = _pair(estimate, reference)
    return float(_require("pystoi").stoi(_np(y), _np(x), sample_rate, extended=False))


def pesq_wb(estimate: Tensor, reference: Tensor, sample_rate: int) -> float:
    """Wideband PESQ (ITU-T P.862.2), 1.04 to 4.64, higher is better: both signals resampled to 16 kHz,
    then ``pesq.pesq(16000, reference, estimate, "wb")``. A signal PESQ finds no speech in scores 1.0."""
    x, y = _pair(estimate, reference)
    x16, y16 = resample(x, sample_rate, PESQ_RATE), resample(y, sample_rate, PESQ_RATE)
    pesq = _require("pesq")
    try:
        return float(pesq.pesq(PESQ_RATE, _np(y16), _np(x16), "wb"))
    except pesq.NoUtterancesError:
        return 1.0


_DNSMOS_LOCK = threading.Lock()


def dnsmos(audio: Tensor, sample_rate: int) -> dict[str, float]:
    """DNSMOS (Reddy et al. 2022, P.835 and P.808 heads), 1 to 5, higher is better, needs no reference:
    ``{"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"}`` of ``audio`` resampled to 16 kHz, with the
    ONNX models shipped inside the ``speechmos`` package (no download)."""
    if not isinstance(audio, Tensor) or audio.dim() != 1 or not audio.is_floating_point() or audio.numel() == 0:
        raise ValueError("audio must be a non-empty 1-D float tensor of samples")
    _require("onnxruntime")
    speechmos = _require("speechmos.dnsmos")
    x = resample(audio.double(), sample_rate, DNSMOS_RATE).clamp(-1, 1)
    with _DNSMOS_LOCK:
        out = speechmos.run(_np(x).astype("float32"), sr=DNSMOS_RATE)
    return {"dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_sig": float(out["sig_mos"]),
            "dnsmos_bak": float(out["bak_mos"]), "dnsmos_p808": float(out["p808_mos"])}


def score(estimate: Tensor, reference: Tensor | None, sample_rate: int, *, perceptual: bool = True) -> dict[str, float]:
    """Every metric of :data:`METRIC_COLUMNS` for one vocoded clip (``reference`` the recording it was made
    from, at the same rate; ``None`` for a mel with no recording: DNSMOS only). ``perceptual=False`` leaves
    STOI, PESQ and DNSMOS out (no optional packages needed); with it, a missing package raises
    :class:`MissingExtraError`."""
    out: dict[str, float] = {}
    if reference is not None:
        if perceptual:
            out["stoi"] = stoi(estimate, reference, sample_rate)
            out["pesq_wb"] = pesq_wb(estimate, reference, sample_rate)
        if sample_rate == MelConfig.preset("hifigan").sample_rate:
            out["log_mel_l1"] = log_mel_l1(estimate, reference)
        out["mr_stft"] = mr_stft_distance(estimate, reference)
    if perceptual:
        out.update(dnsmos(estimate.float(), sample_rate))
    return out
