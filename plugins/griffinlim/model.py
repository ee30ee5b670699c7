"""Griffin-Lim vocoder: invert the mel filterbank (least squares), then iterate phase (torchaudio)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor

from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig, decompress
from zoo.core.stream import in_windows
from zoo.core.vocoder import Vocoder


@dataclasses.dataclass
class GriffinLimConfig(VocoderConfig):
    """``n_iter`` Griffin-Lim iterations with ``momentum`` (fast Griffin-Lim; 0 is the classic one)."""

    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))
    n_iter: int = 32
    momentum: float = 0.99
    #: Mels longer than one window (this many frames plus :meth:`GriffinLim.context_frames` on each side)
    #: are run window by window, so peak memory does not grow with the utterance; the output equals the
    #: one-shot output (0 = never chunk). The context is wide (106 frames each side at the defaults), so the
    #: default keeps windows near 5 s and long inputs cost about 1.8x the one-shot arithmetic.
    chunk_frames: int = 256

    def __post_init__(self) -> None:
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {self.n_iter}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.chunk_frames < 0:
            raise ValueError(f"chunk_frames must be >= 0, got {self.chunk_frames}")


class GriffinLim(Vocoder[GriffinLimConfig]):
    """Mel -> linear magnitude by non-negative least squares on the filterbank, then Griffin-Lim.

    Deterministic: the phase starts at zero (``rand_init=False``). Works with any mel convention the
    front-end knows, since the features are decompressed with :func:`zoo.core.mel.decompress` first. Long mels
    run in windows of ``chunk_frames`` plus :meth:`context_frames` on each side (the magnitude spectrogram
    too is made per window), so memory is bounded; since the zero initial phase makes every frame's result
    depend only on the frames within the context, the windows reproduce the one-shot output.
    """

    architecture = "griffinlim"
    export_refusal = "its iterative STFT/iSTFT loop has no ONNX form here"

    def __init__(self, config: GriffinLimConfig | None = None) -> None:
        super().__init__(config)
        m = self.mel_config
        # torchaudio's InverseMelScale solves min ||fb^T x - mel|| by least squares for every call; the
        # minimum-norm solution is pinv(fb^T) @ mel, so the pseudo-inverse is computed once here (float64).
        fb = AF.melscale_fbanks(
            m.n_fft // 2 + 1, m.f_min, m.f_max if m.f_max is not None else m.sample_rate / 2, m.n_mels,
            m.sample_rate, m.mel_norm, m.mel_scale,
        )
        self.register_buffer("inverse_fb", torch.linalg.pinv(fb.double().T).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(m.win_length or m.n_fft), persistent=False)
        # The computation runs in float32 whatever the module dtype: these copies keep the constants exact
        # through dtype casts (a round trip through float16 would round the buffers), moved with the device.
        self._constants = {"inverse_fb": self.inverse_fb.clone(), "window": self.window.clone()}

    def _compute_dtype(self) -> torch.dtype:
        return torch.float32

    def _apply(self, fn: Any, recurse: bool = True) -> GriffinLim:
        super()._apply(fn, recurse)
        self._constants = {k: v.to(device=self.inverse_fb.device) for k, v in self._constants.items()}
        return self

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"griffinlim takes no sampling options, got {sorted(sampling)}")
        cfg = self.config
        ctx = self.context_frames()
        frames = mel.shape[-1]
        # A mel that fits in one window runs in one piece (windowing it would only add work).
        chunk = 0 if frames <= cfg.chunk_frames + 2 * ctx else cfg.chunk_frames
        return in_windows(frames, chunk, ctx, ctx, self.hop_length, lambda lo, hi: self._synthesize(mel[..., lo:hi]))

    def context_frames(self) -> int:
        """Mel frames on each side that can influence an output sample, from the STFT geometry.

        Two frames share samples when their centres are less than ``n_fft`` apart, so each STFT / inverse
        STFT round trip of an iteration spreads a change by ``r = ceil(n_fft / hop) - 1`` frames. The phase
        starts at zero everywhere (no random draw), so a frame's final phase depends only on the frames within
        ``n_iter * r`` of it; the first inverse STFT's edge, the last inverse STFT and the front-end's
        alignment shift of at most ``n_fft / 2`` samples add at most ``2 r + ceil(n_fft / hop)`` more.
        """
        cfg = self.config
        per_frame = math.ceil(self.mel_config.n_fft / self.hop_length)
        return (cfg.n_iter + 2) * (per_frame - 1) + per_frame

    def _synthesize(self, mel: Tensor) -> Tensor:
        """One-shot Griffin-Lim of ``mel [B, n_mels, frames]``: audio ``[B, frames * hop]``."""
        m = self.mel_config
        frames, hop = mel.shape[-1], m.hop_length
        linear_mel = decompress(mel.float(), m)
        spec = torch.relu(self._constants["inverse_fb"] @ linear_mel)
        # The centred STFT inside Griffin-Lim reflects n_fft // 2 samples, so it needs more than that: a shorter
        # mel is run with silent (zero-magnitude) frames after it and the audio cut back to its length.
        short = -(-(m.n_fft // 2 + 2) // hop) - frames
        if short > 0:
            padded = torch.nn.functional.pad(spec, (0, short))
            return self._griffinlim(padded, frames + short)[..., : frames * hop]
        return self._griffinlim(spec, frames)

    def _griffinlim(self, spec: Tensor, frames: int) -> Tensor:
        """Audio ``[B, frames * hop]`` for the magnitude spectrogram ``spec [B, bins, frames]``."""
        m = self.mel_config
        cfg = self.config
        win = m.win_length or m.n_fft
        hop = m.hop_length
        # Frame t of the front-end is centred on sample t*hop + offset; torch's centred iSTFT puts it at t*hop.
        offset = m.n_fft // 2 - _left_padding(m)
        length = frames * hop
        # A centred STFT of L samples has 1 + L // hop frames: L = frames*hop - 1 gives exactly `frames`.
        audio = AF.griffinlim(
            spec, self._constants["window"], m.n_fft, hop, win, m.power, cfg.n_iter, cfg.momentum, length - 1, False,
        )
        if offset > 0:
            audio = torch.nn.functional.pad(audio, (offset, 0))
        elif offset < 0:
            audio = audio[..., -offset:]
        audio = torch.nn.functional.pad(audio, (0, max(0, length - audio.shape[-1])))[..., :length]
        return audio


def _left_padding(m: MelConfig) -> int:
    if m.padding == "center":
        return m.n_fft // 2
    if m.padding == "hifigan":
        return (m.n_fft - m.hop_length) // 2
    return 0
