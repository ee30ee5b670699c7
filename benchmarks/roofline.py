"""How close the flow vocoders run to this CPU's float32 matmul peak, and so how much faster they could go.

    python benchmarks/roofline.py [--threads 1] [--compare benchmarks/results/compare_threads1.json] [--json out.json]

* **Work**: floating-point operations per second of audio of WaveGlow (256 channels) and FloWaveNet (README
  size), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the plain convolution path (the
  reference's layout: the same convolutions NVIDIA's and ksw0306's code run) for 1 s of audio.
* **Peak**: the best of several float32 matrix products shaped like these models' layers (time-major
  activations against 768 x 512 and 640 x 4096 weights) and a square 2048 product, median of repeats.
* From ``compare_threads<n>.json`` (``compare_reference.py``, same threads): the achieved GFLOP/s of the reference and
  of ours, and the **ceiling**: the speed-up over the reference that running at the matmul peak would give.
  A target above the ceiling cannot be met in float32 without doing less arithmetic.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODELS = {"waveglow": "waveglow", "flowavenet": "flowavenet"}  # compare.json row prefix -> architecture


def flops_per_audio_second(arch: str) -> float:
    """FLOPs to vocode one second of audio at the published size (plain convolution path)."""
    from torch.utils.flop_counter import FlopCounterMode

    import zoo

    voc = zoo.create(arch).prepare_for_inference().eval().requires_grad_(False)
    m = voc.mel_config
    frames = round(m.sample_rate / m.hop_length)
    mel = torch.randn(1, m.n_mels, frames)
    # Autograd on (no parameter needs it) selects the reference-layout path, which the counter sees op by op.
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        voc.synthesize(mel, generator=torch.Generator().manual_seed(0))
    return counter.get_total_flops() * m.sample_rate / (frames * m.hop_length)


def matmul_peak(repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of float32 products: each shape's median over ``repeats`` after a warm-up."""
    shapes = {"16384x768 @ 768x512": (16384, 768, 512), "16384x640 @ 640x4096": (16384, 640, 4096),
              "2048x2048 @ 2048x2048": (2048, 2048, 2048)}
    out = {}
    for label, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        c = torch.empty(m, n)
        out[label] = 2 * m * k * n / _median_seconds(functools.partial(torch.mm, a, b, out=c), repeats) / 1e9
    return out


def read_bandwidth(megabytes: int = 256, repeats: int = 7) -> float:
    """GB/s at which this machine streams a float32 array from memory (``sum`` of ``megabytes``, far larger
    than the caches, on torch's current threads; median of ``repeats`` after a warm-up)."""
    a = torch.ones(megabytes * 2**20 // 4)
    return a.numel() * 4 / _median_seconds(a.sum, repeats) / 1e9


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compare", type=Path, default=HERE / "results" / "compare_threads1.json",
                   help="compare_reference.py's result on the same threads (performance.py passes its own)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peaks = matmul_peak()
    peak = max(peaks.values())
    for label, g in peaks.items():
        print(f"matmul {label:<24} {g:7.1f} GFLOP/s")
    compare = json.loads(args.compare.read_text()) if args.compare.is_file() else {}
    rows = []
    for prefix, arch in MODELS.items():
        work = flops_per_audio_second(arch)
        row: dict = {"model": arch, "gflop_per_audio_s": work / 1e9}
        match = [r for r in compare.get("rows", []) if r["model"].split(" ")[0] == prefix and r["dtype"] == "float32"]
        if match:
            r, seconds = match[0], compare["seconds"]
            row.update(reference_gflops=work * seconds / r["reference_s"] / 1e9,
                       ours_gflops=work * seconds / r["ours_s"] / 1e9,
                       speedup=r["speedup"], ceiling=peak * r["reference_s"] / (work * seconds / 1e9),
                       compare_threads=compare.get("machine", {}).get("threads"))
        rows.append(row)
        print(json.dumps(row))
    result = {"threads": args.threads, "matmul_gflops": peaks, "peak_gflops": peak, "rows": rows}
    if args.json:
        from zoo.runtime.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
