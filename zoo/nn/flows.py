"""Normalising-flow layers shared by WaveGlow, FloWaveNet and Parallel WaveNet.

Every layer maps in the *density* direction ``x -> z``: ``forward(x, ...) -> (z, logdet)`` with a per-item
log-determinant ``[B]`` (summed over channels and time), and ``inverse(z, ...) -> x`` for sampling.

* :class:`InvertibleConv1x1` (Glow/WaveGlow): ``z = W x`` per time step; ``logdet = T log|det W|``. The
  inverse is computed once in float64 and cached for inference.
* :class:`ActNorm` (Glow/FloWaveNet): ``z = scale * (x + loc)`` per channel, data-dependent initialisation.
* :class:`WaveGlowCoupling` and :class:`FloWaveNetCoupling` (both :class:`AffineCoupling`): half of the
  channels conditions an affine map of the other half; WaveGlow's (shift first, ``z_b = exp(log_s) x_b + t``)
  and FloWaveNet's (log-scale first, ``z_b = (x_b - t) exp(-log_s)``).
* :func:`squeeze` / :func:`unsqueeze`: ``[B, C, T] <-> [B, C f, T / f]`` with channel ``c f + j`` holding
  ``x[c, t f + j]`` (WaveGlow's grouping of audio and mel; FloWaveNet's squeeze).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.kernels.gated_infer import fast_inference


def squeeze(x: Tensor, factor: int) -> Tensor:
    """``[B, C, T] -> [B, C * factor, T // factor]``; output channel ``c * factor + j`` is ``x[c, t * factor + j]``."""
    b, c, t = x.shape
    if t % factor:
        raise ValueError(f"cannot squeeze {t} steps by {factor}: the length must be a multiple of {factor}")
    return x.reshape(b, c, t // factor, factor).permute(0, 1, 3, 2).reshape(b, c * factor, t // factor)


def unsqueeze(x: Tensor, factor: int) -> Tensor:
    """Inverse of :func:`squeeze`."""
    b, cf, t = x.shape
    if cf % factor:
        raise ValueError(f"{cf} channels are not divisible by {factor}")
    return x.reshape(b, cf // factor, factor, t).permute(0, 1, 3, 2).reshape(b, cf // factor, t * factor)


class InvertibleConv1x1(nn.Module):
    """An invertible 1x1 convolution ``z = W x`` (parameter ``conv.weight [C, C, 1]``, no bias).

    Initialised as a random orthonormal matrix with determinant +1 (as WaveGlow). The inverse is computed
    in float64 on first use after the weight changes and cached (inference never inverts twice).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1, bias=False)
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        if torch.det(w) < 0:
            w[:, 0] = -w[:, 0]
        with torch.no_grad():
            self.conv.weight.copy_(w[..., None])
        self._inverse: Tensor | None = None
        self._inverse_key: tuple[int, int, torch.device, torch.dtype] | None = None

    @property
    def weight(self) -> Tensor:
        return self.conv.weight[..., 0]

    def log_det(self) -> Tensor:
        """``log|det W|`` (computed in float64, returned in the weight's dtype)."""
        return torch.linalg.slogdet(self.weight.double())[1].to(self.conv.weight.dtype)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        w = self.conv.weight
        z = nn.functional.conv1d(x, w.to(x.dtype))
        logdet = self.log_det().to(x.dtype) * x.shape[-1]
        return z, logdet.expand(x.shape[0])

    def inverse_weight(self) -> Tensor:
        """``W^-1`` as ``[C, C, 1]`` (float64 inversion, cached until the weight changes; a weight made under
        ``torch.inference_mode`` has no version counter to tell a change, so it is inverted on every call)."""
        w = self.conv.weight
        key = None if w.is_inference() else (w._version, w.data_ptr(), w.device, w.dtype)
        if self._inverse is None or key is None or self._inverse_key != key or torch.is_grad_enabled():
            inv = torch.linalg.inv(w[..., 0].double()).to(torch.float32 if w.dtype in (torch.float16, torch.bfloat16)
                                                         else w.dtype)[..., None]
            if torch.is_grad_enabled():
                return inv
            self._inverse, self._inverse_key = inv, key
        return self._inverse

    def inverse(self, z: Tensor) -> Tensor:
        inv = self.inverse_weight()
        if z.dtype in (torch.float16, torch.bfloat16):
            return nn.functional.conv1d(z.float(), inv.float()).to(z.dtype)
        return nn.functional.conv1d(z, inv.to(z.dtype))


class ActNorm(nn.Module):
    """``z = scale * (x + loc)`` per channel (``loc``, ``scale`` are ``[1, C, 1]``).

    On the first forward in training mode with ``initialized == 0`` the parameters are set from the batch
    so that the output has zero mean and unit variance per channel. ``initialized`` is a persistent
    buffer, so a saved zoo model stays initialised; converters of reference checkpoints (which lack it)
    set it to 1.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1))
        self.scale = nn.Parameter(torch.ones(1, channels, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        mean, std = flat.mean(dim=1), flat.std(dim=1)
        self.loc.copy_(-mean.view(1, -1, 1))
        self.scale.copy_((1.0 / (std + 1e-6)).view(1, -1, 1))
        self.initialized.fill_(1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        if self.training and int(self.initialized) == 0:
            self.initialize(x)
        z = self.scale * (x + self.loc)
        logdet = torch.log(torch.abs(self.scale)).sum() * x.shape[-1]
        return z, logdet.expand(x.shape[0])

    def inverse(self, z: Tensor) -> Tensor:
        return z / self.scale - self.loc


class AffineCoupling(nn.Module):
    """An affine coupling layer: the channel halves ``x = (x_a, x_b)``; a network ``net(x_a, c)`` gives a
    log-scale and a shift for ``x_b``, and ``x_a`` passes unchanged, so the inverse needs only ``z_a = x_a``.

    The base holds the network and evaluates it (its inference fast path ``net.infer`` under
    :func:`~zoo.kernels.gated_infer.fast_inference`); :class:`WaveGlowCoupling` and :class:`FloWaveNetCoupling` write
    each paper's map and its inverse. ``forward(x, c) -> (z, logdet [B], log_s)``, ``inverse(z, c) -> x``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def net_halves(self, x_a: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """The network's output on ``x_a`` (conditioned on ``c``), split into its first and second halves."""
        infer = getattr(self.net, "infer", None)
        out = self.net(x_a, c) if infer is None or not fast_inference() else infer(x_a, c)
        n = out.shape[1] // 2
        return out[:, :n], out[:, n:]


def _halves(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_a, x_b)``: the first ``C // 2`` channels and the rest."""
    n_a = x.shape[1] // 2
    return x[:, :n_a], x[:, n_a:]


class WaveGlowCoupling(AffineCoupling):
    """WaveGlow's affine coupling (Prenger et al. 2018, section 2.2).

    ``(t, log s) = WN(x_a, mel)`` (NVIDIA's ``WN`` puts the shift first), ``z_b = s * x_b + t``,
    ``logdet = sum(log s)``; inverse ``x_b = (z_b - t) / s``.
    """

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        """``(z, logdet [B], log_s)``."""
        x_a, x_b = _halves(x)
        shift, log_s = self.net_halves(x_a, c)
        z_b = torch.exp(log_s) * x_b + shift
        return torch.cat([x_a, z_b], 1), log_s.flatten(1).sum(1), log_s

    def inverse(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        z_a, z_b = _halves(z)
        shift, log_s = self.net_halves(z_a, c)
        x_b = (z_b - shift) / torch.exp(log_s)
        return torch.cat([z_a, x_b], 1)


class FloWaveNetCoupling(AffineCoupling):
    """FloWaveNet's affine coupling (Kim et al. 2019; the reference code's ``AffineCoupling``).

    ``(log s, t) = net(x_a, c)`` (log-scale first), ``z_b = (x_b - t) / s``, ``logdet = -sum(log s)``;
    inverse ``x_b = z_b * s + t``.
    """

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        """``(z, logdet [B], log_s)``."""
        x_a, x_b = _halves(x)
        log_s, shift = self.net_halves(x_a, c)
        z_b = (x_b - shift) * torch.exp(-log_s)
        return torch.cat([x_a, z_b], 1), -log_s.flatten(1).sum(1), log_s

    def inverse(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        z_a, z_b = _halves(z)
        log_s, shift = self.net_halves(z_a, c)
        x_b = z_b * torch.exp(log_s) + shift
        return torch.cat([z_a, x_b], 1)
