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
from zoo.gated import fast_inference
from zoo.mel import MelConfig
from zoo.stream import in_windows
from zoo.timemajor import (
    conv_taps,
    conv_taps_winograd,
    pad_rows,
    padded,
    tap_weights,
    winograd_group_weights,
    winograd_work,
)
from zoo.vocoder import Vocoder

LRELU_SLOPE = 0.1
#: Residual-block convs at least this wide take their taps three at a time through Winograd F(4, 3) in
#: :meth:`HiFiGAN.generate_time_major` (narrower ones: the transforms cost more than they save).
WINOGRAD_MIN_CHANNELS = 128


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

    def generate_time_major(self, mel: Tensor) -> Tensor:
        """:meth:`generate` for inference on CPU, the same function evaluated faster (no autograd).

        Every activation is a time-major ``[T, C]`` buffer with zero rows for the convs' padding, and every
        conv is one matrix product per tap on shifted row ranges (:func:`zoo.timemajor.conv_taps`), which
        runs nearer this CPU's matmul peak than the direct convolution kernels at these widths (32 to 512
        channels, 3 to 11 taps). Residual updates accumulate in place; the three blocks of a stage share
        the first LeakyReLU of their input; the transposed convs are polyphase: one product per input step
        gives ``rate`` output rows (``ceil(kernel / rate)`` of them overlap-added), so the upsampled rows
        come out in time order without a scatter.
        """
        return torch.stack([self._generate_one(m) for m in mel.unbind(0)])

    def _generate_one(self, mel: Tensor) -> Tensor:
        c: HiFiGANConfig = self.config  # type: ignore[assignment]
        t = mel.shape[-1]
        x = pad_rows(mel.t(), 3, 3)
        h = conv_taps(mel.new_empty(t, self.conv_pre.out_channels), x, 0, tap_weights(self.conv_pre.weight), 1,
                      self.conv_pre.bias)
        for i, up in enumerate(self.ups):
            h, t = _upsample_time_major(up, h), t * c.upsample_rates[i]
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            pad = max(_same_padding(conv.kernel_size[0], conv.dilation[0])
                      for b in blocks for conv in b.modules() if isinstance(conv, nn.Conv1d))
            ch = h.shape[1]
            act = padded(h, pad, t, pad, ch)  # LeakyReLU of a block's running value
            mid = padded(h, pad, t, pad, ch) if c.resblock == "1" else None  # ResBlock1's inner conv output
            first_act = padded(h, pad, t, pad, ch)
            torch.ops.aten.leaky_relu.out(h, LRELU_SLOPE, out=first_act[pad:pad + t])
            acc = h.new_empty(t, ch)
            run = h.new_empty(t, ch) if len(blocks) > 1 else acc
            work: dict[int, tuple[Tensor, Tensor]] = {}  # Winograd scratch per dilation
            for j, block in enumerate(blocks):
                out = acc if j == 0 else run
                src, val = first_act, h  # the block's input: its LeakyReLU and its value
                branches = _block_branches(block)
                for convs in branches:
                    for n, layer in enumerate(convs):
                        k, d = layer.kernel_size[0], layer.dilation[0]
                        first = pad - _same_padding(k, d)
                        if n < len(convs) - 1:  # an inner conv: into ``mid``, then its LeakyReLU
                            assert mid is not None
                            inner = mid[pad:pad + t]
                            _resblock_conv(inner, src, first, layer, work)
                            F.leaky_relu_(inner, LRELU_SLOPE)
                            src = mid
                        else:  # the branch's last conv: the residual update, in place
                            if val is not out:
                                out.copy_(val)
                            _resblock_conv(out, src, first, layer, work, accumulate=True)
                    val = out
                    if convs is not branches[-1]:  # the next branch's input
                        torch.ops.aten.leaky_relu.out(out, LRELU_SLOPE, out=act[pad:pad + t])
                        src = act
                if j:
                    acc.add_(run)
            h = acc.div_(self.num_kernels)
        xp = padded(h, 3, t, 3, h.shape[1])
        torch.ops.aten.leaky_relu.out(h, 0.01, out=xp[3:3 + t])
        y = conv_taps(h.new_empty(t, 1), xp, 0, tap_weights(self.conv_post.weight), 1, self.conv_post.bias)
        return torch.tanh_(y[:, 0])

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"hifigan takes no sampling options, got {sorted(sampling)}")
        ctx = self.context_frames()
        fast = fast_inference() and mel.device.type == "cpu" and mel.dtype == torch.float32
        gen = self.generate_time_major if fast else self.generate
        return in_windows(mel.shape[-1], self.config.chunk_frames, ctx, ctx,  # type: ignore[attr-defined]
                          self.hop_length, lambda lo, hi: gen(mel[..., lo:hi]))

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



