"""The teacher side of distillation: a frozen WaveNet plugin model seen through a small adapter.

The student never re-implements WaveNet: it asks the ``wavenet`` model for its teacher-forced output
distribution parameters on the student's sample, its output distribution's negative log-likelihood,
and its conditioning upsampler (which the student copies).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.core.vocoder import Vocoder

CONTINUOUS = {"gaussian", "mol"}


class TeacherAdapter:
    """Freeze ``teacher`` and expose what distillation needs from it.

    ``output(x, c_up)``: teacher-forced parameters ``[B, C, T]``, step ``t`` describing ``x_{t+1}``;
    ``nll(y_hat, y)``: per-element negative log-likelihood; ``is_gaussian``: single-Gaussian output
    (closed-form KL possible).
    """

    def __init__(self, teacher: Vocoder) -> None:
        if isinstance(teacher, TeacherAdapter):
            teacher = teacher.model
        if getattr(teacher, "architecture", "") != "wavenet":
            got = getattr(teacher, "architecture", None) or type(teacher).__name__
            raise ValueError(f"the teacher must be a 'wavenet' model, got {got!r}")
        name = self._distribution_name(teacher)
        if name not in CONTINUOUS:
            raise ValueError(
                f"the teacher's output distribution is {name!r}; distillation needs a continuous density "
                f"over the sample values: 'gaussian' (ClariNet) or 'mol' (Parallel WaveNet)"
            )
        self.model = teacher
        self.distribution_name = name
        teacher.eval()
        teacher.requires_grad_(False)

    @staticmethod
    def _distribution_name(teacher: Vocoder) -> str:
        return str(teacher.config.output_distribution)

    @property
    def is_gaussian(self) -> bool:
        return self.distribution_name == "gaussian"

    def to(self, device: torch.device | str) -> TeacherAdapter:
        self.model.to(device)
        return self

    def upsample(self, mel: Tensor) -> Tensor:
        """The teacher's ``c_up`` for ``mel``."""
        return self.model.upsample_mel(mel)

    def output(self, x: Tensor, c_up: Tensor) -> Tensor:
        """Teacher-forced output parameters on ``x`` ``[B, 1, T]`` with upsampled conditioning ``c_up``."""
        self.model.eval()
        return self.model.teacher_forced(x, c_up)

    def nll(self, y_hat: Tensor, y: Tensor) -> Tensor:
        """Per-element negative log-likelihood ``[B, T]`` of ``y`` under ``y_hat`` ``[B, C, T]``."""
        return self.model.distribution.loss(y_hat, y)

    def upsampler_config(self) -> dict[str, Any]:
        """The student config fields that make its upsampler a copy of the teacher's."""
        return self.model.config.upsampler_settings()

    def copy_upsampler_into(self, student: Vocoder) -> None:
        """Load the teacher's upsampler weights into ``student.upsample``."""
        student.upsample.load_state_dict(self.model.upsample.state_dict())

    def check_compatible(self, student: Vocoder) -> None:
        """The student must use the teacher's mel features and an upsampler of the same shape."""
        diff = self.model.mel_config.diff(student.mel_config)
        if diff:
            raise ValueError(f"student and teacher use different mel features: {diff}")
        mine = {k: tuple(v.shape) for k, v in student.upsample.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in self.model.upsample.state_dict().items()}
        if mine != theirs:
            raise ValueError(f"the student's upsampler {mine} does not match the teacher's {theirs}")


__all__ = ["TeacherAdapter"]
