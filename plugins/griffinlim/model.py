"""Griffin-Lim vocoder: invert the mel filterbank (least squares), then iterate phase (torchaudio)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torchaudio.functional as AF
import torchaudio.transforms as AT
from torch import Tensor

from zoo.config import VocoderConfig
from zoo.mel import MelConfig, decompress
from zoo.vocoder import Vocoder


@dataclasses.dataclass
class GriffinLimConfig(VocoderConfig):
    """``n_iter`` Griffin-Lim iterations with ``momentum`` (fast Griffin-Lim; 0 is the classic one)."""

    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))
    n_iter: int = 32
    momentum: float = 0.99

    def __post_init__(self) -> None:
        if self.n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {self.n_iter}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")


class GriffinLim(Vocoder):
    """Mel -> linear magnitude by non-negative least squares on the filterbank, then Griffin-Lim.

    Deterministic: the phase starts at zero (``rand_init=False``). Works with any mel convention the
    front-end knows, since the features are decompressed with :func:`zoo.mel.decompress` first.
    """

    config_class = GriffinLimConfig

    def __init__(self, config: GriffinLimConfig | None = None) -> None:
        super().__init__(config)
        m = self.mel_config
        self.inverse_mel = AT.InverseMelScale(
            n_stft=m.n_fft // 2 + 1,
            n_mels=m.n_mels,
            sample_rate=m.sample_rate,
            f_min=m.f_min,
            f_max=m.f_max if m.f_max is not None else m.sample_rate / 2,
            norm=m.mel_norm,
            mel_scale=m.mel_scale,
            driver="gelsd",
        )
        win = m.win_length or m.n_fft
        self.register_buffer("window", torch.hann_window(win), persistent=False)
        # The filterbank of InverseMelScale is a persistent buffer in torchaudio; it is derived from the
        # config, so keep it out of the state dict (the model has no weights).
        self.inverse_mel._buffers.pop("fb")
        self.inverse_mel.register_buffer("fb", self._fb(), persistent=False)

    def _fb(self) -> Tensor:
        m = self.mel_config
        return AF.melscale_fbanks(
            m.n_fft // 2 + 1, m.f_min, m.f_max if m.f_max is not None else m.sample_rate / 2, m.n_mels,
            m.sample_rate, m.mel_norm, m.mel_scale,
        )

    def _compute_dtype(self) -> torch.dtype:
        return torch.float32

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        if sampling:
            raise ValueError(f"griffinlim takes no sampling options, got {sorted(sampling)}")
        m = self.mel_config
        cfg: GriffinLimConfig = self.config  # type: ignore[assignment]
        frames = mel.shape[-1]
        linear_mel = decompress(mel.float(), m)
        spec = self.inverse_mel(linear_mel)
        win = m.win_length or m.n_fft
        hop = m.hop_length
        # Frame t of the front-end is centred on sample t*hop + shift; torch's centred iSTFT puts it at t*hop.
        pad_left = _left_padding(m)
        shift = pad_left - m.n_fft // 2
        length = frames * hop
        audio = AF.griffinlim(
            spec, self.window.float(), m.n_fft, hop, win, m.power, cfg.n_iter, cfg.momentum,
            length + max(-shift, 0), False,
        )
        if shift < 0:
            audio = audio[..., -shift:]
        elif shift > 0:
            audio = torch.nn.functional.pad(audio, (0, shift))[..., :length]
        audio = torch.nn.functional.pad(audio, (0, max(0, length - audio.shape[-1])))[..., :length]
        return audio


def _left_padding(m: MelConfig) -> int:
    if m.padding == "center":
        return m.n_fft // 2
    if m.padding == "hifigan":
        return (m.n_fft - m.hop_length) // 2
    return 0
