"""Output distributions of autoregressive vocoders, each with its loss and its sampler.

* :class:`MuLawSoftmax`: 256-way (or ``classes``-way) softmax over mu-law quantised samples.
* :class:`DiscretizedMixLogistic`: a mixture of logistics discretised to ``num_classes`` levels in [-1, 1]
  (PixelCNN++, r9y9's MoL WaveNet, Parallel WaveNet's teacher).
* :class:`Gaussian`: a single Gaussian (ClariNet's teacher), plus :func:`kl_gaussians`, the closed-form
  regularised KL divergence used for distillation.

Network outputs are ``y_hat [B, C, T]``: the parameters at step ``t`` describe sample ``t + 1`` in
teacher-forced training (callers shift). Every ``loss`` returns per-element negative log-likelihoods
(``reduce=False``) unless told to reduce.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class OutputDistribution(Protocol):
    """What a WaveNet needs from its output distribution."""

    name: str
    out_channels: int
    input_channels: int

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor: ...

    def sample(self, y_hat: Tensor, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        ...

    def input_from_sample(self, x: Tensor) -> Tensor: ...

    def to_audio(self, x: Tensor) -> Tensor: ...


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None,
             low: float = 1e-5, high: float = 1.0 - 1e-5) -> Tensor:
    u = torch.empty(shape, dtype=like.dtype, device=like.device)
    return u.uniform_(low, high, generator=generator)


# ---------------------------------------------------------------------- mu-law
def mulaw_encode(x: Tensor, mu: int = 255) -> Tensor:
    """``sign(x) * log(1 + mu |x|) / log(1 + mu)`` for ``x`` in [-1, 1]."""
    mu_t = torch.tensor(float(mu), dtype=x.dtype, device=x.device)
    return torch.sign(x) * torch.log1p(mu_t * x.abs()) / torch.log1p(mu_t)


def mulaw_decode(y: Tensor, mu: int = 255) -> Tensor:
    """Inverse of :func:`mulaw_encode`."""
    return torch.sign(y) * ((1.0 + mu) ** y.abs() - 1.0) / mu


def quantize(x: Tensor, classes: int) -> Tensor:
    """[-1, 1] -> integer classes ``0 .. classes - 1`` (r9y9: ``(x + 1) / 2 * (classes - 1)``, rounded)."""
    return ((x.clamp(-1, 1) + 1.0) / 2.0 * (classes - 1)).round().long()


def dequantize(q: Tensor, classes: int) -> Tensor:
    return 2.0 * q.to(torch.get_default_dtype()) / (classes - 1) - 1.0


class MuLawSoftmax:
    """Softmax over ``classes`` mu-law levels; the network reads its previous sample one-hot."""

    name = "mulaw"

    def __init__(self, classes: int = 256) -> None:
        self.classes = classes
        self.out_channels = classes
        self.input_channels = classes

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy per element; ``y`` holds class indices ``[B, T]``."""
        if y.is_floating_point():
            raise ValueError("mu-law targets must be integer class indices")
        return F.cross_entropy(y_hat, y.reshape(y_hat.shape[0], -1), reduction="none")

    def sample(self, y_hat: Tensor, *, generator: torch.Generator | None = None, temperature: float = 1.0,
               uniforms: Tensor | None = None) -> Tensor:
        """Class indices ``[B, T]`` drawn from ``softmax(y_hat / temperature)`` (Gumbel-max)."""
        logits = y_hat.transpose(1, 2)
        if temperature <= 0:
            return logits.argmax(-1)
        u = uniforms if uniforms is not None else _uniform(tuple(logits.shape), logits, generator)
        return (logits / temperature - torch.log(-torch.log(u))).argmax(-1)

    def input_from_sample(self, x: Tensor) -> Tensor:
        """One-hot ``[B, classes, T]`` of class indices ``[B, T]``."""
        return F.one_hot(x.long(), self.classes).transpose(1, 2).to(torch.get_default_dtype())

    def to_audio(self, x: Tensor) -> Tensor:
        return mulaw_decode(dequantize(x, self.classes), self.classes - 1)

    def target_from_audio(self, audio: Tensor) -> Tensor:
        return quantize(mulaw_encode(audio, self.classes - 1), self.classes)


