"""Parallel WaveNet / ClariNet student: a stack of Gaussian inverse autoregressive flows (IAF).

Each flow ``k`` is a causal WaveNet on the shared gated stack (:class:`zoo.nn.gated.GatedResidualStack`)
that reads the current noise ``z`` and the upsampled mel ``c_up`` and outputs, for every step ``t``, a
shift ``mu_t`` and a log-scale ``logs_t`` that only depend on ``z_<=t``. As in ClariNet, the outputs at
``t`` transform the NEXT sample (a one-step shift)::

    z'_0 = 0,    z'_t = z_t * exp(logs_{t-1}) + mu_{t-1}        (t >= 1)

All flows run in parallel over the whole utterance (one pass each), so sampling is parallel in time;
what stays autoregressive is only the *density* of a given ``x``. Because every flow is affine in
``z_t`` with coefficients depending on ``z_<t``, the output distribution is Gaussian in closed form::

    x_t | z_<t ~ N(mu_tot_t, exp(logs_tot_t)),   mu_tot = mu_tot * exp(logs) + mu,  logs_tot += logs

and the log-determinant of ``z[..., 1:] -> x[..., 1:]`` is ``sum(logs_tot)``. ``x[..., 0]`` is 0 and
``mu_tot``/``logs_tot`` (length ``T - 1``) describe ``x[..., 1:]``, exactly like the reference.

The student carries its own copy of its teacher's conditioning upsampler (ClariNet feeds the teacher's
``upsample(c)`` to the student); it is frozen during distillation unless asked otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.config import UPSAMPLER_FIELDS, UpsamplerConfig, VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.noise import position_noise
from zoo.core.stream import in_windows
from zoo.core.vocoder import Vocoder, sampling_scale
from zoo.kernels import gated_infer
from zoo.kernels.gated_infer import bf16_kernel, fast_inference, infer_layers, require_inference, residual_buffer
from zoo.nn.gated import GatedResidualStack
from zoo.nn.upsample import build_upsampler


def _flowavenet_mel() -> MelConfig:
    return MelConfig.preset("flowavenet")


@dataclasses.dataclass
class ParallelWaveNetConfig(UpsamplerConfig, VocoderConfig):
    """Hyperparameters of the IAF student (defaults: the published ClariNet student).

    * ``flow_layers``: gated layers of each flow (ClariNet: six flows of 10; Parallel WaveNet:
      10, 10, 10, 30).
    * ``dilation_cycle``: dilations are ``2 ** (i % dilation_cycle)`` within a flow.
    * ``front_kernel_size``: causal input conv (1 -> residual) followed by ReLU (ClariNet: 32).
    * ``residual_channels``, ``skip_channels``; ``gate_channels`` is the output width of each dilated
      conv, both halves (tanh and sigmoid) together, as in ``WaveNetConfig`` and the shared stack:
      ClariNet's ``gate_channels=128`` (each of ``filter_conv``/``gate_conv``) is 256 here.
    * ``kernel_size`` of the dilated causal convs (3).
    * the upsampler, a copy of the teacher's (same field names as ``WaveNetConfig``): ``upsample``
      ``"transposed2d"`` (ClariNet/FloWaveNet: ``ConvTranspose2d(1, 1, (freq_kernel, time_kernel or 2 s),
      stride (1, s))`` + ``upsample_activation``) or ``"stretch2d"`` (r9y9 HEAD, ``cin_pad`` edge frames);
      ``prod(upsample_scales)`` must equal the mel hop.
    """

    mel: MelConfig = dataclasses.field(default_factory=_flowavenet_mel)
    flow_layers: tuple[int, ...] = (10, 10, 10, 10, 10, 10)
    dilation_cycle: int = 10
    front_kernel_size: int = 32
    residual_channels: int = 64
    gate_channels: int = 256
    skip_channels: int = 64
    kernel_size: int = 3
    # The upsampler fields (UpsamplerConfig) with ClariNet's defaults.
    upsample: str = "transposed2d"
    upsample_scales: tuple[int, ...] = (16, 16)
    upsample_activation: str = "leaky_relu"
    #: Noise temperature used when ``vocode`` is not given one.
    infer_temperature: float = 1.0
    #: Longer mels are vocoded in windows of this many frames (plus ``context_frames()``), so peak memory
    #: does not grow with the utterance; the output equals the one-shot output. 0 = never chunk.
    chunk_frames: int = 512

    def __post_init__(self) -> None:
        if not self.infer_temperature >= 0.0:
            raise ValueError(f"infer_temperature must be >= 0, got {self.infer_temperature}")
        if not self.flow_layers or any(int(n) < 1 for n in self.flow_layers):
            raise ValueError(
                f"flow_layers must be a non-empty list of positive layer counts, got {self.flow_layers}"
            )
        for name in (
            "dilation_cycle",
            "front_kernel_size",
            "residual_channels",
            "gate_channels",
            "skip_channels",
            "kernel_size",
            "upsample_freq_kernel",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gate_channels % 2:
            raise ValueError(
                f"gate_channels must be even (tanh and sigmoid halves), got {self.gate_channels}"
            )
        self.check_upsampler(self.mel.hop_length)

    @property
    def num_flows(self) -> int:
        return len(self.flow_layers)


class IAFFlow(nn.Module):
    """One Gaussian IAF flow: ``[mu, logs] = net(z, c_up)``, a causal WaveNet.

    Parameters: ``front`` (causal conv 1 -> R, kernel ``front_kernel_size``, then ReLU), ``stack`` (the
    shared gated stack: dilated causal convs, fused conditioning, residual scale sqrt(0.5), summed
    skips), ``head1`` (1x1 S -> S) and ``head2`` (1x1 S -> 2), each after a ReLU.
    """

    def __init__(self, config: ParallelWaveNetConfig, num_layers: int) -> None:
        super().__init__()
        r, s = config.residual_channels, config.skip_channels
        self.front_kernel_size = config.front_kernel_size
        self.front = nn.Conv1d(1, r, config.front_kernel_size)
        self.stack = GatedResidualStack(
            residual_channels=r,
            gate_channels=config.gate_channels,
            skip_channels=s,
            cond_channels=config.mel.n_mels,
            kernel_size=config.kernel_size,
            dilations=[2 ** (i % config.dilation_cycle) for i in range(num_layers)],
            causal=True,
            residual_scale=math.sqrt(0.5),
            skip_mode="sum",
        )
        self.head1 = nn.Conv1d(s, s, 1)
        self.head2 = nn.Conv1d(s, 2, 1)

    @property
    def receptive_field(self) -> int:
        """Samples of ``z`` (up to and including ``t``) that the output at ``t`` depends on."""
        return self.stack.receptive_field + self.front_kernel_size - 1

    def forward(self, z: Tensor, c_up: Tensor) -> Tensor:
        """``[B, 2, T]``: channel 0 the shift ``mu``, channel 1 the log-scale ``logs``.

        Without autograd (and outside tracing/export) this runs :meth:`infer`, the same function evaluated
        faster.
        """
        if fast_inference():
            return self.infer(z, c_up)
        h = F.relu(self.front(F.pad(z, (self.front_kernel_size - 1, 0))))
        skips = self.stack(h, c_up)
        return self.head2(F.relu(self.head1(F.relu(skips))))

    def infer(self, z: Tensor, c_up: Tensor) -> Tensor:
        """:meth:`forward` for inference, time-major: every conv a matrix product (no im2col of the gated
        layers, no ``[B, L * gate, T]`` conditioning tensor: each layer adds its own conditioning product),
        through :func:`zoo.kernels.gated_infer.infer_layers`. Agrees with the conv path to float32 rounding."""
        require_inference(self, "IAFFlow.infer")
        return torch.stack([self._infer_one(z[b, 0], c_up[b]) for b in range(z.shape[0])])

    def _infer_one(self, z: Tensor, c_up: Tensor) -> Tensor:
        """``z [T]``, ``c_up [cond, T]`` -> ``[2, T]``."""
        t, fk = z.shape[-1], self.front_kernel_size
        # A bfloat16 stack on the compiled kernel returns float32 skips: the front (z rounded to bfloat16, its
        # operand) and the heads then run in float32, and so does the flow's affine map on their output.
        f32 = bf16_kernel(self.stack)
        if f32:
            z = z.to(torch.bfloat16).float()

        def wt(p: Tensor) -> Tensor:
            return p.float() if f32 else p

        buf, left = residual_buffer(self.stack, t, z)
        taps = F.pad(z, (fk - 1, 0)).unfold(0, fk, 1)  # [T, fk]: row r holds z[r - fk + 1 .. r]
        front_w = wt(self.front.weight[:, 0, :])  # [R, fk]
        h0 = buf[left:left + t]
        if self.front.bias is None:
            torch.mm(taps, front_w.t(), out=h0)
        else:
            torch.addmm(wt(self.front.bias), taps, front_w.t(), out=h0)
        h0.relu_()
        skips = infer_layers(self.stack, buf, left, t, c_up.t())
        y = torch.addmm(wt(self.head1.bias), skips.relu_(), wt(self.head1.weight[..., 0]).t()).relu_()
        return torch.addmm(wt(self.head2.bias), y, wt(self.head2.weight[..., 0]).t()).t()


class ParallelWaveNet(Vocoder[ParallelWaveNetConfig]):
    """Parallel WaveNet / ClariNet student: white noise -> audio in one parallel pass per flow.

    Sampling option ``temperature`` (default: the config's ``infer_temperature``, 1.0) scales the input
    noise, as in ClariNet's
    ``synthesize_student.py``. :meth:`iaf` returns the sample and its closed-form Gaussian parameters.
    """

    architecture = "parallel_wavenet"
    compiled_kernels = {"tapconv": gated_infer.FORMS}  # the IAF flows' gated stacks
    deterministic = False
    parallel = True
    def __init__(self, config: ParallelWaveNetConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self.upsample = build_upsampler(cfg, cfg.mel.n_mels)
        self.flows = nn.ModuleList(IAFFlow(cfg, int(n)) for n in cfg.flow_layers)

    @property
    def receptive_field(self) -> int:
        """Noise samples the output sample ``x_t`` depends on (``z_t`` and its past)."""
        return 1 + sum(f.receptive_field for f in self.flows)

    def iaf(self, z: Tensor, c_up: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(x [B,1,T], mu_tot [B,1,T-1], logs_tot [B,1,T-1])`` from noise ``z`` ``[B, 1, T]``.

        ``x[..., 0] = 0``; ``x[..., 1:] ~ N(mu_tot, exp(logs_tot))`` given ``z``'s past, and
        ``logs_tot.sum(-1)`` is the log-determinant of ``z[..., 1:] -> x[..., 1:]``.
        """
        if z.dim() != 3 or z.shape[1] != 1:
            raise ValueError(f"z must be [B, 1, T], got shape {tuple(z.shape)}")
        if c_up.dim() != 3 or c_up.shape[0] != z.shape[0] or c_up.shape[-1] != z.shape[-1]:
            raise ValueError(
                f"c_up must be [B={z.shape[0]}, n_mels, T={z.shape[-1]}], got shape {tuple(c_up.shape)}"
            )
        if z.shape[-1] < 2:
            raise ValueError(f"z needs at least 2 samples, got {z.shape[-1]}")
        mu_tot = z.new_zeros(())
        logs_tot = z.new_zeros(())
        for flow in self.flows:
            mu_logs = flow(z, c_up)
            mu = mu_logs[:, 0:1, :-1]
            logs = mu_logs[:, 1:2, :-1]
            mu_tot = mu_tot * torch.exp(logs) + mu
            logs_tot = logs_tot + logs
            z = F.pad(z[:, :, 1:] * torch.exp(logs) + mu, (1, 0))
        return z, mu_tot, logs_tot

    def log_det(self, z: Tensor, c_up: Tensor) -> Tensor:
        """Per-item log|det d x[..., 1:] / d z[..., 1:]| = ``sum(logs_tot)`` ``[B]``."""
        return self.iaf(z, c_up)[2].sum(dim=(1, 2))

    def upsample_mel(self, mel: Tensor) -> Tensor:
        """``c_up`` ``[B, n_mels, frames * hop]``: the (teacher's) upsampler applied to ``mel``.

        The ``stretch2d`` upsampler gets ``cin_pad`` replicated edge frames on each side, as in the teacher.
        """
        cfg = self.config
        if cfg.upsample == "stretch2d" and cfg.cin_pad:
            mel = F.pad(mel, (cfg.cin_pad, cfg.cin_pad), mode="replicate")
        return self.upsample(mel)

    def sample_noise(
        self,
        batch: int,
        length: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """``z ~ N(0, temperature^2)`` of shape ``[batch, 1, length]``, drawn with ``generator``."""
        device = device or self.device
        dtype = dtype or self.dtype
        gen_device = generator.device if generator is not None else device
        z = torch.randn(batch, 1, length, generator=generator, device=gen_device, dtype=torch.float32)
        return (z * temperature).to(device=device, dtype=dtype)

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        temperature = sampling.pop("temperature", self.config.infer_temperature)
        if sampling:
            raise ValueError(
                f"parallel_wavenet takes only the sampling option 'temperature', got {sorted(sampling)}"
            )
        temperature = sampling_scale("temperature", temperature)
        frames, hop = mel.shape[-1], self.hop_length
        # Drawn by position (zoo.core.noise): streamed windows get the one-shot noise; same in every model dtype.
        z = (temperature * position_noise(generator, mel.shape[0], 1, frames * hop, frames)).to(mel.device, mel.dtype)
        # Bounded memory: windows of chunk_frames with the receptive field as left context (the flows are
        # causal in z) and the upsampler's reach on both sides; one noise draw, so the output is unchanged.
        left, reach = self.context_frames()
        chunk = self.config.chunk_frames
        return in_windows(frames, chunk, left, reach, hop, lambda lo, hi: self.iaf(
            z[..., lo * hop: hi * hop], self.upsample_mel(mel[..., lo:hi]))[0][:, 0])

    def noise_shape(self, batch: int, frames: int) -> tuple[int, ...]:
        """``[B, 1, frames * hop]``: the logistic-flow input noise :meth:`synthesize` draws."""
        return (batch, 1, frames * self.hop_length)

    def synthesize_from_noise(self, mel: Tensor, z: Tensor) -> Tensor:
        """The IAF flows applied to the scaled noise ``z`` in one window (the exported form)."""
        return self.iaf(z, self.upsample_mel(mel))[0][:, 0]

    def context_frames(self) -> tuple[int, int]:
        """``(left, upsampler)`` frames of context a window needs: the flows' receptive field (plus the
        upsampler's reach, which the conditioning of those samples reads) on the left, the upsampler's reach
        (one frame per transposed-conv stage, ``cin_pad`` for the stretch upsampler) on the right."""
        cfg = self.config
        reach = (cfg.cin_pad if cfg.upsample == "stretch2d" else 0) + len(cfg.upsample_scales) + 1
        return math.ceil(self.receptive_field / self.hop_length) + 1 + reach, reach

    @classmethod
    def distill(
        cls,
        teacher: Vocoder,
        data: str,
        out: str,
        settings: dict[str, Any] | None = None,
        *,
        device: str = "cpu",
        verbose: bool = True,
    ) -> dict[str, float]:
        """Distil ``teacher`` into a new student on the wavs of ``data``; the student is saved to ``out``.

        ``settings`` mixes student config fields and
        :class:`~zoo_plugins.parallel_wavenet.distill.DistillConfig` fields
        (``{"flow_layers": [4, 4], "kl_type": "pq", "steps": 200}``). Returns the last logged losses.
        """
        from zoo_plugins.parallel_wavenet.distill import DistillConfig, Distiller, student_for_teacher

        settings = dict(settings or {})
        distill_fields = {f.name for f in dataclasses.fields(DistillConfig)}
        student_fields = {f.name for f in dataclasses.fields(ParallelWaveNetConfig)} - {
            "mel",
            *UPSAMPLER_FIELDS,
        }
        unknown = sorted(set(settings) - distill_fields - student_fields)
        if unknown:
            raise ValueError(
                f"unknown distillation settings {unknown}; student settings: {sorted(student_fields)}; "
                f"distillation settings: {sorted(distill_fields)}"
            )
        student_cfg = {k: v for k, v in settings.items() if k in student_fields}
        if "flow_layers" in student_cfg:
            student_cfg["flow_layers"] = tuple(int(n) for n in student_cfg["flow_layers"])
        student = student_for_teacher(teacher, **student_cfg)
        config = DistillConfig(**{k: v for k, v in settings.items() if k in distill_fields})
        return Distiller(student, teacher, config, device=device).fit(data, out, verbose=verbose)


__all__ = ["ParallelWaveNetConfig", "ParallelWaveNet", "IAFFlow"]
