"""WaveGlow (Prenger, Valle and Catanzaro 2018): a Glow-style flow from audio to Gaussian noise.

The mel is upsampled to the audio rate by a transposed conv (stride = hop) and both audio and mel are
grouped into ``n_group`` channels (``zoo.nn.flows.squeeze``). Then ``n_flows`` steps of an invertible 1x1
conv and an affine coupling whose conditioner is WaveGlow's ``WN`` (a non-causal gated WaveNet,
``zoo.nn.gated.WaveNetConditioner``). Every ``n_early_every`` flows, ``n_early_size`` channels leave early as
part of ``z``. Training maximises ``log N(z; 0, sigma^2) + sum(log_s) + sum(log|det W|)``; sampling draws
``z ~ N(0, sigma^2)`` and runs the flow backwards.

Names follow the reference (``upsample``, ``convinv.k``, ``WN.k``, ``n_group``, ``n_early_every``).
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
from zoo.nn.flows import InvertibleConv1x1, WaveGlowCoupling, squeeze, unsqueeze
from zoo.nn.gated import WaveNetConditioner
from zoo.nn.upsample import TransposedConvUpsampler


def _tacotron2_mel() -> MelConfig:
    return MelConfig.preset("tacotron2")


@dataclasses.dataclass
class WaveGlowConfig(VocoderConfig):
    """Hyperparameters (defaults: the published ``waveglow_256channels`` model).

    ``upsample_kernel`` is the transposed conv's kernel (the reference hard-codes 1024 = 4 hops);
    ``sigma`` is the training sigma and ``infer_sigma`` the default sampling sigma. ``chunk_frames``
    bounds memory on long inputs: longer mels are inverted flow by flow in windows of that many frames,
    each coupling with its own receptive field as context (:meth:`WaveGlow.reverse_chunked`), with one
    noise tensor drawn for the whole utterance, so the result equals the one-shot result (0 = never chunk).
    """

    mel: MelConfig = dataclasses.field(default_factory=_tacotron2_mel)
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    n_layers: int = 8
    n_channels: int = 256
    kernel_size: int = 3
    upsample_kernel: int = 1024
    sigma: float = 1.0
    infer_sigma: float = 0.6
    chunk_frames: int = 512

    def __post_init__(self) -> None:
        if self.mel.hop_length % self.n_group:
            raise ValueError(f"the hop ({self.mel.hop_length}) must be a multiple of n_group ({self.n_group})")
        remaining = self.n_group - self.n_early_size * sum(map(self.leaves_early, range(self.n_flows)))
        if remaining < 2:
            raise ValueError("n_flows, n_early_every and n_early_size leave fewer than 2 channels")

    def leaves_early(self, k: int) -> bool:
        """Whether ``n_early_size`` channels leave as part of ``z`` before flow ``k`` (density direction)."""
        return k > 0 and k % self.n_early_every == 0

    @classmethod
    def small(cls, **kw: Any) -> WaveGlowConfig:
        """A demo size (a few hundred thousand parameters) for tests and quick training."""
        base = dict(n_flows=6, n_group=8, n_early_every=2, n_early_size=2, n_layers=3, n_channels=32,
                    upsample_kernel=512)
        base.update(kw)
        return cls(**base)  # type: ignore[arg-type]


class WaveGlow(Vocoder[WaveGlowConfig]):
    """WaveGlow; sampling option ``sigma`` (default: the config's ``infer_sigma``, 0.6 as NVIDIA's README)."""

    architecture = "waveglow"
    compiled_kernels = {"tapconv": gated_infer.FORMS}  # the coupling nets' gated stacks
    denoiser_sampling = {"sigma": 0.0}  # NVIDIA's denoiser measures the bias with sigma 0
    config_class = WaveGlowConfig
    deterministic = False

    def __init__(self, config: WaveGlowConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        n_mel = c.mel.n_mels
        self.upsample = TransposedConvUpsampler(n_mel, c.mel.hop_length, c.upsample_kernel)
        self.convinv = nn.ModuleList()
        self.WN = nn.ModuleList()
        channels = c.n_group
        self.flow_channels: list[int] = []
        for k in range(c.n_flows):
            if c.leaves_early(k):
                channels -= c.n_early_size
            self.flow_channels.append(channels)
            n_half = channels // 2
            self.convinv.append(InvertibleConv1x1(channels))
            self.WN.append(WaveNetConditioner(n_half, 2 * (channels - n_half), n_mel * c.n_group,
                                              channels=c.n_channels, num_layers=c.n_layers,
                                              kernel_size=c.kernel_size, front="conv1x1", head="linear_zero",
                                              residual_scale=1.0, last_layer_residual=False))
        # Plain list: the coupling nets are registered once, under the reference's names WN.k.
        self.couplings = [WaveGlowCoupling(net) for net in self.WN]
        self.n_remaining_channels = channels

    # ------------------------------------------------------------------ conditioning
    def condition(self, mel: Tensor, num_samples: int | None = None) -> Tensor:
        """Upsampled, grouped mel ``[B, n_mels * n_group, T / n_group]`` (cut to ``num_samples``)."""
        c = self.config
        up = self.upsample(mel)
        if num_samples is not None:
            up = up[..., :num_samples]
        return squeeze(up, c.n_group)

    # ------------------------------------------------------------------ density direction
    def flow(self, audio: Tensor, mel: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """``(z [B, n_group, T/n_group], log_s per flow, log|det W| per flow [B])`` of ``audio`` ``[B, T]``."""
        c = self.config
        spect = self.condition(mel, audio.shape[-1])
        x = squeeze(audio.unsqueeze(1), c.n_group)
        early: list[Tensor] = []
        log_s_list: list[Tensor] = []
        log_det_w: list[Tensor] = []
        for k, (inv, coupling) in enumerate(zip(self.convinv, self.couplings, strict=True)):
            if c.leaves_early(k):
                early.append(x[:, : c.n_early_size])
                x = x[:, c.n_early_size:]
            x, ld = inv(x)
            x, _, log_s = coupling(x, spect)
            log_det_w.append(ld)
            log_s_list.append(log_s)
        early.append(x)
        return torch.cat(early, 1), log_s_list, log_det_w

    def nll(self, z: Tensor, log_s_list: list[Tensor], log_det_w: list[Tensor], sigma: float | None = None) -> Tensor:
        """WaveGlow's loss: ``(sum z^2 / 2 sigma^2 - sum log_s - sum log|det W|) / numel(z)``."""
        sigma = self.config.sigma if sigma is None else sigma
        log_s_total = sum(ls.sum() for ls in log_s_list)
        log_det_total = sum(ld.sum() for ld in log_det_w)
        return (torch.sum(z * z) / (2 * sigma * sigma) - log_s_total - log_det_total) / z.numel()

    def loss(self, audio: Tensor, mel: Tensor) -> dict[str, Tensor]:
        z, log_s_list, log_det_w = self.flow(audio, mel)
        loss = self.nll(z, log_s_list, log_det_w)
        # Negative log-likelihood in nats per sample including the Gaussian constant, for reporting.
        sigma = self.config.sigma
        nats = loss + 0.5 * math.log(2 * math.pi * sigma * sigma)
        return {"loss": loss, "nll_nats_per_sample": nats.detach()}

    # ------------------------------------------------------------------ sampling direction
    def reverse(self, z: Tensor, mel: Tensor, chunk_frames: int = 0) -> Tensor:
        """Audio ``[B, T]`` from ``z`` ``[B, n_group, T/n_group]`` (the layout :meth:`flow` returns): the flows
        from last to first, each the inverse coupling and then the inverse 1x1 conv, and the channels that left
        early in the density direction re-join where they left. With ``chunk_frames`` each coupling runs in
        windows (:meth:`reverse_chunked`)."""
        c = self.config
        spect = None if chunk_frames else self.condition(mel, z.shape[-1] * c.n_group)
        n_early = sum(map(c.leaves_early, range(c.n_flows)))
        early = list(z[:, :n_early * c.n_early_size].split(c.n_early_size, 1))
        x = z[:, n_early * c.n_early_size:]
        if spect is not None and gated_infer.fast_inference():
            # every flow reads the same conditioning: one copy in the layout its nets read (gated_infer)
            spect = gated_infer.time_major_cond(self.couplings[0].net.stack, spect)
        for k in reversed(range(c.n_flows)):
            if spect is None:
                x = self._inverse_coupling_in_windows(k, x, mel, chunk_frames)
            else:
                x = self.couplings[k].inverse(x, spect)
            x = self.convinv[k].inverse(x)
            if c.leaves_early(k):
                x = torch.cat([early.pop(), x], 1)
        return unsqueeze(x, c.n_group)[:, 0]

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, sigma: float | None = None,
                   **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"waveglow sampling options are sigma; got {sorted(sampling)}")
        c = self.config
        sigma = sampling_scale("sigma", c.infer_sigma if sigma is None else sigma)
        frames = mel.shape[-1]
        steps = frames * c.mel.hop_length // c.n_group
        # Drawn by position (zoo.core.noise): streamed windows get the one-shot noise; same in every model dtype.
        z = position_noise(generator, mel.shape[0], c.n_group, steps, frames, device=mel.device, dtype=mel.dtype)
        if c.chunk_frames and frames > c.chunk_frames:
            return self.reverse_chunked(sigma * z, mel, c.chunk_frames)
        return self.reverse(sigma * z, mel)

    def noise_shape(self, batch: int, frames: int) -> tuple[int, ...]:
        """``[B, n_group, frames * hop / n_group]``: the grouped noise :meth:`synthesize` draws."""
        c = self.config
        return (batch, c.n_group, frames * c.mel.hop_length // c.n_group)

    def synthesize_from_noise(self, mel: Tensor, z: Tensor) -> Tensor:
        """:meth:`reverse` of the scaled noise ``z`` (the exported form)."""
        return self.reverse(z, mel)

    def context_frames(self) -> int:
        """Mel frames on each side that can influence an output sample, from the layer geometry.

        Each coupling net (kernel ``k``, dilations ``2**i``) reaches ``(k - 1) / 2 * sum(2**i)`` grouped steps
        on each side, the ``n_flows`` couplings compose, and the transposed-conv upsampler mixes
        ``upsample_kernel / hop`` frames.
        """
        c = self.config
        reach_steps = c.n_flows * self._coupling_reach()
        return math.ceil(reach_steps * c.n_group / c.mel.hop_length) + math.ceil(c.upsample_kernel / c.mel.hop_length)

    def _coupling_reach(self) -> int:
        """Grouped steps on each side that one coupling net sees: ``(kernel - 1) / 2 * sum(2**i)``."""
        c = self.config
        return (c.kernel_size - 1) // 2 * sum(2**i for i in range(c.n_layers))

    def reverse_chunked(self, z: Tensor, mel: Tensor, chunk_frames: int) -> Tensor:
        """:meth:`reverse` with memory bounded by ``chunk_frames``: the output is unchanged.

        Flow by flow, each coupling runs on windows of ``chunk_frames`` frames of grouped steps plus its own
        receptive field (``(kernel - 1) / 2 * sum(dilations)`` steps) on each side, with the conditioning of
        each window upsampled from only the frames it depends on. Only audio-sized tensors span the whole
        utterance; the coupling nets' wide activations exist for one window at a time. ``chunk_frames`` 0 is
        the one-shot :meth:`reverse`.
        """
        return self.reverse(z, mel, chunk_frames)

    def _inverse_coupling_in_windows(self, k: int, x: Tensor, mel: Tensor, chunk_frames: int) -> Tensor:
        """Coupling ``k`` inverted on ``x`` in windows of ``chunk_frames`` frames plus its reach on each side."""
        c = self.config
        coupling, g, reach = self.couplings[k], c.n_group, self._coupling_reach()

        def window(lo: int, hi: int) -> Tensor:
            spect = squeeze(self.upsample.window(mel, lo * g, hi * g), g)
            return coupling.inverse(x[..., lo:hi], spect)

        return in_windows(x.shape[-1], chunk_frames * (c.mel.hop_length // g), reach, reach, 1, window)

    def prepare_for_inference(self) -> WaveGlow:
        super().prepare_for_inference()
        with torch.no_grad():
            for inv in self.convinv:
                inv.inverse_weight()
        return self
