"""Which part of Parallel WaveNet is parallel? And how good is a Monte Carlo KL against the closed form?

Speed: the teacher (a ClariNet-layout Gaussian WaveNet) and the IAF student at the same widths, built and
timed by ``benchmarks/student_vs_teacher.py`` (its ``build_models`` and ``samples_per_second``), in both
directions: sampling (teacher: the incremental sampler, one sample after the other; student: one parallel
pass per flow) and density evaluation of a given waveform (teacher: one teacher-forced pass over real
audio, parallel in time; student: inverting an IAF needs one pass per sample, not implemented, so it is
not timed). KL: ``zoo.nn.distributions.kl_gaussians`` (ClariNet's closed form) against a Monte Carlo estimate
from samples of the student's Gaussian scored by ``zoo.nn.distributions.Gaussian.loss``, as a function of the
number of samples. Writes ``docs/data/parallel_wavenet.json`` and ``docs/figures/parallel_wavenet.png``.

    python docs/scripts/parallel_wavenet.py [--threads 1 [2 ...]] [--teacher-seconds 0.1] [--student-seconds 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import REPO, parser, pyplot, save_figure, write_json  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))

from student_vs_teacher import build_models, samples_per_second  # noqa: E402

from zoo.cli.common import read_audio  # noqa: E402
from zoo.nn.distributions import Gaussian, kl_gaussians  # noqa: E402


def density_rate(teacher, audio: torch.Tensor, repeats: int) -> float:
    """Samples per second of the teacher's log-likelihood of real audio (teacher forcing: one pass)."""
    mel = teacher.mel(audio)[None]
    n = mel.shape[-1] * teacher.hop_length
    x = torch.nn.functional.pad(audio, (0, max(0, n - audio.shape[-1])))[None, :n]
    best = math.inf
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            teacher.loss(x, mel)
            best = min(best, time.perf_counter() - start)
    return n / best


