"""The mel contract in practice: compare two mel conventions and convert features between them.

:func:`check_mel` says field by field how a TTS model's features differ from what a vocoder expects, and
which differences :func:`adapt` can bridge. :func:`adapt` converts features:

* exact (up to float rounding, away from the log floor and clipping): log base (ln, log10, dB and its
  reference level), [0, 1] min-max normalisation, mean/variance normalisation;
* approximate: magnitude vs power (a mel band sums several bins, so ``mel(|X|)^2 != mel(|X|^2)``);
* approximate (documented, measured in the tests): a different filterbank (n_mels, f_min, f_max, mel
  scale or norm) through the least-squares inverse of the source filterbank, and a different hop or
  sample rate through linear interpolation along time;
* not bridgeable: a vocoder filterbank reaching below the features' ``f_min`` or above their ``f_max``
  (or Nyquist frequency): those bands were never measured.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor

from zoo.core.mel import MelConfig, compress, decompress
from zoo.core.vocoder import as_float_tensor

# Fields whose difference changes only the value mapping (exactly invertible).
EXACT_FIELDS = {"log", "log_floor", "ref_level_db", "normalize", "min_level_db", "mean", "std", "magnitude_eps"}
# Fields that change the filterbank (approximate: least-squares re-projection).
FILTERBANK_FIELDS = {"n_mels", "f_min", "f_max", "mel_scale", "mel_norm"}
# Fields that change the time axis (approximate: interpolation).
TIME_FIELDS = {"hop_length", "sample_rate"}
# Fields that change the analysis itself (approximate: small spectral smoothing differences).
ANALYSIS_FIELDS = {"n_fft", "win_length", "window", "padding", "pad_mode", "power"}


@dataclasses.dataclass
class MelReport:
    """The outcome of :func:`check_mel`: every differing field and whether it can be bridged."""

    differences: dict[str, tuple[Any, Any]]
    exact: list[str]
    approximate: list[str]
    impossible: list[str]

    @property
    def compatible(self) -> bool:
        return not self.differences

    @property
    def adaptable(self) -> bool:
        return not self.impossible

    def __str__(self) -> str:
        if not self.differences:
            return "mel configs match"
        lines = []
        for name, (mine, theirs) in self.differences.items():
            kind = ("exact adapter" if name in self.exact else "approximate adapter" if name in self.approximate
                    else "cannot be bridged")
            lines.append(f"{name}: vocoder {mine!r} vs features {theirs!r}  [{kind}]")
        return "\n".join(lines)


def as_mel_config(x: Any) -> MelConfig:
    """A :class:`~zoo.core.mel.MelConfig` from a MelConfig, a preset name, a dict or a vocoder (its ``mel_config``)."""
    if isinstance(x, MelConfig):
        return x
    if isinstance(x, str):
        return MelConfig.preset(x)
    if isinstance(x, dict):
        return MelConfig.from_dict(x)
    cfg = getattr(x, "mel_config", None)
    if isinstance(cfg, MelConfig):
        return cfg
    raise ValueError(f"expected a MelConfig, a preset name, a dict or a vocoder, got {type(x).__name__}")


def check_mel(vocoder: Any, other: Any) -> MelReport:
    """Compare the vocoder's mel contract with ``other`` (a MelConfig, preset name, dict or vocoder)."""
    mine, theirs = as_mel_config(vocoder), as_mel_config(other)
    diff = mine.diff(theirs)
    exact, approx, impossible = [], [], []
    for name in diff:
        if name in EXACT_FIELDS:
            exact.append(name)
        elif name in FILTERBANK_FIELDS | TIME_FIELDS | ANALYSIS_FIELDS:
            approx.append(name)
        else:
            impossible.append(name)
    # The vocoder needs bands the features never measured: a wider filterbank range cannot be invented.
    src_fmax = min(theirs.f_max if theirs.f_max is not None else theirs.sample_rate / 2, theirs.sample_rate / 2)
    dst_fmax = mine.f_max if mine.f_max is not None else mine.sample_rate / 2
    if dst_fmax > src_fmax + 1e-6:
        impossible.append("f_max")
    if mine.f_min < theirs.f_min - 1e-6:
        impossible.append("f_min")
    approx = [a for a in approx if a not in impossible]
    return MelReport(diff, exact, approx, impossible)


