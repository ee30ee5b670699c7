"""A noise vocoder: the mel's spectral envelope imposed on white noise (no phase model at all)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor, nn

from zoo import MelConfig, Vocoder, VocoderConfig
from zoo.core.mel import decompress


@dataclasses.dataclass
class NoiseConfig(VocoderConfig):
    """Hyperparameters: the mel contract and the output ``gain``'s initial value."""

    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))
    init_gain: float = 1.0


class NoiseVocoder(Vocoder[NoiseConfig]):
    """Least-squares inverse of the mel filterbank, random phase, inverse STFT, times a learned gain."""

    deterministic = False  # it draws random phases: vocode() takes a torch.Generator

    def __init__(self, config: NoiseConfig | None = None) -> None:
        super().__init__(config)
        m = self.mel_config
        fb = AF.melscale_fbanks(m.n_fft // 2 + 1, m.f_min, m.f_max or m.sample_rate / 2, m.n_mels,
                                m.sample_rate, m.mel_norm, m.mel_scale)
        self.register_buffer("inv_fb", torch.linalg.pinv(fb.T), persistent=False)
        self.register_buffer("window", torch.hann_window(m.win_length or m.n_fft), persistent=False)
        self.gain = nn.Parameter(torch.tensor(float(self.config.init_gain)))

    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        m = self.mel_config
        linear = decompress(mel.float(), m).clamp_min(0) ** (1.0 / m.power)
        mag = (self.inv_fb.float() @ linear).clamp_min(0)
        phase = torch.rand(mag.shape, generator=generator, device="cpu").to(mag.device) * 2 * torch.pi
        spec = torch.polar(mag, phase)
        frames = mel.shape[-1]
        audio = torch.istft(spec, m.n_fft, m.hop_length, m.win_length or m.n_fft, self.window.float(),
                            center=True, length=frames * m.hop_length)
        return (self.gain.float() * audio).to(mel.dtype)
