"""FloWaveNet (Kim, Lee, Song, Kim and Yoon 2019): a single-stage multi-scale flow trained by likelihood.

``n_block`` blocks, each: squeeze audio and conditioning by 2 (``zoo.nn.flows.squeeze``), then ``n_flow``
flows of ActNorm + affine coupling (a non-causal WaveNet reading the first half of the audio channels and
the first half of the conditioning; ``zoo.nn.gated.WaveNetConditioner``), the halves of both the audio and
the conditioning swapped after every flow. After every ``block_per_split`` blocks (not the last) half of
the channels leave as ``z``, modelled by a learned Gaussian prior (a 2-layer WaveNet on the rest).
Everything but the model's wiring comes from the shared layers.

The loss is the reference's: ``-(log_p + logdet)`` with both sums divided by ``B * T`` (nats per sample).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor, nn

from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.noise import position_noise
from zoo.core.stream import in_windows
from zoo.core.vocoder import Vocoder, sampling_scale
from zoo.kernels import gated_infer
from zoo.kernels.gated_infer import fast_inference
from zoo.nn.flows import ActNorm, FloWaveNetCoupling, squeeze, unsqueeze
from zoo.nn.gated import WaveNetConditioner
from zoo.nn.upsample import TransposedConv2dUpsampler

LOG_2PI = math.log(2 * math.pi)


def _flowavenet_mel() -> MelConfig:
    return MelConfig.preset("flowavenet")


@dataclasses.dataclass
class FloWaveNetConfig(VocoderConfig):
    """Hyperparameters (defaults: the README config, 182 M parameters). ``filter_size`` is the coupling and
    prior WaveNets' width (hard-coded 256 in the reference). ``chunk_frames`` bounds memory on long inputs
    (windows plus :meth:`FloWaveNet.context_frames` of context, one noise draw: output unchanged; 0 = off)."""

    mel: MelConfig = dataclasses.field(default_factory=_flowavenet_mel)
    n_block: int = 8
    n_flow: int = 6
    n_layer: int = 2
    block_per_split: int = 4
    filter_size: int = 256
    prior_layers: int = 2
    upsample_scales: tuple[int, ...] = (16, 16)
    chunk_frames: int = 512

    def __post_init__(self) -> None:
        if math.prod(self.upsample_scales) != self.mel.hop_length:
            raise ValueError(f"prod(upsample_scales) must equal the hop {self.mel.hop_length}")
        if self.mel.hop_length % 2**self.n_block:
            raise ValueError(f"the hop ({self.mel.hop_length}) must be divisible by 2**n_block ({2**self.n_block})")

    def is_split(self, i: int) -> bool:
        return (i + 1) % self.block_per_split == 0 and i != self.n_block - 1

    @classmethod
    def small(cls, **kw: Any) -> FloWaveNetConfig:
        base = dict(n_block=4, n_flow=2, n_layer=2, block_per_split=2, filter_size=16)
        base.update(kw)
        return cls(**base)  # type: ignore[arg-type]


class Flow(nn.Module):
    """ActNorm, then an affine coupling conditioned on the first half of ``c``, then swap the halves."""

    def __init__(self, channels: int, cond_channels: int, filter_size: int, n_layer: int) -> None:
        super().__init__()
        self.actnorm = ActNorm(channels)
        net = WaveNetConditioner(channels // 2, channels, cond_channels // 2, channels=filter_size,
                                 gate_channels=2 * filter_size, skip_channels=filter_size, num_layers=n_layer,
                                 front="conv3_relu", head="relu_conv_relu_zeroconv", residual_scale=math.sqrt(0.5),
                                 last_layer_residual=True)
        self.coupling = FloWaveNetCoupling(net)

    def forward(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore[override]
        """``(out, c swapped, actnorm logdet [B], coupling logdet [B])``."""
        x, ld_act = self.actnorm(x)
        x, ld_cpl, _ = self.coupling(x, c.chunk(2, 1)[0])
        return _swap(x), _swap(c), ld_act, ld_cpl

    def reverse(self, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        z, c = _swap(z), _swap(c)
        x = self.coupling.inverse(z, c.chunk(2, 1)[0])
        return self.actnorm.inverse(x), c


def _swap(x: Tensor) -> Tensor:
    a, b = x.chunk(2, 1)
    return torch.cat([b, a], 1)


def _reverse_flows_inference(block: nn.Module, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``Flow.reverse`` over a block's flows (last first) without autograd and without swapping ``c``."""
    c_lo, c_hi = c.chunk(2, 1)
    # each half as the nets read it (a bfloat16 stack: one time-major copy shared by the flows that read it)
    stack = block.flows[0].coupling.net.stack
    read_lo, read_hi = gated_infer.time_major_cond(stack, c_lo), gated_infer.time_major_cond(stack, c_hi)
    swapped = False
    for flow in reversed(block.flows):
        # Flow.reverse: swap x and c, invert the coupling (conditioned on c's first half), then ActNorm.
        x = _swap(x)
        swapped = not swapped
        n = x.shape[1] // 2
        z_a, z_b = x[:, :n], x[:, n:]
        out = flow.coupling.net.infer(z_a, read_hi if swapped else read_lo)
        x_b = z_b * torch.exp(out[:, :n]) + out[:, n:]
        x = torch.cat([z_a, x_b], 1).div_(flow.actnorm.scale).sub_(flow.actnorm.loc)
    return x, (torch.cat([c_hi, c_lo], 1) if swapped else c)