def _filterbank(m: MelConfig) -> Tensor:
    f_max = m.f_max if m.f_max is not None else m.sample_rate / 2
    return AF.melscale_fbanks(m.n_fft // 2 + 1, m.f_min, f_max, m.n_mels, m.sample_rate, m.mel_norm, m.mel_scale)


def _rebank(linear: Tensor, src: MelConfig, dst: MelConfig) -> Tensor:
    """Re-project a linear mel from the source filterbank onto the destination one (least squares)."""
    fb_src = _filterbank(src).double()  # [F_src, n_src]
    fb_dst = _filterbank(dst).double()  # [F_dst, n_dst]
    # Linear-frequency magnitude (power^p) estimated from the source mel, then interpolated onto the
    # destination's FFT grid and re-integrated by the destination filterbank.
    spec = torch.relu(torch.linalg.pinv(fb_src.T) @ linear.double())  # [F_src, T]
    f_src = torch.linspace(0, src.sample_rate / 2, fb_src.shape[0], dtype=torch.float64)
    f_dst = torch.linspace(0, dst.sample_rate / 2, fb_dst.shape[0], dtype=torch.float64)
    if fb_src.shape[0] != fb_dst.shape[0] or src.sample_rate != dst.sample_rate:
        idx = torch.clamp(f_dst / (src.sample_rate / 2) * (fb_src.shape[0] - 1), 0, fb_src.shape[0] - 1)
        lo = idx.floor().long()
        hi = torch.clamp(lo + 1, max=fb_src.shape[0] - 1)
        w = (idx - lo).unsqueeze(-1)
        spec = spec[..., lo, :] * (1 - w) + spec[..., hi, :] * w
        spec = torch.where((f_dst <= f_src[-1]).unsqueeze(-1), spec, torch.zeros_like(spec))
        # Scale: a magnitude spectrum grows with n_fft for a sinusoid; keep per-bin energy comparable.
        spec = spec * (dst.n_fft / src.n_fft) ** (dst.power if dst.power else 1.0)
    return (fb_dst.T @ spec).to(linear.dtype)


def _retime(mel: Tensor, src: MelConfig, dst: MelConfig) -> Tensor:
    """Resample the frame axis from the source frame rate to the destination one (linear)."""
    rate_src = src.sample_rate / src.hop_length
    rate_dst = dst.sample_rate / dst.hop_length
    if abs(rate_src - rate_dst) < 1e-9:
        return mel
    frames = max(1, int(round(mel.shape[-1] * rate_dst / rate_src)))
    squeeze = mel.dim() == 2
    x = mel[None] if squeeze else mel
    y = F.interpolate(x, size=frames, mode="linear", align_corners=False)
    return y[0] if squeeze else y


def adapt(mel: Tensor, src: Any, dst: Any) -> Tensor:
    """Convert features computed under ``src`` into the ``dst`` convention (see the module docstring).

    ``mel`` is ``[n_mels, frames]`` or ``[B, n_mels, frames]``. Raises ``ValueError`` when a difference
    cannot be bridged (the destination needs frequencies above the source's Nyquist frequency).
    """
    mel = as_float_tensor(mel, "mel")
    if mel.dim() not in (2, 3):
        raise ValueError(f"mel must be [n_mels, frames] or [batch, n_mels, frames]; got shape {tuple(mel.shape)}")
    src_c, dst_c = as_mel_config(src), as_mel_config(dst)
    report = check_mel(dst_c, src_c)
    if report.impossible:
        raise ValueError(f"cannot adapt mel features: {', '.join(report.impossible)} differ in a way no adapter "
                         f"can bridge:\n{report}")
    if mel.shape[-2] != src_c.n_mels:
        raise ValueError(f"mel has {mel.shape[-2]} bands but the source config says n_mels={src_c.n_mels}")
    if report.compatible:
        return mel
    linear = decompress(mel, src_c)  # the mel of |STFT|^src.power
    if src_c.power != dst_c.power:
        linear = linear.clamp_min(0) ** (dst_c.power / src_c.power)
    if any(f in report.differences for f in FILTERBANK_FIELDS | {"sample_rate", "n_fft"}):
        linear = _rebank(linear, src_c, dst_c)
    if any(f in report.differences for f in TIME_FIELDS):
        linear = _retime(linear, src_c, dst_c)
    return compress(linear, dst_c)
