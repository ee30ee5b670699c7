"""``zoo distill``: distil a WaveNet teacher into a parallel (IAF) student on a folder of wavs.

A command the parallel_wavenet plugin contributes through the ``zoo_register_commands`` hook (see
``zoo.registry.hookspecs.Command``); the core imports no plugin. The distillation itself is
:meth:`~zoo_plugins.parallel_wavenet.model.ParallelWaveNet.distill`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli.common import CliError
from zoo.registry.hookspecs import Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``zoo distill``."""
    p.add_argument("--teacher", required=True, help="teacher model: name or folder (a 'wavenet' model)")
    p.add_argument("--out", required=True, help="folder for the student model and metrics.csv")
    p.add_argument("--data", required=True, help="folder of wav files")
    p.add_argument("--steps", type=int, help="distillation steps (overrides the 'steps' setting)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a student setting (flow_layers=[10,10,10,30], residual_channels=64 ...) or a "
        "distillation setting (kl_type=pq, kl=monte_carlo, batch_size=2, lr=1e-3 ...)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="do not print the loss terms")


def run(args: argparse.Namespace) -> int:
    """Run ``zoo distill``; prints the last loss terms and where the student is."""
    import torch
    from zoo_plugins.parallel_wavenet.model import ParallelWaveNet

    import zoo
    from zoo.train.trainer import parse_overrides

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError("--device cuda requested but CUDA is not available")
    if not Path(args.data).is_dir():
        raise CliError(f"--data {args.data}: no such folder")
    settings = parse_overrides(args.set)
    if args.steps is not None:
        if args.steps < 1:
            raise CliError("--steps must be >= 1")
        settings["steps"] = args.steps
    teacher = zoo.load(args.teacher)
    last = ParallelWaveNet.distill(teacher, args.data, args.out, settings, device=args.device,
                                   verbose=not args.quiet)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"done: {terms}; student in {args.out}")
    return 0


DISTILL = Command(
    name="distill",
    help="distil a WaveNet teacher into a parallel IAF student (Parallel WaveNet / ClariNet)",
    add_arguments=add_arguments,
    run=run,
)
