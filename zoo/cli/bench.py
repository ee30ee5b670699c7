"""``zoo bench``: real-time factor, samples/s and peak memory of models, as a table and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import zoo
from zoo.cli.common import CliError, subcommand
from zoo.runtime.bench import bench_model, machine_info, plot_sweep


@subcommand
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure speed and memory (RTF, samples/s, peak memory)")
    p.add_argument("models", nargs="*", help="model names (default: every model that loads)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", action="append", choices=["float32", "float16", "bfloat16"],
                   help="repeatable; default float32")
    p.add_argument("--batch", type=int, action="append", help="repeatable batch sizes (default 1)")
    p.add_argument("--seconds", type=float, action="append", help="repeatable utterance lengths (default 5)")
    p.add_argument("--runs", type=int, default=3, help="timed runs per point (the median is reported)")
    p.add_argument("--warmup-seconds", type=float,
                   help="warm up on a mel of this length instead of the measured one (cheaper for long inputs)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--json", dest="json_out", help="write results and machine info to this file")
    p.add_argument("--plot", help="write a PNG of time and memory against length (needs matplotlib)")
    p.add_argument("--offline", action="store_true")
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or zoo.list_models()
    dtypes = args.dtype or ["float32"]
    batches = args.batch or [1]
    lengths = args.seconds or [5.0]
    if any(b < 1 for b in batches):
        raise CliError(f"--batch must be at least 1, got {batches}")
    if any(not s > 0 for s in lengths):
        raise CliError(f"--seconds must be positive, got {lengths}")
    failed = []
    results = []
    print(f"{'model':<26}{'dtype':<10}{'batch':>6}{'secs':>7}{'RTF':>9}{'samples/s':>13}{'peak MiB':>10}")
    for name in names:
        for dtype in dtypes:
            try:
                if name in zoo.list_architectures() and name not in zoo.list_models():
                    # An architecture without shipped weights: its default (published) size, random weights.
                    voc = zoo.create(name).prepare_for_inference().to(device=args.device, dtype=getattr(torch, dtype))
                else:
                    voc = zoo.load(name, device=args.device, dtype=dtype, offline=args.offline or None)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other models
                print(f"{name:<26}{dtype:<10} skipped: {exc}")
                failed.append(name)
                continue
            for batch in batches:
                for secs in lengths:
                    r = bench_model(voc, name=name, seconds=secs, batch=batch, runs=args.runs,
                                    warmup_seconds=args.warmup_seconds)
                    results.append(r.to_dict())
                    print(f"{name:<26}{r.dtype:<10}{batch:>6}{r.seconds:>7.1f}{r.rtf:>9.4f}"
                          f"{r.samples_per_s:>13,.0f}{r.peak_mem_mb:>10.1f}")
            if results and results[-1]["model"] == name:
                print(f"{'':<26}kernels: {results[-1]['kernels']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2))
    if args.plot:
        plot_sweep(results, args.plot)
    if failed and args.models:  # a model asked for by name that could not be benchmarked
        print(f"zoo: error: could not benchmark {sorted(set(failed))}", file=sys.stderr)
        return 2
    return 0
