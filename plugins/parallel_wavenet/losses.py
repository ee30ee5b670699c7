"""Distillation losses of Parallel WaveNet and ClariNet.

* :func:`gaussian_kl_loss`: ClariNet's closed-form, regularised KL between the student's Gaussian
  ``q(x_t | z_<t) = N(mu_tot, exp(logs_tot))`` and a single-Gaussian teacher ``p(x_t | x_<t)``
  (``zoo.nn.distributions.kl_gaussians``: log-stds clamped at -6 in the KL, ``+ 4 (logs_q - logs_p)^2``).
* :func:`monte_carlo_kl`: Parallel WaveNet's estimate ``KL(P_S || P_T) = H(P_S, P_T) - H(P_S)`` for any
  teacher whose output distribution has a ``loss`` (negative log-likelihood), e.g. the discretised
  mixture of logistics: the cross-entropy is averaged over several draws of ``x_t`` from the student's
  known conditional at every step (the teacher's distribution at ``t`` only depends on ``x_<t``), and
  the student's entropy is exact, ``logs_tot + log(2 pi e) / 2`` per sample.
* :func:`frame_loss`: ClariNet's STFT ("power") loss, the MSE of linear STFT magnitudes (n_fft 1024,
  hop 256, rectangular window, centred reflect padding, ``sqrt(re^2 + im^2 + 1e-10)``).
* :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude L1 over several resolutions.

Shapes follow the reference: audio ``[B, 1, T]`` (or ``[B, T]``), student ``mu``/``logs`` ``[B, 1, T-1]``
describing ``x[..., 1:]``, teacher outputs ``[B, C, T]`` whose step ``t`` describes sample ``t + 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from zoo.nn.distributions import kl_gaussians

HALF_LOG_2PI_E = 0.5 * math.log(2.0 * math.pi * math.e)


def _as_batch_time(x: Tensor, name: str) -> Tensor:
    if x.dim() == 3 and x.shape[1] == 1:
        return x[:, 0]
    if x.dim() == 2:
        return x
    raise ValueError(f"{name} must be [B, T] or [B, 1, T], got shape {tuple(x.shape)}")


def gaussian_kl_loss(
    mu_s: Tensor,
    logs_s: Tensor,
    teacher_out: Tensor,
    *,
    kind: str = "qp",
    log_std_min: float = -6.0,
    reg_weight: float = 4.0,
) -> dict[str, Tensor]:
    """ClariNet's regularised closed-form KL between the student and a Gaussian teacher.

    ``teacher_out`` ``[B, 2, T]`` is the teacher's ``[mean, log_std]`` evaluated teacher-forced on the
    student's sample ``x``; its steps ``:-1`` describe ``x[..., 1:]``, like ``mu_s``/``logs_s``
    ``[B, 1, T-1]``.
    ``kind="qp"`` is the reverse KL(q || p) (default), ``"pq"`` the forward KL(p || q).
    Returns ``kl_total`` (KL + reg_weight * reg, averaged), ``kl`` and ``kl_reg`` (averaged) and
    ``kl_elementwise`` (unreduced KL).
    """
    if teacher_out.dim() != 3 or teacher_out.shape[1] != 2:
        raise ValueError(f"teacher_out must be [B, 2, T] (mean, log_std), got {tuple(teacher_out.shape)}")
    if mu_s.shape != logs_s.shape or mu_s.dim() != 3 or mu_s.shape[-1] != teacher_out.shape[-1] - 1:
        raise ValueError(
            f"student mu/log-scale must both be [B, 1, T-1] with T = {teacher_out.shape[-1]}, "
            f"got {tuple(mu_s.shape)} and {tuple(logs_s.shape)}"
        )
    mu_t = teacher_out[:, 0:1, :-1]
    logs_t = teacher_out[:, 1:2, :-1]
    total, kl, reg = kl_gaussians(
        mu_s, logs_s, mu_t, logs_t, log_std_min=log_std_min, reg_weight=reg_weight, kind=kind, reduce=False
    )
    return {"kl_total": total.mean(), "kl": kl.mean(), "kl_reg": reg.mean(), "kl_elementwise": kl}


def student_entropy(logs_s: Tensor) -> Tensor:
    """Mean differential entropy per sample of the student's Gaussians ``N(mu, exp(logs))``."""
    return logs_s.mean() + HALF_LOG_2PI_E