def _block_branches(block: nn.Module) -> list[list[nn.Conv1d]]:
    """A residual block's branches, each the convs it applies in order (LeakyReLU before each)."""
    if isinstance(block, ResBlock1):
        return [[c1, c2] for c1, c2 in zip(block.convs1, block.convs2, strict=True)]
    assert isinstance(block, ResBlock2)
    return [[conv] for conv in block.convs]


def _resblock_conv(out: Tensor, src: Tensor, first: int, layer: nn.Conv1d, work: dict[int, tuple[Tensor, Tensor]],
                   *, accumulate: bool = False) -> None:
    """One residual-block conv on time-major buffers (:func:`zoo.timemajor.conv_taps`' arguments): from
    :data:`WINOGRAD_MIN_CHANNELS` channels and 3 taps on, its taps three at a time through Winograd F(4, 3)
    (``work``: scratch per dilation, made on first use)."""
    k, d, taps = layer.kernel_size[0], layer.dilation[0], tap_weights(layer.weight)
    if k < 3 or min(layer.in_channels, layer.out_channels) < WINOGRAD_MIN_CHANNELS:
        conv_taps(out, src, first, taps, d, layer.bias, accumulate=accumulate)
        return
    if d not in work:
        work[d] = winograd_work(src, d, layer.in_channels, layer.out_channels)
    conv_taps_winograd(out, src, first, taps, winograd_group_weights(taps), d, layer.bias, work[d],
                       accumulate=accumulate)


def _upsample_time_major(up: nn.ConvTranspose1d, x: Tensor) -> Tensor:
    """``up(leaky_relu(x))`` on a time-major ``x [T, C_in]`` -> ``[T * rate, C_out]`` (polyphase).

    Output row ``s * rate + r`` of the un-cropped transposed conv is ``sum_j x[s - j] @ W[:, :, j rate + r]``
    (``j < ceil(kernel / rate)``): one ``[C_in, rate * C_out]`` product per tap ``j`` on shifted rows, whose
    ``[T + n - 1, rate * C_out]`` result read as ``[(T + n - 1) rate, C_out]`` is the output in time order;
    the padding crops ``(kernel - rate) / 2`` rows from the front.
    """
    rate, kernel, pad = up.stride[0], up.kernel_size[0], up.padding[0]
    c_in, c_out = up.in_channels, up.out_channels
    n = -(-kernel // rate)
    t = x.shape[0]
    w = up.weight
    if n * rate != kernel:
        w = F.pad(w, (0, n * rate - kernel))
    taps = w.view(c_in, c_out, n, rate).permute(2, 0, 3, 1).reshape(n, c_in, rate * c_out)  # [n, C_in, rate*C_out]
    xp = padded(x, n - 1, t, n - 1, c_in)
    torch.ops.aten.leaky_relu.out(x, LRELU_SLOPE, out=xp[n - 1:n - 1 + t])
    full = x.new_empty(t + n - 1, rate * c_out)
    # Row s of ``full`` takes x[s - j] through tap j: tap j reads xp rows from n - 1 - j.
    taps = taps.flip(0).contiguous()
    bias = up.bias.repeat(rate) if up.bias is not None else None
    conv_taps(full, xp, 0, taps, 1, bias)
    return full.view(-1, c_out)[pad:pad + t * rate]
