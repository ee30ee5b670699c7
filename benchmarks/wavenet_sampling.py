"""WaveNet sampling speed: incremental (ring buffers, TorchScript step) vs naive full recompute.

    python benchmarks/wavenet_sampling.py [--steps 2000] [--runs 3] [--no-bfloat16] [--json out.json]

For the published r9y9 LJSpeech config (24 layers, 512/512/256, MoL) and a small config, batch 1 and 8:
samples per second of incremental sampling, next to the rate of the naive method that recomputes the
whole network over the receptive field for every new sample (measured over a few dozen steps). The
LJSpeech config is also sampled with bfloat16 weights at batch 1 (the model cast with ``.to(bfloat16)``, the
same sampler: whatever path the library takes for that dtype; no naive rate). Each row records the kernel
path its dtype takes (``zoo.registry.plugins.kernel_path``).

The rows of one config are timed in ``--runs`` interleaved rounds (batch 1, batch 8, bfloat16 batch 1, then
again), after one warm-up of each: batch 1 is bound by memory bandwidth, which this shared machine delivers
unevenly (the same loop ran 590 and 1,150 samples/s on 2 threads minutes apart), so rows timed one after
the other compared different machines. Each row's rate is the median of its rounds (every round kept in
``runs``), and ``vs_batch1`` is the median of the per-round ratios to batch 1.

The LJSpeech float32 rows also get a **compute ceiling**: the float32 matmul peak on the same threads
(``roofline.matmul_peak``, the best of its products) over the FLOPs of one sample (two per weight of the
stack, the conditioning projection and the head; the last layer's unused residual conv not counted). At
batch 1 the loop is bound by reading the weights; a batch reads them once per step for all its items, so
its rate can grow until it reaches this ceiling, and no batch can pass it: ``ceiling_vs_batch1`` is the
largest batch-vs-batch-1 speed-up this machine allows.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo_plugins.wavenet import WaveNet, WaveNetConfig  # noqa: E402
from zoo_plugins.wavenet.incremental import IncrementalSampler  # noqa: E402

from zoo.registry.plugins import kernel_path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchcheck import interleaved_rounds  # noqa: E402
from roofline import matmul_peak  # noqa: E402


def incremental_rate(model: WaveNet, batch: int, steps: int) -> float:
    """Samples per second (all items) of one incremental sampling run of ``steps`` steps at ``batch`` (the
    warm-up is ``benchcheck.interleaved_rounds``' first call)."""
    frames = max(1, steps // model.hop_length)
    mel = torch.rand(batch, model.mel_config.n_mels, frames, dtype=next(model.parameters()).dtype)
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        t0 = time.perf_counter()
        IncrementalSampler(model, batch).run(c_up, generator=torch.Generator().manual_seed(0))
        elapsed = time.perf_counter() - t0
    return batch * c_up.shape[-1] / elapsed


def median_ratio(rates: list[float], base: list[float]) -> float:
    """The median over rounds of ``rates[i] / base[i]`` (one ratio per round of ``benchcheck.interleaved_rounds``)."""
    if len(rates) != len(base) or not rates:
        raise ValueError("one rate per round on both sides")
    return statistics.median(r / b for r, b in zip(rates, base, strict=True))


def flop_per_sample(model: WaveNet) -> float:
    """FLOPs of one sampling step of one item: two per weight of every matrix the step multiplies (the stack's
    dilated, residual and skip convs, the conditioning projection, the front and the head; the upsampler
    runs once per frame, the last layer's residual conv never)."""
    last = len(model.stack.layers) - 1
    weights = 0
    for name, p in model.named_parameters():
        if p.dim() < 2 or name.startswith("upsample") or name.startswith(f"stack.layers.{last}.res."):
            continue
        weights += p.numel()
    return 2.0 * weights


def naive_rate(model: WaveNet, batch: int, steps: int = 30) -> float:
    """Recompute the teacher-forced forward over the last receptive-field samples for every step."""
    rf = model.receptive_field
    x = torch.zeros(batch, model.distribution.input_channels, rf)
    c = torch.rand(batch, model.mel_config.n_mels, rf)
    with torch.no_grad():
        model.teacher_forced(x, c)
        t0 = time.perf_counter()
        for _ in range(steps):
            y = model.teacher_forced(x, c)[..., -1]
            x = torch.roll(x, -1, dims=-1)
            x[..., -1] = y[:, : x.shape[1]].tanh()
        elapsed = time.perf_counter() - t0
    return batch * steps / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2048)
    p.add_argument("--json", type=Path)
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds per config (median of them)")
    p.add_argument("--no-bfloat16", action="store_true", help="skip the LJSpeech row with bfloat16 weights")
    args = p.parse_args(argv)
    configs = {"r9y9-ljspeech (24L, 512/512/256, MoL)": WaveNetConfig.r9y9_ljspeech_2092a64(),
               "small (6L, 16/32/16, MoL)": WaveNetConfig.small("mol")}
    rows = []
    print(f"{'config':<40}{'dtype':<10}{'batch':>6}{'incremental samples/s':>24}{'naive samples/s':>18}"
          f"{'speed-up':>10}   (torch threads {torch.get_num_threads()}, median of {args.runs} interleaved rounds)")
    peak = max(matmul_peak().values())
    for name, cfg in configs.items():
        model = WaveNet(cfg).eval()
        steps = args.steps if "small" in name else args.steps // 2
        flop = flop_per_sample(model)
        ceiling = peak * 1e9 / flop
        runners: dict[tuple[str, int], Callable[[], float]] = {
            ("float32", b): functools.partial(incremental_rate, model, b, steps) for b in (1, 8)}
        if "ljspeech" in name and not args.no_bfloat16:
            bf = copy.deepcopy(model).to(torch.bfloat16)
            runners["bfloat16", 1] = functools.partial(incremental_rate, bf, 1, steps)
        rates = interleaved_rounds(runners, args.runs)
        base = rates["float32", 1]
        batch1 = statistics.median(base)
        for (dtype, batch), got in rates.items():
            inc = statistics.median(got)
            naive = naive_rate(model, batch) if dtype == "float32" else None
            row = {"config": name, "dtype": dtype, "batch": batch, "incremental": inc, "naive": naive,
                   "speedup": None if naive is None else inc / naive, "runs": got,
                   "vs_batch1": median_ratio(got, base), "kernel_path": kernel_path("wavenet", dtype)}
            if "ljspeech" in name and dtype == "float32":
                row.update(gflop_per_sample=flop / 1e9, gflops=inc * flop / 1e9, matmul_peak_gflops=peak,
                           compute_ceiling_samples_per_s=ceiling, ceiling_vs_batch1=ceiling / batch1)
            rows.append(row)
            naive_s = "-" if naive is None else f"{naive:,.0f}"
            speed_s = "-" if naive is None else f"{inc / naive:.1f}x"
            print(f"{name:<40}{dtype:<10}{batch:>6}{inc:>24,.0f}{naive_s:>18}{speed_s:>10}"
                  f"   rounds {min(got):,.0f}-{max(got):,.0f}, {row['vs_batch1']:.2f}x batch 1")
        if "ljspeech" in name:
            print(f"    compute ceiling {ceiling:,.0f} samples/s ({flop / 1e6:.1f} MFLOP per sample at the float32 "
                  f"matmul peak {peak:.0f} GFLOP/s): {ceiling / batch1:.2f}x batch 1")
    if args.json:
        result = {"threads": torch.get_num_threads(), "runs": args.runs, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
