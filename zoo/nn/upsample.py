"""Conditioning upsamplers: mel frames ``[B, C, frames]`` -> per-sample features ``[B, C, frames * hop]``.

Every upsampler returns exactly ``frames * hop`` steps for any ``frames >= 1``.

* :class:`TransposedConvUpsampler`: WaveGlow's ``ConvTranspose1d(C, C, kernel, stride=hop)``, trimmed.
* :class:`RepeatConvUpsampler`: nearest repetition, then a smoothing conv (no checkerboard artefacts).
* :class:`Stretch2dUpsampler`: r9y9 wavenet_vocoder HEAD ``ConvInUpsampleNetwork`` (a context conv over
  ``cin_pad`` extra frames on each side, then per scale a nearest stretch and a ``(1, 2s + 1)`` 2-D conv).
* :class:`TransposedConv2dUpsampler`: the 2-D transposed-conv stack acting on the mel as a 1-channel image
  (r9y9 2092a64: kernel ``(3, s)`` + ReLU; FloWaveNet/ClariNet: kernel ``(3, 2s)`` + LeakyReLU(0.4)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.kernels.native import kept

if TYPE_CHECKING:
    from zoo.core.config import UpsamplerConfig


def _check(c: Tensor, channels: int | None = None) -> None:
    if c.dim() != 3:
        raise ValueError(f"conditioning must be [batch, channels, frames], got shape {tuple(c.shape)}")
    if channels is not None and c.shape[1] != channels:
        raise ValueError(f"conditioning has {c.shape[1]} channels, expected {channels}")
    if c.shape[-1] < 1:
        raise ValueError("conditioning has no frames")


class TransposedConvUpsampler(nn.Module):
    """WaveGlow: ``ConvTranspose1d(C, C, kernel_size, stride=hop)``, output cut to ``frames * hop``.

    Parameters ``conv.weight [C, C, kernel_size]`` and ``conv.bias [C]`` (WaveGlow's ``upsample.*``).

    Computed as one batched matrix product rather than by ``conv_transpose1d`` (the same sums in another
    order): output sample ``g * hop + p`` of channel ``c`` is ``bias[c] + sum_{j, i} W[i, c, j * hop + p] *
    mel[i, g - j]`` over the ``J = ceil(kernel / hop)`` frames that reach it, so the output, viewed as ``[C,
    frames, hop]``, is ``A @ W3[c]`` per channel with ``A [frames, J * C]`` the mel's last ``J`` frames at each
    step and ``W3 [C, J * C, hop]`` the weight rearranged (kept between calls while the weight is unchanged).
    torch's CPU ``conv_transpose1d`` ran this shape (80 channels, kernel 1024, stride 256) at 20-30 GFLOP/s,
    the product at 4-5x that.
    """

    def __init__(self, channels: int, hop: int, kernel_size: int | None = None) -> None:
        super().__init__()
        kernel_size = kernel_size or 4 * hop
        if kernel_size < hop:
            raise ValueError(f"kernel_size {kernel_size} must be >= hop {hop}")
        self.channels, self.hop = channels, hop
        self.conv = nn.ConvTranspose1d(channels, channels, kernel_size, stride=hop)

    def upsampled_length(self, frames: int) -> int:
        return frames * self.hop

    def forward(self, c: Tensor) -> Tensor:  # type: ignore[override]
        _check(c, self.channels)
        return self._upsample(c)

    def window(self, c: Tensor, start: int, stop: int) -> Tensor:
        """``forward(c)[..., start:stop]`` computed from only the frames those samples depend on."""
        _check(c, self.channels)
        frames, hop, kernel = c.shape[-1], self.hop, self.conv.kernel_size[0]
        if not 0 <= start < stop <= frames * hop:
            raise ValueError(f"window [{start}, {stop}) outside the {frames * hop} upsampled samples")
        first = max(0, -((kernel - 1 - start) // hop))  # ceil((start - kernel + 1) / hop), at least 0
        last = min(frames, (stop - 1) // hop + 1)
        return self._upsample(c[..., first:last])[..., start - first * hop: stop - first * hop]

    def _frame_weights(self) -> Tensor:
        """``W3 [C_out, J * C_in, hop]``: ``W3[c, j * C_in + i, p] = weight[i, c, j * hop + p]`` (zero past the
        kernel's end)."""
        w, hop = self.conv.weight, self.hop
        c_in, c_out, kernel = w.shape
        taps = -(-kernel // hop)
        if taps * hop != kernel:
            w = F.pad(w, (0, taps * hop - kernel))
        return w.reshape(c_in, c_out, taps, hop).permute(1, 2, 0, 3).reshape(c_out, taps * c_in, hop).contiguous()

    def _upsample(self, c: Tensor) -> Tensor:
        """The transposed conv's first ``frames * hop`` samples of ``c [B, C, frames]``."""
        w, bias, hop = self.conv.weight, self.conv.bias, self.hop
        batch, c_in, frames = c.shape
        if torch.is_grad_enabled() and w.requires_grad:
            w3 = self._frame_weights()  # part of the graph: made on every call
        else:
            w3 = kept(self, "frame_weights", [w], self._frame_weights)
        c_out, taps = w3.shape[0], w3.shape[1] // c_in
        padded = F.pad(c, (taps - 1, 0))
        # a[b, g, j * C_in + i] = c[b, i, g - j] (zero before the first frame)
        a = torch.stack([padded[:, :, taps - 1 - j: taps - 1 - j + frames] for j in range(taps)], 1)
        a = a.reshape(batch, taps * c_in, frames).transpose(1, 2)
        out = torch.matmul(a.unsqueeze(1), w3)  # [B, C_out, frames, hop]
        out.add_(bias.view(1, c_out, 1, 1))
        return out.view(batch, c_out, frames * hop)


class RepeatConvUpsampler(nn.Module):
    """Repeat every frame ``hop`` times, then a non-causal conv of ``kernel_size`` taps (``conv.*``)."""

    def __init__(self, channels: int, hop: int, kernel_size: int | None = None) -> None:
        super().__init__()
        kernel_size = kernel_size or 2 * hop + 1
        if kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd (symmetric padding keeps the length)")
        self.channels, self.hop = channels, hop
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, padding_mode="replicate")

    def upsampled_length(self, frames: int) -> int:
        return frames * self.hop

    def forward(self, c: Tensor) -> Tensor:  # type: ignore[override]
        _check(c, self.channels)
        return self.conv(c.repeat_interleave(self.hop, dim=-1))


class Stretch2dUpsampler(nn.Module):
    """r9y9 HEAD ``ConvInUpsampleNetwork``.

    ``conv_in.weight [C, C, 2 * cin_pad + 1]`` (no bias) reads ``cin_pad`` context frames on each side
    (the input has ``frames + 2 * cin_pad`` frames); then for each scale ``s``: nearest stretch by ``s``
    along time and ``up_layers.{j}.weight [1, 1, 1, 2s + 1]`` (no bias; the j-th 2-D conv). Output
    ``[B, C, (frames_in - 2 * cin_pad) * prod(scales)]``.
    """

    def __init__(self, channels: int, scales: Sequence[int], cin_pad: int = 2) -> None:
        super().__init__()
        self.channels, self.scales, self.cin_pad = channels, [int(s) for s in scales], cin_pad
        self.conv_in = nn.Conv1d(channels, channels, 2 * cin_pad + 1, bias=False)
        self.up_layers = nn.ModuleList(
            nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False) for s in self.scales
        )
        for layer in self.up_layers:
            nn.init.constant_(layer.weight, 1.0 / layer.weight.numel())

    @property
    def hop(self) -> int:
        return math.prod(self.scales)

    def upsampled_length(self, frames: int) -> int:
        """Steps produced from ``frames`` input frames (context frames included in ``frames``)."""
        return (frames - 2 * self.cin_pad) * self.hop

    def forward(self, c: Tensor) -> Tensor:  # type: ignore[override]
        _check(c, self.channels)
        if c.shape[-1] <= 2 * self.cin_pad:
            raise ValueError(f"need more than 2 * cin_pad = {2 * self.cin_pad} frames, got {c.shape[-1]}")
        x = self.conv_in(c).unsqueeze(1)
        for s, layer in zip(self.scales, self.up_layers, strict=True):
            x = layer(x.repeat_interleave(s, dim=-1))
        return x.squeeze(1)


class TransposedConv2dUpsampler(nn.Module):
    """A stack of ``ConvTranspose2d(1, 1, (freq_kernel, time_kernel), stride=(1, s))`` + activation.

    ``time_kernel=None`` uses ``2 * s`` (FloWaveNet/ClariNet); pass ``time_kernel`` equal to the scale for
    r9y9 2092a64. Time padding ``(time_kernel - s) // 2`` keeps the length exact, frequency padding
    ``freq_kernel // 2`` keeps the bands. Parameters ``convs.{j}.weight [1, 1, freq_kernel, time_kernel]``
    and ``convs.{j}.bias [1]``.
    """

    def __init__(self, scales: Sequence[int], freq_kernel: int = 3, time_kernel: int | None = None,
                 padding: tuple[int, int] | None = None, activation: str = "relu",
                 negative_slope: float = 0.4) -> None:
        super().__init__()
        if activation not in ("relu", "leaky_relu", "none"):
            raise ValueError(f"activation must be 'relu', 'leaky_relu' or 'none', got {activation!r}")
        self.scales = [int(s) for s in scales]
        self.activation, self.negative_slope = activation, negative_slope
        convs = []
        for s in self.scales:
            tk = time_kernel or 2 * s
            if (tk - s) % 2:
                raise ValueError(f"time kernel {tk} minus scale {s} must be even for an exact length")
            pad = padding or (freq_kernel // 2, (tk - s) // 2)
            convs.append(nn.ConvTranspose2d(1, 1, (freq_kernel, tk), stride=(1, s), padding=pad))
        self.convs = nn.ModuleList(convs)

    @property
    def hop(self) -> int:
        return math.prod(self.scales)

    def upsampled_length(self, frames: int) -> int:
        return frames * self.hop

    def forward(self, c: Tensor) -> Tensor:  # type: ignore[override]
        _check(c)
        x = c.unsqueeze(1)
        for conv in self.convs:
            x = conv(x)
            if self.activation == "relu":
                x = F.relu(x)
            elif self.activation == "leaky_relu":
                x = F.leaky_relu(x, self.negative_slope)
        return x.squeeze(1)


def build_upsampler(config: UpsamplerConfig, n_mels: int) -> nn.Module:
    """The upsampler a :class:`~zoo.core.config.UpsamplerConfig` describes, for ``n_mels`` bands."""
    if config.upsample == "stretch2d":
        return Stretch2dUpsampler(n_mels, config.upsample_scales, config.cin_pad)
    return TransposedConv2dUpsampler(config.upsample_scales, config.upsample_freq_kernel, config.upsample_time_kernel,
                                     activation=config.upsample_activation,
                                     negative_slope=config.upsample_negative_slope)
