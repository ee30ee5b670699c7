"""A short Adam run on real speech, shared by the architectures' "loss falls" tests."""

from __future__ import annotations

from pathlib import Path

import torch

from zoo.core.vocoder import Vocoder
from zoo.train.data import SegmentDataset, StepBatcher, list_audio


def short_training(model: Vocoder, data: Path, *, steps: int, segment: int, batch: int, lr: float,
                   files: int = 6) -> tuple[float, float]:
    """Mean training loss of the first five and the last five of ``steps`` Adam steps."""
    model.train()
    dataset = SegmentDataset(list_audio(data)[:files], model.mel_config, segment)
    batcher = StepBatcher(dataset, batch, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        audio, mel = batcher.batch(step)
        loss = model.loss(audio, mel)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:5]) / 5, sum(losses[-5:]) / 5