def kl_convergence(seed: int = 0) -> dict:
    """Closed-form vs Monte Carlo KL(q || p) between per-step Gaussians like a student's and a teacher's."""
    g = torch.Generator().manual_seed(seed)
    steps = 4096
    mu_q, logs_q = 0.1 * torch.randn(steps, generator=g), -3 + 0.5 * torch.randn(steps, generator=g)
    mu_p, logs_p = mu_q + 0.02 * torch.randn(steps, generator=g), logs_q + 0.3 * torch.randn(steps, generator=g)
    _, closed, _ = kl_gaussians(mu_q, logs_q, mu_p, logs_p, log_std_min=-30.0, reg_weight=0.0)
    q, p = Gaussian(log_std_min=-30.0), Gaussian(log_std_min=-30.0)
    rows = []
    for n in (1, 4, 16, 64, 256, 1024):
        estimates = []
        for _ in range(8):
            x = mu_q + torch.exp(logs_q) * torch.randn(n, steps, generator=g)
            yq = torch.stack([mu_q.expand(n, -1), logs_q.expand(n, -1)], 1)
            yp = torch.stack([mu_p.expand(n, -1), logs_p.expand(n, -1)], 1)
            # KL(q || p) = E_q[log q - log p] = E_q[NLL_p - NLL_q]
            estimates.append(float((p.loss(yp, x) - q.loss(yq, x)).mean()))
        mean = sum(estimates) / len(estimates)
        spread = (sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1)) ** 0.5
        rows.append({"samples_per_step": n, "mean_estimate": mean, "std_of_estimate": spread})
    return {"closed_form": float(closed), "steps": steps, "monte_carlo": rows}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "parallel_wavenet", "parallel_wavenet", clip="LJ001-0008")
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to time with")
    p.add_argument("--teacher-seconds", type=float, default=0.1)
    p.add_argument("--student-seconds", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    bench = argparse.Namespace(residual=64, gate=256, skip=64, teacher_layers=20, student_flows=6, student_layers=10)
    torch.manual_seed(0)
    teacher, student = build_models(bench)
    wav, _ = read_audio(args.clip)
    audio = torch.from_numpy(wav)
    speeds = {}
    for n in args.threads:
        torch.set_num_threads(n)
        with torch.inference_mode():
            teacher_sampling, _ = samples_per_second(teacher, args.teacher_seconds, args.repeats)
            student_sampling, _ = samples_per_second(student, args.student_seconds, args.repeats)
        speeds[str(n)] = {"teacher_sampling": teacher_sampling, "student_sampling": student_sampling,
                          "teacher_density": density_rate(teacher, audio, args.repeats),
                          "student_over_teacher_sampling": student_sampling / teacher_sampling}
    first, last = speeds[str(args.threads[0])], speeds[str(args.threads[-1])]
    report = {
        "threads": args.threads,
        "widths": {"residual": 64, "gate": 256, "skip": 64},
        "teacher": {"parameters": teacher.num_parameters(), "layers": 20, "receptive_field": teacher.receptive_field,
                    "sampling_samples_per_s": first["teacher_sampling"],
                    "density_samples_per_s": first["teacher_density"]},
        "student": {"parameters": student.num_parameters(), "flows": 6, "layers_per_flow": 10,
                    "receptive_field": student.receptive_field, "sampling_samples_per_s": first["student_sampling"]},
        "speeds_by_threads": speeds,
        "student_over_teacher_sampling": first["student_over_teacher_sampling"],
        "teacher_density_over_sampling": first["teacher_density"] / first["teacher_sampling"],
        "student_thread_scaling": last["student_sampling"] / first["student_sampling"],
        "teacher_sampling_thread_scaling": last["teacher_sampling"] / first["teacher_sampling"],
        "teacher_density_thread_scaling": last["teacher_density"] / first["teacher_density"],
        "sample_rate": teacher.sample_rate,
        "kl": kl_convergence(),
    }
    write_json(report, args.json)
    plot(report, args.figure)
    print(json.dumps({k: v for k, v in report.items() if k != "kl"}, indent=2))
    print(f"KL closed form {report['kl']['closed_form']:.5f}; MC:",
          [(r["samples_per_step"], round(r["mean_estimate"], 5), round(r["std_of_estimate"], 5))
           for r in report["kl"]["monte_carlo"]])
    return 0


def plot(report: dict, path: Path) -> None:
    plt = pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    bars = {
        "teacher: sampling\n(one sample at a time)": report["teacher"]["sampling_samples_per_s"],
        "teacher: density\n(teacher forcing)": report["teacher"]["density_samples_per_s"],
        "student: sampling\n(parallel IAF)": report["student"]["sampling_samples_per_s"],
    }
    ax1.barh(list(bars), list(bars.values()), color=["C3", "C0", "C2"])
    ax1.axvline(report["sample_rate"], color="0.5", lw=0.8, ls="--")
    ax1.text(report["sample_rate"] * 1.05, 2.3, "real time", fontsize=8, color="0.4")
    ax1.set_xscale("log")
    ax1.set_xlabel(f"samples per second ({report['threads'][0]} CPU thread)")
    ax1.tick_params(axis="y", labelsize=8)
    kl = report["kl"]
    n = [r["samples_per_step"] for r in kl["monte_carlo"]]
    ax2.errorbar(n, [r["mean_estimate"] for r in kl["monte_carlo"]],
                 yerr=[r["std_of_estimate"] for r in kl["monte_carlo"]], fmt="o-", capsize=3,
                 label="Monte Carlo (mean and spread of 8 estimates)")
    ax2.axhline(kl["closed_form"], color="C3", label="closed form (kl_gaussians)")
    ax2.set_xscale("log")
    ax2.set_xlabel("samples of x per time step")
    ax2.set_ylabel("KL(q || p), nats per step")
    ax2.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
