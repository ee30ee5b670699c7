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

from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.stream import in_windows
from zoo.core.vocoder import Vocoder
from zoo.kernels import native, tapconv
from zoo.kernels.gated_infer import fast_inference
from zoo.kernels.timemajor import (
    conv_taps,
    conv_taps_winograd,
    pad_rows,
    padded,
    tap_weights,
    winograd_group_weights,
    winograd_taps,
    winograd_work,
)

LRELU_SLOPE = 0.1
#: Residual-block convs at least this wide take their taps three at a time through Winograd F(4, 3) in
#: :meth:`HiFiGAN.generate_time_major` (narrower ones: the transforms cost more than they save).
WINOGRAD_MIN_CHANNELS = 128
#: The same for the compiled convs (:mod:`zoo.kernels.tapconv`), in float32 (with AVX2 or AVX-512) and bfloat16,
#: whose Winograd transforms run fused on blocks in cache.
WINOGRAD_MIN_CHANNELS_KERNEL = 64
WINOGRAD_MIN_CHANNELS_BF16 = 128


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
        stages = len(self.upsample_rates)
        if self.upsample_initial_channel < 2**stages:
            raise ValueError(f"upsample_initial_channel must be at least {2**stages}: the channels are halved at "
                             f"each of the {stages} upsampling stages and would reach 0, got "
                             f"{self.upsample_initial_channel}")

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


