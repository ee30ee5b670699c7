"""The mel-conditioned autoregressive WaveNet vocoder (van den Oord et al. 2016; r9y9/wavenet_vocoder).

``p(x) = prod_t p(x_t | x_<t, c)``: a causal front conv reads the previous samples (one-hot mu-law
classes or scalars), a stack of gated, dilated, causal layers with local conditioning by the upsampled
mel (``zoo.nn.gated.GatedResidualStack``), then ``ReLU -> 1x1 -> ReLU -> 1x1`` gives the parameters of the
output distribution (``zoo.nn.distributions``: mu-law softmax, mixture of logistics or a Gaussian).

One configuration space covers r9y9's HEAD recipes, the 2092a64 layout of its published LJSpeech
checkpoint (legacy skip combination, ConvTranspose2d upsampler, conv1x1c bias) and ClariNet's Gaussian
teacher (a 32-tap causal front conv + ReLU, kernel-2 layers, the FloWaveNet-style 2-D upsampler).

Sampling is incremental (:mod:`zoo_plugins.wavenet.incremental`): O(layers) work per sample. A bfloat16
model (``.to(torch.bfloat16)``, ``zoo.load(..., dtype=torch.bfloat16)``) samples with bfloat16 weights and
float32 activations and sums (the compiled loop reads half the bytes per sample); training and
:meth:`WaveNet.teacher_forced` of a bfloat16 model run in bfloat16 as torch does.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.core.config import UpsamplerConfig, VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.noise import current_position
from zoo.core.vocoder import Vocoder, sampling_scale
from zoo.nn.distributions import DiscretizedMixLogistic, Gaussian, MuLawSoftmax, get_distribution
from zoo.nn.gated import GatedResidualStack
from zoo.nn.upsample import build_upsampler


def _r9y9_mel() -> MelConfig:
    return MelConfig.preset("r9y9")


@dataclasses.dataclass
class WaveNetConfig(UpsamplerConfig, VocoderConfig):
    """Hyperparameters (defaults: r9y9 HEAD ``mol`` recipe widths with the 2092a64 mel features).

    ``gate_channels`` is the dilated conv's total output (tanh half + sigmoid half). Dilations are
    ``2 ** (i % (layers // stacks))``. ``upsample`` is ``"stretch2d"`` (r9y9 HEAD, with ``cin_pad`` context
    frames) or ``"transposed2d"`` (r9y9 2092a64 with ``upsample_time_kernel`` = the scale and ReLU;
    FloWaveNet/ClariNet with ``upsample_time_kernel=None`` (2 s) and LeakyReLU 0.4).
    """

    mel: MelConfig = dataclasses.field(default_factory=_r9y9_mel)
    output_distribution: str = "mol"
    num_mixtures: int = 10
    num_classes: int = 65536
    mulaw_classes: int = 256
    log_scale_min: float = -16.0
    log_std_min: float = -9.0
    layers: int = 24
    stacks: int = 4
    residual_channels: int = 128
    gate_channels: int = 256
    skip_channels: int = 128
    kernel_size: int = 3
    front_kernel_size: int = 1
    front_activation: str = "none"
    residual_scale: float = math.sqrt(0.5)
    skip_mode: str = "sum_sqrt_layers"
    cond_bias: bool = False
    dropout: float = 0.0
    n_speakers: int = 0
    gin_channels: int = 0
    #: Sampling temperature used when ``vocode`` is not given one (scales the output distribution's noise).
    infer_temperature: float = 1.0
    #: Training only: standard deviation of Gaussian noise added to the teacher-forced input samples (not to the
    #: targets), as LPCNet does (Valin & Skoglund 2019), so that the model learns to follow the mel when its past
    #: samples are imperfect, as they are when it samples freely. 0 (the references' setting) adds none.
    train_input_noise: float = 0.0

    def __post_init__(self) -> None:
        if not self.infer_temperature >= 0.0:
            raise ValueError(f"infer_temperature must be >= 0, got {self.infer_temperature}")
        if not self.train_input_noise >= 0.0:
            raise ValueError(f"train_input_noise must be >= 0, got {self.train_input_noise}")
        if self.output_distribution not in ("mulaw", "mol", "gaussian"):
            raise ValueError(f"output_distribution must be mulaw, mol or gaussian, got {self.output_distribution!r}")
        if self.layers < 1 or self.stacks < 1:
            raise ValueError(f"layers and stacks must be >= 1, got {self.layers} and {self.stacks}")
        if self.layers % self.stacks:
            raise ValueError(f"layers ({self.layers}) must be a multiple of stacks ({self.stacks})")
        self.check_upsampler(self.mel.hop_length)
        if self.front_activation not in ("none", "relu"):
            raise ValueError("front_activation must be 'none' or 'relu'")
        if (self.n_speakers > 0) != (self.gin_channels > 0):
            raise ValueError("global conditioning needs both n_speakers and gin_channels")

    @classmethod
    def small(cls, distribution: str = "mol", **kw: Any) -> WaveNetConfig:
        base = dict(output_distribution=distribution, layers=6, stacks=2, residual_channels=16, gate_channels=32,
                    skip_channels=16)
        base.update(kw)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def clarinet(cls, **kw: Any) -> WaveNetConfig:
        """ClariNet's Gaussian teacher layout (README config by default: 2 blocks of 10 layers, 128/256/128,
        kernel 2, a 32-tap causal front conv + ReLU, summed skips, the 2-D transposed-conv upsampler)."""
        base: dict[str, Any] = dict(
            mel=MelConfig.preset("flowavenet"), output_distribution="gaussian", log_std_min=-9.0, layers=20,
            stacks=2, residual_channels=128, gate_channels=256, skip_channels=128, kernel_size=2,
            front_kernel_size=32, front_activation="relu", skip_mode="sum", cond_bias=True,
            upsample="transposed2d", upsample_scales=(16, 16), upsample_time_kernel=None,
            upsample_activation="leaky_relu", upsample_negative_slope=0.4,
        )
        base.update(kw)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def r9y9_ljspeech_2092a64(cls) -> WaveNetConfig:
        """The published r9y9 LJSpeech MoL checkpoint's layout (24.7 M parameters)."""
        return cls(output_distribution="mol", log_scale_min=math.log(1e-14), layers=24, stacks=4,
                   residual_channels=512, gate_channels=512, skip_channels=256, skip_mode="legacy_iterative",
                   cond_bias=True, dropout=0.05, upsample="transposed2d", upsample_time_kernel=4,
                   upsample_activation="relu")


