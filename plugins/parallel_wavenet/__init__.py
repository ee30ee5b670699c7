"""Parallel WaveNet / ClariNet: an inverse-autoregressive-flow student distilled from a WaveNet teacher."""

from __future__ import annotations

from collections.abc import Callable

from zoo_plugins.parallel_wavenet.model import IAFFlow, ParallelWaveNet, ParallelWaveNetConfig

from zoo import hookimpl

__all__ = ["IAFFlow", "ParallelWaveNet", "ParallelWaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: Callable[..., None]) -> None:
    register("parallel_wavenet", ParallelWaveNet)


@hookimpl
def zoo_register_converters(register: Callable[..., None]) -> None:
    from zoo_plugins.parallel_wavenet.convert import convert_clarinet

    register(
        "clarinet",
        convert_clarinet,
        "ksw0306/ClariNet checkpoints: ckpt_teacher.pth -> wavenet (Gaussian teacher); ckpt_student.pth "
        "(+ config={'teacher_checkpoint': PATH} or the teacher .pth beside it) -> parallel_wavenet",
    )