class HiFiGAN(Vocoder[HiFiGANConfig]):
    """The HiFi-GAN generator: deterministic, fully convolutional, parallel."""

    architecture = "hifigan"
    compiled_kernels = {"tapconv": (torch.float32, torch.bfloat16)}

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
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
        conv is one matrix product per tap on shifted row ranges (:func:`zoo.kernels.timemajor.conv_taps`), which
        runs nearer this CPU's matmul peak than the direct convolution kernels at these widths (32 to 512
        channels, 3 to 11 taps). Residual updates accumulate in place; the three blocks of a stage share
        the first LeakyReLU of their input; the transposed convs are polyphase: one product per input step
        gives ``rate`` output rows (``ceil(kernel / rate)`` of them overlap-added), so the upsampled rows
        come out in time order without a scatter.

        A bfloat16 model runs the same schedule on :mod:`zoo.kernels.tapconv`'s kernel: conv inputs and weights in
        bfloat16, every conv's taps summed in float32, the residual stream in float32 (rounding the convs'
        outputs to bfloat16, as ``generate`` in bfloat16 does, costs 1.9% of the MR-STFT distance on
        LJSpeech; this costs none). It returns float32 audio.
        """
        # the conv-backend choice every model shares, for the forms this class declares
        backend = tapconv.conv_backend(mel.dtype, self.compiled_kernels["tapconv"])
        if backend.compiled:
            ops: _Float32Ops = _KernelOps(self, mel.dtype)
        elif mel.dtype == torch.float32:
            ops = _Float32Ops()
        else:
            raise RuntimeError(f"no time-major {mel.dtype} path here: {backend.reason}")
        return torch.stack([self._generate_one(m, ops) for m in mel.unbind(0)])

    def _generate_one(self, mel: Tensor, ops: _Float32Ops) -> Tensor:
        c = self.config
        t = mel.shape[-1]
        h = ops.conv_pre(self.conv_pre, mel)
        for i, up in enumerate(self.ups):
            h, t = ops.upsample(up, h), t * c.upsample_rates[i]
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            pad = max(_same_padding(conv.kernel_size[0], conv.dilation[0])
                      for b in blocks for conv in b.modules() if isinstance(conv, nn.Conv1d))
            ch = h.shape[1]
            act = ops.act_buffer(h, pad, t)  # LeakyReLU of a block's running value
            mid_act = ops.act_buffer(h, pad, t) if c.resblock == "1" else None  # of ResBlock1's inner conv output
            mid = ops.inner_buffer(mid_act, h, pad, t) if mid_act is not None else None
            first_act = ops.act_buffer(h, pad, t)
            ops.leaky(h, LRELU_SLOPE, first_act[pad:pad + t])
            acc = h.new_empty(t, ch)
            run = h.new_empty(t, ch) if len(blocks) > 1 else acc
            for j, block in enumerate(blocks):
                out = acc if j == 0 else run
                src, val = first_act, h  # the block's input: its LeakyReLU and its value
                branches = _block_branches(block)
                for convs in branches:
                    for n, layer in enumerate(convs):
                        first = pad - _same_padding(layer.kernel_size[0], layer.dilation[0])
                        if n < len(convs) - 1:  # an inner conv: into ``mid``, then its LeakyReLU
                            assert mid is not None and mid_act is not None
                            ops.conv(mid, src, first, layer)
                            ops.leaky(mid, LRELU_SLOPE, mid_act[pad:pad + t])
                            src = mid_act
                        else:  # the branch's last conv: the residual update, in place
                            if val is not out:
                                out.copy_(val)
                            ops.conv(out, src, first, layer, accumulate=True)
                    val = out
                    if convs is not branches[-1]:  # the next branch's input
                        ops.leaky(out, LRELU_SLOPE, act[pad:pad + t])
                        src = act
                if j:
                    acc.add_(run)
            h = acc.div_(self.num_kernels)
        return ops.conv_post(self.conv_post, h)

    def _packed(self, layer: nn.Module, kind: str, dtype: torch.dtype) -> Tensor:
        """``layer``'s weights in :func:`zoo.kernels.tapconv.pack`'s layout for ``dtype`` operands, made on first use
        and kept until the weights change (weights made under ``torch.inference_mode``, which keep no
        version counter, are packed on every call). ``kind``: ``"taps"`` for a conv, ``"winograd"`` for its
        3-tap groups' transformed filters ``[groups, 6, ...]``, ``"up"`` for a transposed conv's polyphase
        taps (:func:`_polyphase_taps`)."""
        w = layer.weight

        @torch.no_grad()
        def make() -> Tensor:
            if kind == "winograd":
                return torch.stack([tapconv.pack(u, dtype) for u in winograd_group_weights(tap_weights(w).float())])
            return tapconv.pack(_polyphase_taps(layer) if kind == "up" else tap_weights(w), dtype)

        return native.kept(layer, ("hifigan", kind, dtype), (w,), make)

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"hifigan takes no sampling options, got {sorted(sampling)}")
        ctx = self.context_frames()
        fast = fast_inference() and mel.device.type == "cpu" and (
            mel.dtype == torch.float32 or tapconv.conv_backend(mel.dtype, self.compiled_kernels["tapconv"]).compiled)
        gen = self.generate_time_major if fast else self.generate
        return in_windows(mel.shape[-1], self.config.chunk_frames, ctx, ctx,
                          self.hop_length, lambda lo, hi: gen(mel[..., lo:hi]))

    def context_frames(self) -> int:
        """Mel frames on each side that can influence an output sample, from the layer geometry.

        Summed in frames: the 7-tap input conv (3 frames); per stage at ``R`` samples per frame, the
        transposed conv (``ceil(kernel / rate)`` input steps) and the widest residual block (``(k - 1) / 2``
        per dilation, plus the undilated second convs of ``ResBlock1``); the 7-tap output conv.
        """
        c = self.config
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


class _Float32Ops:
    """:meth:`HiFiGAN.generate_time_major`'s buffers and convs in float32 (:mod:`zoo.kernels.timemajor`)."""

    def __init__(self) -> None:
        self.work: dict[tuple[int, int, int], tuple[Tensor, Tensor]] = {}  # Winograd scratch per dilation, widths

    @staticmethod
    def act_buffer(h: Tensor, pad: int, t: int) -> Tensor:
        return padded(h, pad, t, pad, h.shape[1])

    @staticmethod
    def inner_buffer(mid_act: Tensor, h: Tensor, pad: int, t: int) -> Tensor:
        return mid_act[pad:pad + t]  # the inner conv writes its output in place of its LeakyReLU

    @staticmethod
    def leaky(x: Tensor, slope: float, out: Tensor) -> None:
        torch.ops.aten.leaky_relu.out(x, slope, out=out)

    def conv(self, out: Tensor, src: Tensor, first: int, layer: nn.Conv1d, *, accumulate: bool = False) -> None:
        """A residual-block conv: from :data:`WINOGRAD_MIN_CHANNELS` channels and 3 taps on, its taps
        three at a time through Winograd F(4, 3)."""
        k, d, taps = layer.kernel_size[0], layer.dilation[0], tap_weights(layer.weight)
        if k < 3 or min(layer.in_channels, layer.out_channels) < WINOGRAD_MIN_CHANNELS:
            conv_taps(out, src, first, taps, d, layer.bias, accumulate=accumulate)
            return
        key = (d, layer.in_channels, layer.out_channels)
        if key not in self.work:
            self.work[key] = winograd_work(src, d, layer.in_channels, layer.out_channels)
        conv_taps_winograd(out, src, first, taps, winograd_group_weights(taps), d, layer.bias, self.work[key],
                           accumulate=accumulate)

    def weights(self, layer: nn.Module, kind: str = "taps") -> Tensor:
        """A conv's taps ``[k, C_in, C_out]`` (``kind="up"``: a transposed conv's polyphase taps)."""
        return _polyphase_taps(layer) if kind == "up" else tap_weights(layer.weight)  # type: ignore[arg-type]

    #: ``out (+)= bias + sum_j src[first + r + j d] @ taps[j]`` (:func:`zoo.kernels.timemajor.conv_taps`' arguments).
    product = staticmethod(conv_taps)

    def conv_pre(self, conv: nn.Conv1d, mel: Tensor) -> Tensor:
        x = pad_rows(mel.t(), 3, 3)
        out = mel.new_empty(mel.shape[-1], conv.out_channels, dtype=torch.float32)
        return self.product(out, x, 0, self.weights(conv), 1, conv.bias)

    def upsample(self, up: nn.ConvTranspose1d, x: Tensor) -> Tensor:
        """``up(leaky_relu(x))`` on a time-major ``x [T, C_in]`` -> ``[T * rate, C_out]`` (polyphase).

        Output row ``s * rate + r`` of the un-cropped transposed conv is ``sum_j x[s - j] @ W[:, :, j rate + r]``
        (``j < ceil(kernel / rate)``): one ``[C_in, rate * C_out]`` product per tap ``j`` on shifted rows, whose
        ``[T + n - 1, rate * C_out]`` result read as ``[(T + n - 1) rate, C_out]`` is the output in time order;
        the padding crops ``(kernel - rate) / 2`` rows from the front.
        """
        rate, pad, c_out = up.stride[0], up.padding[0], up.out_channels
        taps = self.weights(up, "up")
        bias = up.bias.repeat(rate) if up.bias is not None else None
        n, t = taps.shape[0], x.shape[0]
        xp = self.act_buffer(x, n - 1, t)
        self.leaky(x, LRELU_SLOPE, xp[n - 1:n - 1 + t])
        full = x.new_empty(t + n - 1, rate * c_out, dtype=torch.float32)
        self.product(full, xp, 0, taps, 1, bias)
        return full.view(-1, c_out)[pad:pad + t * rate]

    def conv_post(self, conv: nn.Conv1d, h: Tensor) -> Tensor:
        """The 7-tap conv to one channel, its tanh: torch's float32 products in every op set (one output
        column is too narrow for the kernel's tiles, and it is 0.1% of the work)."""
        t = h.shape[0]
        xp = padded(h, 3, t, 3, h.shape[1])
        torch.ops.aten.leaky_relu.out(h, 0.01, out=xp[3:3 + t])
        w = tap_weights(conv.weight).float()
        bias = conv.bias.float() if conv.bias is not None else None
        y = conv_taps(h.new_empty(t, 1), xp, 0, w, 1, bias)
        return torch.tanh_(y[:, 0])