class WaveNet(Vocoder[WaveNetConfig]):
    """Autoregressive WaveNet; sampling options ``temperature`` (default: the config's ``infer_temperature``,
    1.0) and ``progress`` (a tqdm bar)."""

    architecture = "wavenet"
    compiled_kernels = {"wavenet": (torch.float32, torch.bfloat16)}  # the sampling loop (kernel.py)
    deterministic = False
    parallel = False
    padded_batches = True

    def __init__(self, config: WaveNetConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.distribution = self._make_distribution(c)
        in_ch = self.distribution.input_channels
        cycle = c.layers // c.stacks
        self.front = nn.Conv1d(in_ch, c.residual_channels, c.front_kernel_size)
        self.stack = GatedResidualStack(
            c.residual_channels, c.gate_channels, c.skip_channels, c.mel.n_mels, c.kernel_size,
            [2 ** (i % cycle) for i in range(c.layers)], causal=True, residual_scale=c.residual_scale,
            skip_mode=c.skip_mode, cond_bias=c.cond_bias, global_cond_channels=c.gin_channels, dropout=c.dropout,
        )
        self.head1 = nn.Conv1d(c.skip_channels, c.skip_channels, 1)
        self.head2 = nn.Conv1d(c.skip_channels, self.distribution.out_channels, 1)
        self.upsample = build_upsampler(c, c.mel.n_mels)
        self.embed_speakers = nn.Embedding(c.n_speakers, c.gin_channels) if c.n_speakers else None

    @staticmethod
    def _make_distribution(c: WaveNetConfig) -> MuLawSoftmax | DiscretizedMixLogistic | Gaussian:
        if c.output_distribution == "mulaw":
            return MuLawSoftmax(c.mulaw_classes)
        if c.output_distribution == "mol":
            return DiscretizedMixLogistic(c.num_mixtures, c.num_classes, c.log_scale_min)
        return get_distribution("gaussian", log_std_min=c.log_std_min)  # type: ignore[return-value]

    # ------------------------------------------------------------------ geometry
    @property
    def receptive_field(self) -> int:
        """Past samples (the current input included) one output depends on."""
        return self.stack.receptive_field + self.config.front_kernel_size - 1

    @property
    def receptive_field_ms(self) -> float:
        return 1000.0 * self.receptive_field / self.sample_rate

    # ------------------------------------------------------------------ conditioning
    def upsample_mel(self, mel: Tensor) -> Tensor:
        """``c_up [B, n_mels, frames * hop]``; the stretch2d upsampler gets ``cin_pad`` edge frames each side.
        A float32 ``mel`` on a bfloat16 model is upsampled in float32 with its bfloat16 weights (as sampling does)."""
        c = self.config
        if c.upsample == "stretch2d" and c.cin_pad:
            mel = F.pad(mel, (c.cin_pad, c.cin_pad), mode="replicate")
        if mel.dtype == torch.float32 and self.dtype == torch.bfloat16:
            up = self.upsample
            state = {k: v.float() if v.is_floating_point() else v
                     for k, v in [*up.named_parameters(), *up.named_buffers()]}
            return torch.func.functional_call(up, state, (mel,))
        return self.upsample(mel)

    def global_cond(self, speaker: Tensor | None) -> Tensor | None:
        if self.embed_speakers is None:
            if speaker is not None:
                raise ValueError("this model has no speaker embedding")
            return None
        if speaker is None:
            raise ValueError("this multi-speaker model needs speaker ids")
        return self.embed_speakers(speaker.long()).unsqueeze(-1)

    # ------------------------------------------------------------------ teacher forcing
    def _front(self, x: Tensor) -> Tensor:
        c = self.config
        h = self.front(F.pad(x, (c.front_kernel_size - 1, 0)))
        return F.relu(h) if c.front_activation == "relu" else h

    def output(self, h_skips: Tensor) -> Tensor:
        return self.head2(F.relu(self.head1(F.relu(h_skips))))

    def teacher_forced(self, x: Tensor, c_up: Tensor, g: Tensor | None = None) -> Tensor:
        """Output parameters ``[B, C, T]`` given the inputs ``x`` (one-hot ``[B, classes, T]`` or ``[B, 1, T]``);
        step ``t`` describes the sample that follows input ``t``."""
        return self.output(self.stack(self._front(x), c_up, g))

    def loss(self, audio: Tensor, mel: Tensor, speaker: Tensor | None = None) -> dict[str, Tensor]:
        c_up = self.upsample_mel(mel)[..., : audio.shape[-1]]
        audio = audio[..., : c_up.shape[-1]]
        dist = self.distribution
        noise = self.config.train_input_noise if self.training else 0.0
        noisy = audio if noise == 0.0 else audio + noise * torch.randn_like(audio)
        if isinstance(dist, MuLawSoftmax):
            target = dist.target_from_audio(audio)
            heard = target if noise == 0.0 else dist.target_from_audio(noisy.clamp(-1.0, 1.0))
            inputs = dist.input_from_sample(heard).to(audio.dtype)
        else:
            target = audio
            inputs = noisy.unsqueeze(1)
        y_hat = self.teacher_forced(inputs, c_up, self.global_cond(speaker))
        nll = dist.loss(y_hat[..., :-1], target[..., 1:])
        return {"loss": nll.mean()}

    # ------------------------------------------------------------------ sampling
    def _compute_dtype(self) -> torch.dtype:
        """A bfloat16 model samples in float32 (bfloat16 weights only): its mel is not rounded to bfloat16."""
        return torch.float32 if self.dtype == torch.bfloat16 else self.dtype

    def _temperature(self, temperature: float | None, sampling: dict[str, Any]) -> float:
        if sampling:
            raise ValueError(f"wavenet sampling options are temperature, progress, speaker; got {sorted(sampling)}")
        return sampling_scale("temperature", self.config.infer_temperature if temperature is None else temperature)

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, temperature: float | None = None,
                   progress: bool = False, speaker: Tensor | None = None, lengths: Tensor | None = None,
                   **sampling: Any) -> Tensor:
        """Samples every item of the batch in one loop (one read of the weights per step for all of them);
        with ``lengths`` (frames per item of a padded batch) each item stops at its own length and the
        finished ones drop out of the loop. The random draws depend only on the seed (drawn from
        ``generator``) and the position, not on the item's batch mates: each item's audio is what vocoding it
        alone with a generator of the same seed gives."""
        temperature = self._temperature(temperature, sampling)
        from zoo_plugins.wavenet.incremental import IncrementalSampler

        seed, frame = current_position(generator)
        hop = self.hop_length
        frames = mel.shape[-1]
        if lengths is None or bool((lengths == frames).all()):
            c_up, steps = self.upsample_mel(mel), None
        else:
            # Each item's conditioning from its own frames: the upsampler's context (and its edge padding)
            # must not reach into the padding.
            c_up = mel.new_zeros(mel.shape[0], mel.shape[1], frames * hop)
            for n in sorted(set(lengths.tolist())):
                idx = (lengths == n).nonzero().flatten().to(mel.device)
                c_up[idx, :, : n * hop] = self.upsample_mel(mel[idx, :, :n])
            steps = [int(n) * hop for n in lengths.tolist()]
        sampler = IncrementalSampler(self, mel.shape[0], g=self.global_cond(speaker))
        sampler.noise_offset = frame * hop
        return sampler.generate(c_up, seed=seed, lengths=steps, temperature=temperature, progress=progress)

    def cond_context(self) -> int:
        """Mel frames on each side that the upsampled conditioning of a frame can depend on: a bound from the
        upsampler's geometry. A stage of scale ``s`` reaches a number of its input steps, each ``1 / (product of
        the scales before it)`` frames: 2 for stretch2d (a nearest stretch by ``s``, then ``2 s + 1`` taps),
        ``time_kernel / s + 1`` for transposed2d. stretch2d's context conv adds ``cin_pad`` frames, and one
        frame more covers where a sample falls in its frame."""
        c = self.config
        reach, step = Fraction(0), Fraction(1)
        for s in c.upsample_scales:
            reach += step * (2 if c.upsample == "stretch2d" else Fraction(c.upsample_time_kernel or 2 * s, s) + 1)
            step /= s
        return math.ceil(reach) + (c.cin_pad if c.upsample == "stretch2d" else 0) + 1

    def open_stream(self, seed: int, *, temperature: float | None = None, progress: bool = False,
                    speaker: Tensor | None = None, **sampling: Any) -> _SamplingStream:
        """Streams by carrying the incremental sampler (ring buffers, last sample, the compiled loop's past-tap
        state, the position of the draws) from one stretch of frames to the next; the conditioning of each
        stretch is upsampled from the mel with :meth:`cond_context` frames around it."""
        return _SamplingStream(self, seed, self._temperature(temperature, sampling), speaker, progress)