class Block(nn.Module):
    """Squeeze, ``n_flow`` flows, and (for a split block) the Gaussian WaveNet prior of the factored-out half."""

    def __init__(self, channels: int, cond_channels: int, cfg: FloWaveNetConfig, split: bool) -> None:
        super().__init__()
        sq, sq_c = channels * 2, cond_channels * 2
        self.split = split
        self.flows = nn.ModuleList(Flow(sq, sq_c, cfg.filter_size, cfg.n_layer) for _ in range(cfg.n_flow))
        self.prior = (WaveNetConditioner(sq // 2, sq, sq_c, channels=cfg.filter_size, gate_channels=2 * cfg.filter_size,
                                         skip_channels=cfg.filter_size, num_layers=cfg.prior_layers, front="conv3_relu",
                                         head="relu_conv_relu_zeroconv", residual_scale=math.sqrt(0.5),
                                         last_layer_residual=True) if split else None)


class FloWaveNet(Vocoder[FloWaveNetConfig]):
    """FloWaveNet; sampling option ``temperature`` (default 0.8, the reference's synthesize.py)."""

    architecture = "flowavenet"
    compiled_kernels = {"tapconv": gated_infer.FORMS}  # the coupling nets' gated stacks
    deterministic = False

    def __init__(self, config: FloWaveNetConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.upsample = TransposedConv2dUpsampler(c.upsample_scales, 3, None, activation="leaky_relu",
                                                  negative_slope=0.4)
        self.blocks = nn.ModuleList()
        channels, cond = 1, c.mel.n_mels
        for i in range(c.n_block):
            split = c.is_split(i)
            self.blocks.append(Block(channels, cond, c, split))
            cond *= 2
            if not split:
                channels *= 2

    # ------------------------------------------------------------------ density direction
    def flow(self, x: Tensor, c_up: Tensor) -> dict[str, Any]:
        """Forward pass of audio ``x [B, 1, T]`` with upsampled conditioning: z, per-block sums, log_p, logdet."""
        b, _, t = x.shape
        out, c = x, c_up
        block_logdet, block_log_p = [], []
        for block in self.blocks:
            out, c = squeeze(out, 2), squeeze(c, 2)
            logdet = out.new_zeros(())
            for flow in block.flows:
                out, c, ld_act, ld_cpl = flow(out, c)
                logdet = logdet + ld_act.sum() + ld_cpl.sum()
            log_p = out.new_zeros(())
            if block.split:
                out, z = out.chunk(2, 1)
                mean, log_sd = block.prior(out, c).chunk(2, 1)
                log_p = (-0.5 * LOG_2PI - log_sd - 0.5 * (z - mean) ** 2 / torch.exp(2 * log_sd)).sum()
            block_logdet.append(logdet)
            block_log_p.append(log_p)
        log_p_sum = sum(block_log_p) + (0.5 * (-LOG_2PI - out.pow(2))).sum()
        return {"z": out, "block_logdet": torch.stack(block_logdet), "block_log_p": torch.stack(block_log_p),
                "log_p": log_p_sum / (b * t), "logdet": sum(block_logdet) / (b * t)}

    def loss(self, audio: Tensor, mel: Tensor) -> dict[str, Tensor]:
        c_up = self.upsample(mel)[..., : audio.shape[-1]]
        out = self.flow(audio[..., : c_up.shape[-1]].unsqueeze(1), c_up)
        loss = -(out["log_p"] + out["logdet"])
        return {"loss": loss, "log_p": out["log_p"].detach(), "logdet": out["logdet"].detach()}

    # ------------------------------------------------------------------ sampling direction
    def reverse(self, z: Tensor, c_up: Tensor) -> Tensor:
        """Audio ``[B, 1, T]`` from noise ``z [B, 1, T]`` (already scaled by the temperature).

        Without autograd the same function is evaluated faster: the coupling and prior WaveNets run their
        time-major inference path (:meth:`zoo.nn.gated.WaveNetConditioner.infer`) and the halves of the
        conditioning are read in place instead of being swapped after every flow (a parity bit says which
        half a flow reads).
        """
        cfg = self.config
        fast = fast_inference()
        x, c = z, c_up
        eps: list[Tensor] = []
        for i in range(cfg.n_block):
            x, c = squeeze(x, 2), squeeze(c, 2)
            if cfg.is_split(i):
                x, e = x.chunk(2, 1)
                eps.append(e)
        for i in reversed(range(cfg.n_block)):
            block = self.blocks[i]
            if block.split:
                assert block.prior is not None
                mean, log_sd = (block.prior.infer(x, c) if fast else block.prior(x, c)).chunk(2, 1)
                x = torch.cat([x, mean + torch.exp(log_sd) * eps.pop()], 1)
            if fast:
                x, c = _reverse_flows_inference(block, x, c)
            else:
                for flow in reversed(block.flows):
                    x, c = flow.reverse(x, c)
            x, c = unsqueeze(x, 2), unsqueeze(c, 2)
        return x

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, temperature: float = 0.8,
                   **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"flowavenet sampling options are temperature; got {sorted(sampling)}")
        cfg = self.config
        temperature = sampling_scale("temperature", temperature)
        frames, hop = mel.shape[-1], cfg.mel.hop_length
        # Drawn by position (zoo.core.noise): streamed windows get the one-shot noise; same in every model dtype.
        z = temperature * position_noise(generator, mel.shape[0], 1, frames * hop, frames, device=mel.device,
                                         dtype=mel.dtype)
        ctx = self.context_frames()
        return in_windows(frames, cfg.chunk_frames, ctx, ctx, hop, lambda lo, hi: self.reverse(
            z[..., lo * hop: hi * hop], self.upsample(mel[..., lo:hi]))[:, 0])

    def noise_shape(self, batch: int, frames: int) -> tuple[int, ...]:
        """``[B, 1, frames * hop]``: the noise :meth:`synthesize` draws."""
        return (batch, 1, frames * self.config.mel.hop_length)

    def synthesize_from_noise(self, mel: Tensor, z: Tensor) -> Tensor:
        """:meth:`reverse` of the scaled noise ``z`` in one window (the exported form)."""
        return self.reverse(z, self.upsample(mel))[:, 0]

    def context_frames(self) -> int:
        """Mel frames on each side that can influence an output sample, from the layer geometry: every
        coupling net and prior (a kernel-3 front conv plus kernel-3 layers dilated ``2**i``) reaches
        ``1 + sum(2**i)`` steps at its block's time resolution (``2**(block + 1)`` samples per step), and each
        2-D transposed-conv stage of the upsampler mixes one frame on each side."""
        cfg = self.config
        samples = 0
        for i in range(cfg.n_block):
            per_net = 1 + (2**cfg.n_layer - 1)
            steps = cfg.n_flow * per_net + ((1 + 2**cfg.prior_layers - 1) if cfg.is_split(i) else 0)
            samples += steps * 2 ** (i + 1)
        return math.ceil(samples / cfg.mel.hop_length) + len(cfg.upsample_scales) + 1