# ---------------------------------------------------------------------- mixture of logistics
class DiscretizedMixLogistic:
    """``num_mixtures`` logistics (logit, mean, log-scale each), discretised to ``num_classes`` levels."""

    name = "mol"
    input_channels = 1

    def __init__(self, num_mixtures: int = 10, num_classes: int = 65536, log_scale_min: float = -16.0) -> None:
        self.num_mixtures = num_mixtures
        self.num_classes = num_classes
        self.log_scale_min = log_scale_min
        self.out_channels = 3 * num_mixtures

    def params(self, y_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(logit_probs, means, log_scales)`` each ``[B, T, M]`` (log-scales clamped)."""
        if y_hat.dim() != 3 or y_hat.shape[1] != self.out_channels:
            raise ValueError(f"y_hat must be [B, {self.out_channels}, T], got {tuple(y_hat.shape)}")
        m = self.num_mixtures
        y = y_hat.transpose(1, 2)
        return y[..., :m], y[..., m:2 * m], torch.clamp(y[..., 2 * m:3 * m], min=self.log_scale_min)

    def loss(self, y_hat: Tensor, y: Tensor, reduce: bool = False) -> Tensor:
        """Negative log-likelihood per element ``[B, T]`` of targets ``y`` in [-1, 1]."""
        logit_probs, means, log_scales = self.params(y_hat)
        y = y.reshape(y_hat.shape[0], -1, 1)
        centered = y - means
        inv_stdv = torch.exp(-log_scales)
        half_bin = 1.0 / (self.num_classes - 1)
        plus_in = inv_stdv * (centered + half_bin)
        min_in = inv_stdv * (centered - half_bin)
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        log_cdf_plus = plus_in - F.softplus(plus_in)  # the left edge bin (y = -1)
        log_one_minus_cdf_min = -F.softplus(min_in)  # the right edge bin (y = 1)
        mid_in = inv_stdv * centered
        log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
        # Blend with float masks (as the reference) so every branch is evaluated in the same order.
        wide = (cdf_delta > 1e-5).to(y_hat.dtype)
        inner = wide * torch.log(torch.clamp(cdf_delta, min=1e-12)) + (1.0 - wide) * (
            log_pdf_mid - math.log((self.num_classes - 1) / 2))
        top = (y > 0.999).to(y_hat.dtype)
        inner = top * log_one_minus_cdf_min + (1.0 - top) * inner
        bottom = (y < -0.999).to(y_hat.dtype)
        log_probs = bottom * log_cdf_plus + (1.0 - bottom) * inner
        log_probs = log_probs + F.log_softmax(logit_probs, dim=-1)
        m = log_probs.max(dim=-1, keepdim=True).values
        nll = -(m.squeeze(-1) + torch.log(torch.exp(log_probs - m).sum(dim=-1)))
        return nll.sum() if reduce else nll

    def sample(self, y_hat: Tensor, *, generator: torch.Generator | None = None, temperature: float = 1.0,
               uniforms: tuple[Tensor, Tensor] | None = None, clamp_log_scale: bool = True) -> Tensor:
        """Samples ``[B, T]`` in [-1, 1]: Gumbel-max choice of a mixture, then the logistic inverse CDF.

        ``uniforms = (u_mixture [B, T, M], u_logistic [B, T])`` replays recorded draws exactly;
        ``temperature`` scales the logistic noise (0 gives the chosen mixture's mean).
        """
        m = self.num_mixtures
        y = y_hat.transpose(1, 2)
        logit_probs = y[..., :m]
        if uniforms is None:
            u_mix = _uniform(tuple(logit_probs.shape), logit_probs, generator)
            u_log = _uniform(tuple(logit_probs.shape[:-1]), logit_probs, generator)
        else:
            u_mix, u_log = uniforms
        choice = (logit_probs - torch.log(-torch.log(u_mix))).argmax(dim=-1, keepdim=True)
        means = y[..., m:2 * m].gather(-1, choice).squeeze(-1)
        log_scales = y[..., 2 * m:3 * m].gather(-1, choice).squeeze(-1)
        if clamp_log_scale:
            log_scales = torch.clamp(log_scales, min=self.log_scale_min)
        x = means + temperature * torch.exp(log_scales) * (torch.log(u_log) - torch.log(1.0 - u_log))
        return torch.clamp(x, -1.0, 1.0)

    def input_from_sample(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], 1, -1)

    def to_audio(self, x: Tensor) -> Tensor:
        return x


# ---------------------------------------------------------------------- Gaussian
class Gaussian:
    """A single Gaussian per step: ``y_hat[:, 0]`` the mean, ``y_hat[:, 1]`` the log standard deviation."""

    name = "gaussian"
    out_channels = 2
    input_channels = 1

    def __init__(self, log_std_min: float = -9.0) -> None:
        self.log_std_min = log_std_min

    def params(self, y_hat: Tensor) -> tuple[Tensor, Tensor]:
        if y_hat.dim() != 3 or y_hat.shape[1] != 2:
            raise ValueError(f"y_hat must be [B, 2, T] (mean, log_std), got {tuple(y_hat.shape)}")
        return y_hat[:, 0], torch.clamp(y_hat[:, 1], min=self.log_std_min)

    def loss(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Negative log-likelihood per element ``[B, T]``."""
        mean, log_std = self.params(y_hat)
        y = y.reshape(mean.shape)
        return -0.5 * (-math.log(2.0 * math.pi) - 2.0 * log_std - torch.pow(y - mean, 2) * torch.exp(-2.0 * log_std))

    def sample(self, y_hat: Tensor, *, generator: torch.Generator | None = None, temperature: float = 1.0,
               noise: Tensor | None = None) -> Tensor:
        mean, log_std = self.params(y_hat)
        if noise is None:
            noise = torch.empty_like(mean).normal_(generator=generator)
        return mean + temperature * torch.exp(log_std) * noise

    def input_from_sample(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], 1, -1)

    def to_audio(self, x: Tensor) -> Tensor:
        return x


def kl_gaussians(mu_q: Tensor, logs_q: Tensor, mu_p: Tensor, logs_p: Tensor, *, log_std_min: float = -6.0,
                 reg_weight: float = 4.0, kind: str = "qp", reduce: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """ClariNet's regularised closed-form KL between Gaussians; returns ``(total, kl, reg)``.

    ``kind="qp"`` is KL(q || p) (student q, teacher p; the default), ``"pq"`` swaps the roles. Log-stds are
    clamped at ``log_std_min`` inside the KL; the regulariser ``(logs_q - logs_p)^2`` uses the raw values;
    ``total = kl + reg_weight * reg``. With ``reduce`` each is averaged.
    """
    if kind == "pq":
        mu_q, logs_q, mu_p, logs_p = mu_p, logs_p, mu_q, logs_q
    elif kind != "qp":
        raise ValueError(f"kind must be 'qp' or 'pq', got {kind!r}")
    lq = torch.clamp(logs_q, min=log_std_min)
    lp = torch.clamp(logs_p, min=log_std_min)
    kl = (lp - lq) + 0.5 * ((torch.exp(2.0 * lq) + torch.pow(mu_p - mu_q, 2)) * torch.exp(-2.0 * lp) - 1.0)
    reg = torch.pow(logs_q - logs_p, 2)
    total = kl + reg_weight * reg
    if reduce:
        return total.mean(), kl.mean(), reg.mean()
    return total, kl, reg


def get_distribution(name: str, **kwargs: float) -> MuLawSoftmax | DiscretizedMixLogistic | Gaussian:
    """``"mulaw"``, ``"mol"`` or ``"gaussian"`` with its keyword arguments."""
    table = {"mulaw": MuLawSoftmax, "mol": DiscretizedMixLogistic, "gaussian": Gaussian}
    try:
        cls = table[name]
    except KeyError:
        raise ValueError(f"unknown output distribution {name!r}; known: {sorted(table)}") from None
    return cls(**kwargs)  # type: ignore[arg-type]