class _SamplingStream:
    """A :class:`zoo.core.stream.StreamSession` for :class:`WaveNet`."""

    def __init__(self, model: WaveNet, seed: int, temperature: float, speaker: Tensor | None, progress: bool) -> None:
        from zoo_plugins.wavenet.incremental import IncrementalSampler

        ctx = model.cond_context()
        self.context = (ctx, ctx)
        self.model, self.seed, self.temperature, self.progress = model, seed, temperature, progress
        if speaker is not None:
            speaker = torch.as_tensor(speaker).reshape(1)
        self.sampler = IncrementalSampler(model, 1, g=model.global_cond(speaker))
        self.frame = 0  # frames sampled so far

    def __call__(self, mel: Tensor, first: int, start: int, stop: int) -> Tensor:
        model, hop = self.model, self.model.hop_length
        if start != self.frame or not first <= start < stop <= first + mel.shape[-1]:
            raise ValueError(f"a WaveNet stream continues at frame {self.frame}; got frames [{start}, {stop}) "
                             f"of a mel holding [{first}, {first + mel.shape[-1]})")
        mel = mel.to(device=model.device, dtype=model._compute_dtype())[None]  # as vocode casts it
        c_up = model.upsample_mel(mel)[..., (start - first) * hop: (stop - first) * hop]
        audio = self.sampler.generate(c_up, seed=self.seed, temperature=self.temperature, progress=self.progress)
        self.frame = stop
        return audio[0].to(model.audio_dtype)