class _KernelOps(_Float32Ops):
    """The same on :mod:`zoo.kernels.tapconv`'s compiled convs, operands in ``dtype`` (float32, or bfloat16: weights
    and conv inputs rounded, sums, outputs and the residual stream in float32). Packed weights are kept on
    the model (:meth:`HiFiGAN._packed`)."""

    def __init__(self, model: HiFiGAN, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype
        self.min_winograd = WINOGRAD_MIN_CHANNELS_BF16 if dtype == torch.bfloat16 else WINOGRAD_MIN_CHANNELS_KERNEL

    def act_buffer(self, h: Tensor, pad: int, t: int) -> Tensor:  # type: ignore[override]
        return padded(h.new_empty(0, dtype=self.dtype), pad, t, pad, h.shape[1])

    def inner_buffer(self, mid_act: Tensor, h: Tensor, pad: int, t: int) -> Tensor:  # type: ignore[override]
        if self.dtype == torch.float32:
            return mid_act[pad:pad + t]
        return h.new_empty(t, h.shape[1])

    def leaky(self, x: Tensor, slope: float, out: Tensor) -> None:  # type: ignore[override]
        if out.dtype == torch.bfloat16:
            tapconv.leaky_relu(x, slope, out)
        else:
            torch.ops.aten.leaky_relu.out(x, slope, out=out)

    def weights(self, layer: nn.Module, kind: str = "taps") -> Tensor:
        return self.model._packed(layer, kind, self.dtype)

    product = staticmethod(tapconv.conv_taps)

    def conv(self, out: Tensor, src: Tensor, first: int, layer: nn.Conv1d, *, accumulate: bool = False) -> None:
        """A residual-block conv on the kernel: from ``min_winograd`` channels and 3 taps on, its taps three at
        a time through the kernel's Winograd F(4, 3) (:func:`zoo.kernels.timemajor.winograd_taps`)."""
        k, d = layer.kernel_size[0], layer.dilation[0]
        if k < 3 or min(layer.in_channels, layer.out_channels) < self.min_winograd:
            tapconv.conv_taps(out, src, first, self.weights(layer), d, layer.bias, accumulate=accumulate)
            return

        us = self.weights(layer, "winograd")
        direct_taps: list[Tensor] = []  # packed on first use: only the rows past whole tiles and k % 3 taps need them

        def winograd(g: int, o: Tensor, f: int, rows: int, b: Tensor | None, add: bool) -> None:
            tapconv.winograd3(o, src, f, d, rows, us[g], b, accumulate=add)

        def direct(o: Tensor, f: int, j: slice, b: Tensor | None, add: bool) -> None:
            if not direct_taps:
                direct_taps.append(self.weights(layer))
            tapconv.conv_taps(o, src, f, direct_taps[0][j], d, b, accumulate=add)

        # tapconv.winograd3's tiles read 2 d rows past their last output
        winograd_taps(out, src.shape[0], first, k, d, layer.bias, winograd, direct, tile_reach=2 * d,
                      accumulate=accumulate)


def _polyphase_taps(up: nn.ConvTranspose1d) -> Tensor:
    """A transposed conv's weights as ``n = ceil(kernel / rate)`` taps ``[n, C_in, rate * C_out]``, tap ``j``
    for input step ``s - (n - 1 - j)`` (the order :func:`zoo.kernels.timemajor.conv_taps` reads rows)."""
    rate, kernel = up.stride[0], up.kernel_size[0]
    c_in, c_out = up.in_channels, up.out_channels
    n = -(-kernel // rate)
    w = up.weight
    if n * rate != kernel:
        w = F.pad(w, (0, n * rate - kernel))
    return w.view(c_in, c_out, n, rate).permute(2, 0, 3, 1).reshape(n, c_in, rate * c_out).flip(0).contiguous()
