"""Parallel WaveNet / ClariNet: an inverse-autoregressive-flow student distilled from a WaveNet teacher."""

from __future__ import annotations

from zoo_model_cards import shipped_cards
from zoo_plugins.parallel_wavenet.model import IAFFlow, ParallelWaveNet, ParallelWaveNetConfig

from zoo import hookimpl
from zoo.registry.hookspecs import ArchitectureRegister, CommandRegister, ConverterRegister, ModelCardRegister

__all__ = ["IAFFlow", "ParallelWaveNet", "ParallelWaveNetConfig"]


@hookimpl
def zoo_register_architectures(register: ArchitectureRegister) -> None:
    register("parallel_wavenet", ParallelWaveNet)


@hookimpl
def zoo_register_converters(register: ConverterRegister) -> None:
    from zoo_plugins.parallel_wavenet.convert import convert_clarinet

    register(
        "clarinet",
        convert_clarinet,
        "ksw0306/ClariNet checkpoints: ckpt_teacher.pth -> wavenet (Gaussian teacher); ckpt_student.pth "
        "(+ config={'teacher_checkpoint': PATH} or the teacher .pth beside it) -> parallel_wavenet",
    )


@hookimpl
def zoo_register_model_cards(register: ModelCardRegister) -> None:
    for path in shipped_cards("parallel_wavenet"):
        register(path)


@hookimpl
def zoo_register_commands(register: CommandRegister) -> None:
    from zoo_plugins.parallel_wavenet.cli import DISTILL

    register(DISTILL)
