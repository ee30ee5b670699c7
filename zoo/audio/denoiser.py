"""Bias removal for any vocoder (WaveGlow's denoiser, generalised).

A vocoder's response to a silent (or all-zero) mel is a steady hiss or hum: its bias. The denoiser takes
the magnitude spectrum of that response once, then subtracts ``strength`` times it from the magnitude of
every frame of the vocoded audio, keeping the phase, and clamps at zero (spectral subtraction).
``strength=0`` returns the audio unchanged up to STFT round-trip error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.core.vocoder import Vocoder


def silent_mel(vocoder: Vocoder, frames: int, mode: str = "silence") -> Tensor:
    """A mel of ``frames`` frames: ``"zeros"`` (NVIDIA's choice: the value 0 everywhere) or ``"silence"``
    (the features of digital silence under the vocoder's own mel config)."""
    m = vocoder.mel_config
    if mode == "zeros":
        return torch.zeros(1, m.n_mels, frames)
    if mode == "silence":
        return vocoder.mel(torch.zeros(1, frames * m.hop_length))[..., :frames]
    raise ValueError(f"mode must be 'zeros' or 'silence', got {mode!r}")


class Denoiser(nn.Module):
    """``Denoiser(voc)(audio, strength=0.1)``: subtract the vocoder's bias spectrum from ``audio``.

    Defaults reproduce NVIDIA's WaveGlow denoiser: an all-zero mel of 88 frames, STFT 1024/256/1024, the
    first frame of the response as the bias.

    ``sampling`` options are passed to the vocoder when measuring its bias, over the model's own
    :attr:`~zoo.core.vocoder.Vocoder.denoiser_sampling` (WaveGlow's: ``sigma=0.0``); a
    stochastic model is run with a fixed generator so the bias is reproducible.
    """

    def __init__(self, vocoder: Vocoder, *, mode: str = "zeros", frames: int = 88, n_fft: int = 1024,
                 hop_length: int = 256, win_length: int = 1024, bias_frame: str = "first", **sampling: Any) -> None:
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        mel = silent_mel(vocoder, frames, mode)
        gen = torch.Generator(device=vocoder.device).manual_seed(0)
        bias_audio = vocoder.vocode(mel, generator=gen, **{**vocoder.denoiser_sampling, **sampling})[0].float().cpu()
        spec = self._stft(bias_audio)
        # WaveGlow keeps the first frame of the bias response ("first", the default, as NVIDIA's code);
        # "median" takes the median over frames, steadier for models whose bias is not stationary.
        if bias_frame == "first":
            bias = spec.abs()[..., :1]
        elif bias_frame == "median":
            bias = spec.abs().median(dim=-1).values[..., None]
        else:
            raise ValueError(f"bias_frame must be 'first' or 'median', got {bias_frame!r}")
        self.register_buffer("bias_spec", bias, persistent=False)

    def _stft(self, audio: Tensor) -> Tensor:
        return torch.stft(audio, self.n_fft, self.hop_length, self.win_length, self.window.to(audio.device),
                          center=True, return_complex=True)

    def forward(self, audio: Tensor, strength: float = 0.1) -> Tensor:  # type: ignore[override]
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        squeeze = audio.dim() == 1
        x = audio.float()[None] if squeeze else audio.float()
        spec = self._stft(x)
        mag = (spec.abs() - self.bias_spec.to(x.device) * strength).clamp_min(0.0)
        out = torch.istft(torch.polar(mag, spec.angle()), self.n_fft, self.hop_length, self.win_length,
                          self.window.to(x.device), center=True, length=x.shape[-1])
        out = out.to(audio.dtype)
        return out[0] if squeeze else out