def monte_carlo_kl(
    mu_s: Tensor,
    logs_s: Tensor,
    teacher_out: Tensor,
    teacher_nll: Callable[[Tensor, Tensor], Tensor],
    *,
    x: Tensor | None = None,
    n_samples: int = 4,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Parallel WaveNet's Monte Carlo ``KL(P_S || P_T) = H(P_S, P_T) - H(P_S)`` per sample.

    ``teacher_out`` ``[B, C, T]`` is the teacher's output on the student sample ``x`` (``[B, 1, T]``); its
    step ``t`` is the teacher's distribution of ``x_{t+1}`` given ``x_<=t``. ``teacher_nll(y_hat, y)``
    returns the per-element negative log-likelihood ``[B, T-1]`` of ``y`` ``[B, 1, T-1]`` under
    ``y_hat`` ``[B, C, T-1]`` (the teacher's output distribution's ``loss``). The cross-entropy is
    averaged over ``n_samples`` reparameterised draws ``mu_s + exp(logs_s) * eps`` per step (the first
    draw is the sample ``x`` itself when given); the student's entropy is exact.
    Returns ``kl``, ``cross_entropy``, ``entropy`` (means per sample) and ``cross_entropy_elementwise``
    (``[n_samples, B, T-1]``, for standard errors).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if mu_s.shape != logs_s.shape or mu_s.dim() != 3 or mu_s.shape[-1] != teacher_out.shape[-1] - 1:
        raise ValueError(
            f"student mu/log-scale must both be [B, 1, T-1] with T = {teacher_out.shape[-1]}, "
            f"got {tuple(mu_s.shape)} and {tuple(logs_s.shape)}"
        )
    y_hat = teacher_out[:, :, :-1]
    draws = []
    if x is not None:
        draws.append(x[:, :, 1:])
    while len(draws) < n_samples:
        eps = torch.randn(mu_s.shape, generator=generator, device=mu_s.device, dtype=mu_s.dtype)
        draws.append(mu_s + torch.exp(logs_s) * eps)
    ce = torch.stack([teacher_nll(y_hat, y).reshape(mu_s.shape[0], -1) for y in draws])
    cross_entropy = ce.mean()
    entropy = student_entropy(logs_s)
    return {
        "kl": cross_entropy - entropy,
        "cross_entropy": cross_entropy,
        "entropy": entropy,
        "cross_entropy_elementwise": ce,
    }


def stft_magnitude(
    x: Tensor,
    n_fft: int = 1024,
    hop_length: int = 256,
    win_length: int | None = None,
    window: str = "rectangular",
    eps: float = 1e-10,
) -> Tensor:
    """``sqrt(re^2 + im^2 + eps)`` of a centred, reflect-padded STFT: ``[B, n_fft // 2 + 1, frames]``.

    ``window`` is ``"rectangular"`` (ClariNet: ``torch.stft`` without a window) or ``"hann"``.
    """
    x = _as_batch_time(x, "audio")
    win_length = win_length or n_fft
    if x.shape[-1] <= n_fft // 2:
        raise ValueError(
            f"audio of {x.shape[-1]} samples is too short for an STFT with n_fft={n_fft} "
            f"(reflect padding needs more than {n_fft // 2})"
        )
    if window == "rectangular":
        win = torch.ones(win_length, device=x.device, dtype=x.dtype)
    elif window == "hann":
        win = torch.hann_window(win_length, device=x.device, dtype=x.dtype)
    else:
        raise ValueError(f"window must be 'rectangular' or 'hann', got {window!r}")
    spec = torch.stft(
        x, n_fft, hop_length, win_length, window=win, center=True, pad_mode="reflect", return_complex=True
    )
    return torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + eps)


def frame_loss(
    x_student: Tensor,
    x_true: Tensor,
    n_fft: int = 1024,
    hop_length: int = 256,
    win_length: int | None = None,
    window: str = "rectangular",
) -> Tensor:
    """ClariNet's frame loss: MSE between linear STFT magnitudes of the student's and the real audio.

    As in the reference, pass ``x_student[..., 1:]`` and ``x_true[..., 1:]`` (the first sample of a
    student output is 0 by construction).
    """
    a = _as_batch_time(x_student, "x_student")
    b = _as_batch_time(x_true, "x_true")
    if a.shape != b.shape:
        raise ValueError(f"x_student {tuple(a.shape)} and x_true {tuple(b.shape)} must have the same shape")
    mag_s = stft_magnitude(a, n_fft, hop_length, win_length, window)
    mag_t = stft_magnitude(b, n_fft, hop_length, win_length, window)
    return torch.mean((mag_s - mag_t) ** 2)


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + mean |log magnitude difference| averaged over STFT resolutions.

    ``resolutions`` holds ``(n_fft, hop_length, win_length)`` triples (Hann windows); the default is the
    set used by Parallel WaveGAN. ``forward`` returns ``(spectral_convergence, log_magnitude)``.
    """

    DEFAULT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))

    def __init__(
        self, resolutions: Sequence[tuple[int, int, int]] = DEFAULT_RESOLUTIONS, eps: float = 1e-7
    ) -> None:
        super().__init__()
        if not resolutions:
            raise ValueError("resolutions must hold at least one (n_fft, hop_length, win_length)")
        for n_fft, hop, win in resolutions:
            if not (0 < hop and 0 < win <= n_fft):
                raise ValueError(f"bad STFT resolution (n_fft={n_fft}, hop={hop}, win={win})")
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.eps = eps

    def forward(self, x_student: Tensor, x_true: Tensor) -> tuple[Tensor, Tensor]:
        a = _as_batch_time(x_student, "x_student")
        b = _as_batch_time(x_true, "x_true")
        sc_total = a.new_zeros(())
        mag_total = a.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            mag_s = stft_magnitude(a, n_fft, hop, win, "hann", eps=self.eps)
            mag_t = stft_magnitude(b, n_fft, hop, win, "hann", eps=self.eps)
            sc_total = sc_total + torch.linalg.norm(mag_t - mag_s) / torch.linalg.norm(mag_t)
            mag_total = mag_total + torch.mean(torch.abs(torch.log(mag_t) - torch.log(mag_s)))
        n = len(self.resolutions)
        return sc_total / n, mag_total / n


__all__ = [
    "gaussian_kl_loss",
    "monte_carlo_kl",
    "student_entropy",
    "stft_magnitude",
    "frame_loss",
    "MultiResolutionSTFTLoss",
]
