"""``zoo distill``: distil a WaveNet teacher into a parallel (IAF) student on a folder of wavs.

The distillation itself lives in the student architecture's plugin: the class registered as
``--student`` (default ``parallel_wavenet``) provides ``distill(...)``; the core imports no plugin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zoo.cli import CliError, subcommand


@subcommand
def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil a WaveNet teacher into a parallel IAF student (Parallel WaveNet / ClariNet)"
    )
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
    p.add_argument(
        "--student", default="parallel_wavenet", help="student architecture (default parallel_wavenet)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="do not print the loss terms")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    import torch

    import zoo
    from zoo.registry import get_registry
    from zoo.train import parse_overrides

    cls = get_registry().architecture(args.student).cls
    distill = getattr(cls, "distill", None)
    if distill is None:
        raise CliError(f"architecture {args.student!r} cannot be distilled into (it has no distill())")
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
    last = distill(teacher, args.data, args.out, settings, device=args.device, verbose=not args.quiet)
    terms = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"done: {terms}; student in {args.out}")
    return 0
