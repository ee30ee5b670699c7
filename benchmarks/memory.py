"""Peak memory of every parallel model against utterance length: is it flat?

    python benchmarks/memory.py [--seconds 5 60] [--models hifigan,waveglow,...] [--threads 1]
        [--malloc returning|default] [--json out.json]

Each (model, length) runs in a fresh process: the model is built at its published size (HiFi-GAN and
Griffin-Lim load their cards; WaveGlow, FloWaveNet and the ClariNet-size Parallel WaveNet student are built
from their default configs, random weights: memory does not depend on the values), vocodes a 1 s mel as
warm-up, then one mel of the given length while a thread samples the resident set size
(``zoo.runtime.bench._RssSampler``). Reported: peak RSS above the pre-call baseline, and the ratio of the longest
to the shortest length (the target is at most 1.5x from 5 s to 60 s).

RSS depends on the allocator as much as on the model: glibc's adaptive mmap threshold serves large tensors
from its heap after the first few are freed, and keeps that heap, so RSS also counts blocks that are free.
The windowed synthesis paths hand freed pages back between windows (``zoo.core.stream.release_freed_memory``),
and the baseline is taken after doing the same for the warm-up. ``--malloc returning`` (the default) also
fixes the threshold at 64 KiB so that RSS follows the memory actually held; ``--malloc default`` measures
glibc as it comes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("hifigan", "waveglow", "flowavenet", "parallel_wavenet", "griffinlim")


def _build(name: str):
    import zoo

    if name == "hifigan":
        return zoo.load("hifigan.universal")
    if name == "griffinlim":
        return zoo.load("griffinlim.hifigan")
    return zoo.create(name).prepare_for_inference()


def measure(name: str, seconds: float, threads: int) -> dict:
    import torch

    from zoo.core.stream import release_freed_memory
    from zoo.runtime.bench import _RssSampler

    torch.set_num_threads(threads)
    voc = _build(name).eval()
    m = voc.mel_config
    g = torch.Generator().manual_seed(0)

    def mel(secs: float) -> torch.Tensor:
        frames = max(1, int(round(secs * m.sample_rate / m.hop_length)))
        base = torch.randn(1, m.n_mels, frames, generator=g)
        return base * 0.5 - 4.0 if name in ("hifigan", "waveglow", "griffinlim") else base.sigmoid()

    voc.vocode(mel(1.0), generator=torch.Generator().manual_seed(0))
    x = mel(seconds)
    release_freed_memory()  # the baseline holds the model and the input, not the warm-up's freed blocks
    with _RssSampler() as rss:
        t0 = time.perf_counter()
        voc.vocode(x, generator=torch.Generator().manual_seed(0))
        elapsed = time.perf_counter() - t0
    return {"model": name, "seconds": seconds, "peak_mem_mb": (rss.peak - rss.baseline) / 2**20,
            "baseline_rss_mb": rss.baseline / 2**20, "elapsed_s": elapsed, "threads": threads}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[5.0, 60.0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--malloc", choices=["default", "returning"], default="returning",
                   help="'returning' (default) runs each point with MALLOC_MMAP_THRESHOLD_=65536 so that freed "
                   "large blocks go back to the OS and RSS follows the live tensors; 'default' keeps glibc's "
                   "adaptive threshold, under which RSS also counts freed memory glibc keeps for reuse")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "SECONDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], float(args.one[1]), args.threads)))
        return 0
    rows = []
    for name in args.models.split(","):
        for secs in args.seconds:
            env = dict(os.environ)
            env.pop("LD_PRELOAD", None)  # glibc malloc in both modes; only its mmap threshold differs
            if args.malloc == "returning":
                env["MALLOC_MMAP_THRESHOLD_"] = "65536"
            else:
                env.pop("MALLOC_MMAP_THRESHOLD_", None)
            out = subprocess.run([sys.executable, __file__, "--one", name, str(secs), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True, env=env)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["malloc"] = args.malloc
            rows.append(row)
            print(f"{name:<18}{secs:>6.0f} s  peak {row['peak_mem_mb']:>9.1f} MiB above baseline "
                  f"({row['elapsed_s']:.1f} s)", flush=True)
    summary = []
    for name in args.models.split(","):
        mine = sorted((r for r in rows if r["model"] == name), key=lambda r: r["seconds"])
        if len(mine) >= 2 and mine[0]["peak_mem_mb"] > 0:
            ratio = mine[-1]["peak_mem_mb"] / mine[0]["peak_mem_mb"]
            summary.append({"model": name, "short_s": mine[0]["seconds"], "long_s": mine[-1]["seconds"],
                            "ratio": ratio, "flat": ratio <= 1.5})
            print(f"{name:<18} {mine[-1]['seconds']:.0f} s / {mine[0]['seconds']:.0f} s peak memory: {ratio:.2f}x"
                  f" ({'flat' if ratio <= 1.5 else 'NOT flat'})")
    if args.json:
        from zoo.runtime.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(), "rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
