"""``zoo export``: TorchScript / ONNX export of parallel vocoders, verified against PyTorch."""

from __future__ import annotations

import argparse

import zoo
from zoo.cli.common import subcommand
from zoo.runtime.export import export


@subcommand
def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a parallel vocoder to TorchScript or ONNX (dynamic time axis)")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="onnx")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    voc = zoo.load(args.model)
    path = export(voc, args.format, args.out)
    print(f"wrote {path} ({args.format}; checked against PyTorch on another length and batch)")
    return 0
