"""How close the flow vocoders run to this CPU's matmul peaks, and so how much faster they could go.

    python benchmarks/roofline.py [--threads 1] [--compare benchmarks/results/compare_threads1.json] [--json out.json]

* **Work**: floating-point operations per second of audio of WaveGlow (256 channels) and FloWaveNet (README
  size), counted by ``torch.utils.flop_counter.FlopCounterMode`` on the plain convolution path (the
  reference's layout: the same convolutions NVIDIA's and ksw0306's code run) for 1 s of audio.
* **Peaks**: the best of several float32 matrix products shaped like these models' layers (time-major
  activations against 768 x 512 and 640 x 4096 weights) and a square 2048 product, median of repeats; on a
  CPU with AVX-512 BF16, the same for products with bfloat16 operands and float32 sums (torch's ``mm`` in
  bfloat16 and :mod:`zoo.kernels.tapconv`'s compiled product, whichever is faster).
* From ``compare_threads<n>.json`` (``compare_reference.py``, same threads): the achieved GFLOP/s of the reference and
  of ours, and the **ceilings**: the speed-up over the float32 reference that running every FLOP at the
  float32 peak, or at the bfloat16 peak, would give. A target above its ceiling cannot be met without doing
  less arithmetic.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
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


def bf16_product_peak(repeats: int = 7) -> dict[str, float]:
    """GFLOP/s of products with bfloat16 operands and float32 sums, each median of ``repeats`` after a warm-up:
    :mod:`zoo.kernels.tapconv`'s compiled product and torch's ``mm`` in bfloat16; empty where the kernel does
    not multiply with AVX-512 BF16 instructions here (:func:`zoo.kernels.tapconv.native_bf16`: the CPU lacks
    them, or the kernel is not built), where no bfloat16 ceiling applies."""
    from zoo.kernels import tapconv

    if not tapconv.native_bf16():
        return {}
    m, k, n = 16384, 768, 512
    a, b = torch.randn(m, k), torch.randn(k, n)
    packed, src, c = tapconv.pack(b[None], torch.bfloat16), a.bfloat16(), torch.empty(m, n)
    flop = 2 * m * k * n
    return {"zoo tapconv 16384x768 @ 768x512": flop / _median_seconds(
                functools.partial(tapconv.conv_taps, c, src, 0, packed, 1), repeats) / 1e9,
            "torch mm 16384x768 @ 768x512": flop / _median_seconds(
                functools.partial(torch.mm, src, b.bfloat16()), repeats) / 1e9}


def read_bandwidth(megabytes: int = 256, repeats: int = 11) -> float:
    """GB/s at which torch streams a float32 array of ``megabytes`` (far larger than the caches) from memory on
    its current threads: the fastest pass of ``sum`` and ``amax`` over ``repeats`` each, after a warm-up (a
    pass the OS interrupts, or that shares the machine, only reads slower; the median of ``sum`` alone
    varied by a third between runs, and ``amax`` streams about a quarter faster than ``sum`` here).

    The array sits in transparent huge pages where the system grants them
    (:func:`zoo.kernels.native.huge_page_copies`), as the WaveNet loop's weights do: with THP in ``madvise``
    mode a plain tensor gets 4 KiB pages, and its stream missed the TLB on every page (20.8 against
    33.3 GB/s on one core here, 33.3 against 38.3 on two), so the old ceiling sat below the loop.

    This is a DRAM rate: a loop whose data partly fits the last-level cache (the LJSpeech WaveNet's 56 MB of
    weights against a 32 MB L3) can read faster than it."""
    from zoo.kernels import native

    a = native.huge_page_copies([torch.ones(megabytes * 2**20 // 4)])[0]
    best = math.inf
    for fn in (a.sum, a.amax):
        fn()
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return a.numel() * 4 / best / 1e9


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
    peaks, bf16_peaks = matmul_peak(), bf16_product_peak()
    peak = max(peaks.values())
    bf16_peak = max(bf16_peaks.values()) if bf16_peaks else None
    for label, g in peaks.items():
        print(f"matmul {label:<24} {g:7.1f} GFLOP/s")
    for label, g in bf16_peaks.items():
        print(f"bfloat16 {label:<32} {g:7.1f} GFLOP/s")
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
        bf = [r for r in compare.get("rows", []) if r["model"].split(" ")[0] == prefix and r["dtype"] == "bfloat16"]
        if bf and bf16_peak:
            r, seconds = bf[0], compare["seconds"]
            row.update(ours_bf16_gflops=work * seconds / r["ours_s"] / 1e9, bf16_speedup=r["speedup"],
                       bf16_ceiling=bf16_peak * r["reference_s"] / (work * seconds / 1e9))
        rows.append(row)
        print(json.dumps(row))
    result = {"threads": args.threads, "matmul_gflops": peaks, "peak_gflops": peak, "bf16_product_gflops": bf16_peaks,
              "bf16_peak_gflops": bf16_peak, "rows": rows}
    if args.json:
        from zoo.runtime.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
