"""TensorBoard event files for ``zoo train`` and ``zoo distill`` (the optional ``tensorboard`` extra).

Written into the run folder beside ``metrics.csv`` (``tensorboard --logdir RUN``):

* scalars ``train/<loss term>``, ``train/lr``, ``train/samples_per_s`` every ``log_every`` steps and
  ``val/<loss term>`` at validation;
* at every validation step, for each validation clip ``i``: ``val/clip<i>/generated`` (audio: copy-synthesis
  of its start), ``val/clip<i>/original`` (audio, the recording), ``val/clip<i>/spectrogram`` (an image: the
  original's spectrogram on the left, the generated one on the right, on one colour scale), and, when the
  ``quality`` extra is installed, ``val/stoi`` and ``val/pesq_wb`` (means over the clips).

Without the ``tensorboard`` package, :func:`open_logger` returns ``None`` and training runs as before.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from zoo.audio.metrics import pesq_wb, quality_available, stoi
from zoo.audio.report import DB_RANGE, colorize, spectrogram_db

TENSORBOARD_EXTRA = 'pip install "vocoder-zoo[tensorboard]"'


class TrainLogger:
    """A thin layer over ``torch.utils.tensorboard.SummaryWriter`` with the zoo's tag names."""

    def __init__(self, run_dir: str | Path) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir))
        self._originals_logged: set[int] = set()

    def scalars(self, step: int, split: str, values: dict[str, float], *, lr: float | None = None,
                samples_per_s: float | None = None) -> None:
        """Loss terms as ``<split>/<name>``, and the learning rate and throughput of a training step."""
        for name, value in values.items():
            self.writer.add_scalar(f"{split}/{name}", float(value), step)
        if lr is not None:
            self.writer.add_scalar(f"{split}/lr", float(lr), step)
        if samples_per_s is not None:
            self.writer.add_scalar(f"{split}/samples_per_s", float(samples_per_s), step)

    def clips(self, step: int, sample_rate: int, generated: Sequence[Tensor], originals: Sequence[Tensor]) -> dict:
        """Audio, spectrograms (original beside generated) and, with the quality extra, mean STOI and
        wideband PESQ of validation clips. Returns the quality numbers logged (empty without the extra)."""
        scores: dict[str, list[float]] = {"stoi": [], "pesq_wb": []}
        measure = quality_available()
        for i, (gen, ref) in enumerate(zip(generated, originals, strict=True)):
            gen, ref = gen.detach().float().cpu().flatten(), ref.detach().float().cpu().flatten()
            n = min(gen.numel(), ref.numel())
            gen, ref = gen[:n], ref[:n]
            self.writer.add_audio(f"val/clip{i}/generated", gen.clamp(-1, 1)[None], step, sample_rate=sample_rate)
            if i not in self._originals_logged:  # the recording does not change: logged once per run (process)
                self.writer.add_audio(f"val/clip{i}/original", ref.clamp(-1, 1)[None], step, sample_rate=sample_rate)
                self._originals_logged.add(i)
            a, b = spectrogram_db(ref.numpy(), sample_rate), spectrogram_db(gen.numpy(), sample_rate)
            gap = np.full((a.shape[0], 4), DB_RANGE[1])
            img = colorize(np.concatenate([a, gap, b], axis=1)[::-1], *DB_RANGE)
            self.writer.add_image(f"val/clip{i}/spectrogram", np.ascontiguousarray(img), step, dataformats="HWC")
            if measure and n >= sample_rate // 4:  # STOI needs a few frames of speech
                scores["stoi"].append(stoi(gen, ref, sample_rate))
                scores["pesq_wb"].append(pesq_wb(gen, ref, sample_rate))
        out = {k: float(np.mean(v)) for k, v in scores.items() if v}
        for k, v in out.items():
            self.writer.add_scalar(f"val/{k}", v, step)
        return out

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_logger(run_dir: str | Path, *, quiet: bool = False) -> TrainLogger | None:
    """A :class:`TrainLogger` writing into ``run_dir``, or ``None`` (with a one-line note on stderr unless
    ``quiet``) when the ``tensorboard`` package is not installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        if not quiet:
            print(f"TensorBoard logging is off (install it with {TENSORBOARD_EXTRA})", file=sys.stderr)
        return None
    return TrainLogger(run_dir)


def copy_synthesis(model: Any, mels: Sequence[Tensor], seed: int = 0) -> list[Tensor]:
    """Vocode each mel with ``model`` in eval mode (restoring its training mode), seeded noise."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [model.vocode(m, generator=torch.Generator(device=m.device).manual_seed(seed))[0] for m in mels]
    finally:
        model.train(was_training)
