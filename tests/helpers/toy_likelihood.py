"""A tiny likelihood vocoder for testing the training loop: per-sample Gaussian with a mel-conditioned mean."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder


@dataclasses.dataclass
class ToyLikelihoodConfig(VocoderConfig):
    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))
    channels: int = 16


class ToyLikelihood(Vocoder):
    """audio[t] ~ N(mu_t, exp(log_sigma)^2) where mu comes from a conv over the mel."""

    architecture = "toy_likelihood"
    config_class = ToyLikelihoodConfig
    deterministic = True

    def __init__(self, config: ToyLikelihoodConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.conv = nn.Conv1d(c.mel.n_mels, c.channels, 3, padding=1)
        self.out = nn.Conv1d(c.channels, c.mel.hop_length, 1)
        self.log_sigma = nn.Parameter(torch.zeros(()))

    def _mean(self, mel: Tensor) -> Tensor:
        h = torch.tanh(self.conv(mel))
        return self.out(h).transpose(1, 2).reshape(mel.shape[0], -1)

    def synthesize(self, mel, *, generator=None, **sampling):
        return self._mean(mel)

    def loss(self, audio: Tensor, mel: Tensor) -> dict[str, Tensor]:
        mu = self._mean(mel)
        nll = 0.5 * ((audio - mu) * torch.exp(-self.log_sigma)).pow(2) + self.log_sigma
        return {"loss": nll.mean(), "log_sigma": self.log_sigma.detach()}
