"""Which part of Parallel WaveNet is parallel? Student sampling vs teacher sampling, in samples per second.

The teacher is a ClariNet-layout Gaussian WaveNet (``wavenet`` plugin: kernel 2, front conv 32, 2-D
upsampler) sampled autoregressively with the plugin's fast incremental sampler, one sample after the
other. The student (``parallel_wavenet``) has the same channel widths and turns noise into the whole
utterance with one parallel pass per flow. Random weights: speed does not depend on training.

    python benchmarks/student_vs_teacher.py     # ClariNet student widths 64/256/64, 1 thread
    python benchmarks/student_vs_teacher.py --threads 2 --student-seconds 2 --teacher-seconds 0.25

Prints one JSON line per measurement and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

import zoo
from zoo.registry.plugins import get_registry


def build_models(args: argparse.Namespace) -> tuple[zoo.Vocoder, zoo.Vocoder]:
    """The teacher (ClariNet layout, ``teacher_layers`` layers) and the student at the same widths."""
    from zoo_plugins.parallel_wavenet.distill import student_for_teacher

    teacher_cls = get_registry().architecture("wavenet").cls
    teacher_cfg = teacher_cls.config_class.clarinet(
        layers=args.teacher_layers,
        stacks=args.teacher_layers // 10,
        residual_channels=args.residual,
        gate_channels=args.gate,
        skip_channels=args.skip,
    )
    teacher = teacher_cls(teacher_cfg).eval()
    student = student_for_teacher(
        teacher,
        flow_layers=tuple([args.student_layers] * args.student_flows),
        dilation_cycle=10,
        residual_channels=args.residual,
        gate_channels=args.gate,
        skip_channels=args.skip,
    ).eval()
    return teacher, student


def samples_per_second(model: zoo.Vocoder, seconds: float, repeats: int) -> tuple[float, int]:
    """Best-of-``repeats`` synthesis rate on a random mel of about ``seconds`` of audio."""
    hop = model.hop_length
    frames = max(1, round(seconds * model.sample_rate / hop))
    mel = torch.rand(1, model.mel_config.n_mels, frames, generator=torch.Generator().manual_seed(0))
    best = math.inf
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        start = time.perf_counter()
        audio = model.vocode(mel, generator=gen)[0]
        best = min(best, time.perf_counter() - start)
        if not torch.isfinite(audio).all():
            raise RuntimeError(f"{model.architecture} produced NaN/Inf")
    return frames * hop / best, frames * hop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--residual", type=int, default=64)
    p.add_argument(
        "--gate", type=int, default=256, help="dilated-conv width, both gated halves (ClariNet: 128 each)"
    )
    p.add_argument("--skip", type=int, default=64)
    p.add_argument("--teacher-layers", type=int, default=20, help="ClariNet teacher: 2 blocks x 10")
    p.add_argument("--student-flows", type=int, default=6)
    p.add_argument("--student-layers", type=int, default=10)
    p.add_argument("--student-seconds", type=float, default=1.0)
    p.add_argument("--teacher-seconds", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    teacher, student = build_models(args)
    rows = []
    with torch.inference_mode():
        for name, model, seconds in (
            ("teacher (incremental)", teacher, args.teacher_seconds),
            ("student (parallel IAF)", student, args.student_seconds),
        ):
            rate, n = samples_per_second(model, seconds, args.repeats)
            row = {
                "model": name,
                "architecture": model.architecture,
                "parameters": model.num_parameters(),
                "samples": n,
                "samples_per_s": round(rate, 1),
                "real_time_factor": round(rate / model.sample_rate, 4),
                "threads": args.threads,
                "cpu": platform.processor() or platform.machine(),
                "torch": torch.__version__,
            }
            print(json.dumps(row))
            rows.append(row)
    print()
    print(f"| model | parameters | samples/s | x real time ({teacher.sample_rate} Hz) |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['parameters']:,} | {r['samples_per_s']:,.0f} "
            f"| {r['real_time_factor']:.3f} |"
        )
    print(
        f"\nstudent / teacher speed-up: {rows[1]['samples_per_s'] / rows[0]['samples_per_s']:.0f}x "
        f"({args.threads} thread(s); widths {args.residual}/{args.gate}/{args.skip})"
    )


if __name__ == "__main__":
    main()
