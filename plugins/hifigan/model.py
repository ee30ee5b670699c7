"""HiFi-GAN generator (Kong et al. 2020), the configuration of jik876/hifi-gan V1, V2 and V3.

The mel goes through a 7-tap input conv, then per stage: LeakyReLU(0.1), a transposed conv that upsamples
by ``upsample_rates[i]``, and a multi-receptive-field fusion (the mean of residual blocks with different
kernel sizes and dilations); finally LeakyReLU (slope 0.01), a 7-tap conv to one channel and tanh.
Weights are plain convs: weight normalisation of the original checkpoints is folded by the converter.
Parameter names follow the reference (``conv_pre``, ``ups.i``, ``resblocks.j.convs1.k``, ``conv_post``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.config import VocoderConfig
from zoo.mel import MelConfig
from zoo.stream import in_windows
from zoo.vocoder import Vocoder

LRELU_SLOPE = 0.1


def _hifigan_mel() -> MelConfig:
    return MelConfig.preset("hifigan")


@dataclasses.dataclass
class HiFiGANConfig(VocoderConfig):
    """Generator hyperparameters; the defaults are V1 (``HiFiGANConfig.v1()``)."""

    mel: MelConfig = dataclasses.field(default_factory=_hifigan_mel)
    resblock: str = "1"
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    #: Longer mels are vocoded in windows of this many frames plus :meth:`HiFiGAN.context_frames` on each
    #: side, so peak memory does not grow with the utterance; the output equals the one-shot output
    #: (0 = never chunk).
    chunk_frames: int = 512

    def __post_init__(self) -> None:
        if self.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {self.resblock!r}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes must have the same length")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ValueError("resblock_kernel_sizes and resblock_dilation_sizes must have the same length")
        hop = 1
        for r, k in zip(self.upsample_rates, self.upsample_kernel_sizes, strict=True):
            hop *= r
            if (k - r) % 2:
                raise ValueError(f"upsample kernel {k} minus rate {r} must be even for exact lengths")
        if hop != self.mel.hop_length:
            raise ValueError(f"the product of upsample_rates ({hop}) must equal the mel hop ({self.mel.hop_length})")
        if self.chunk_frames < 0:
            raise ValueError(f"chunk_frames must be >= 0, got {self.chunk_frames}")

    @classmethod
    def v1(cls) -> HiFiGANConfig:
        return cls()

    @classmethod
    def v2(cls) -> HiFiGANConfig:
        return cls(upsample_initial_channel=128)

    @classmethod
    def v3(cls) -> HiFiGANConfig:
        return cls(resblock="2", upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                   upsample_initial_channel=256, resblock_kernel_sizes=(3, 5, 7),
                   resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)))


def _same_padding(kernel: int, dilation: int) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three pairs (dilated conv, plain conv), each pair a residual branch with LeakyReLU before each conv."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=_same_padding(kernel, 1)) for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    """Dilated convs, each a residual branch with LeakyReLU before it (V3)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=_same_padding(kernel, d)) for d in dilations
        )

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


class HiFiGAN(Vocoder):
    """The HiFi-GAN generator: deterministic, fully convolutional, parallel."""

    architecture = "hifigan"
    config_class = HiFiGANConfig

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__(config)
        c: HiFiGANConfig = self.config  # type: ignore[assignment]
        ch = c.upsample_initial_channel
        self.conv_pre = nn.Conv1d(c.mel.n_mels, ch, 7, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        block = ResBlock1 if c.resblock == "1" else ResBlock2
        for i, (rate, kernel) in enumerate(zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, kernel, rate, padding=(kernel - rate) // 2))
            for k, d in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(c_out, k, tuple(d)))
        self.conv_post = nn.Conv1d(ch // 2 ** len(c.upsample_rates), 1, 7, padding=3)
        self.num_kernels = len(c.resblock_kernel_sizes)

    def generate(self, mel: Tensor) -> Tensor:
        """The generator's forward pass: ``[B, n_mels, T]`` -> ``[B, T * hop]`` (no checks, differentiable)."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels: (i + 1) * self.num_kernels]
            acc = blocks[0](x)
            for b in blocks[1:]:
                acc = acc + b(x)
            x = acc / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # the default slope 0.01, as the reference
        return torch.tanh(x)[:, 0]

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"hifigan takes no sampling options, got {sorted(sampling)}")
        ctx = self.context_frames()
        return in_windows(mel.shape[-1], self.config.chunk_frames, ctx, ctx,  # type: ignore[attr-defined]
                          self.hop_length, lambda lo, hi: self.generate(mel[..., lo:hi]))

    def context_frames(self) -> int:
        """Mel frames on each side that can influence an output sample, from the layer geometry.

        Summed in frames: the 7-tap input conv (3 frames); per stage at ``R`` samples per frame, the
        transposed conv (``ceil(kernel / rate)`` input steps) and the widest residual block (``(k - 1) / 2``
        per dilation, plus the undilated second convs of ``ResBlock1``); the 7-tap output conv.
        """
        c: HiFiGANConfig = self.config  # type: ignore[assignment]
        reach, rate = 3.0, 1
        for rate_i, kernel in zip(c.upsample_rates, c.upsample_kernel_sizes, strict=True):
            reach += math.ceil(kernel / rate_i) / rate
            rate *= rate_i
            widest = 0
            for k, dilations in zip(c.resblock_kernel_sizes, c.resblock_dilation_sizes, strict=True):
                taps = sum(dilations) + (len(dilations) if c.resblock == "1" else 0)
                widest = max(widest, (k - 1) // 2 * taps)
            reach += widest / rate
        reach += 3 / rate
        return math.ceil(reach) + 1

