"""Can the likelihoods of a discrete WaveNet and of a continuous flow be compared, and why is a flow's NLL negative?

A WaveNet with a discretised mixture of logistics assigns a probability to each of 65,536 levels in
[-1, 1]; a flow (WaveGlow, FloWaveNet) assigns a density to real numbers. On real audio (an eval-lj clip),
with one logistic per sample and a swept scale ``s``, centred either on the previous sample (a crude but
honest predictor) or on the sample itself (an oracle, a model as sharp as it can be), this script evaluates
both with the project's code: the discrete NLL of ``zoo.nn.distributions.DiscretizedMixLogistic.loss`` and the
continuous NLL of the same logistic's density. While the bin width 2 / 65,535 is small against ``s``, the
two differ by the log of the number of bins per unit of amplitude, ``ln(65535 / 2)``; when ``s`` shrinks
below a bin, the oracle's discrete NLL stops at 0 while its continuous one keeps falling, without bound. Writes
``docs/data/likelihood.json`` and ``docs/figures/likelihood_discrete_vs_continuous.png``.

    python docs/scripts/likelihood.py [--clip ../shared/data/eval-lj/LJ001-0008.wav]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import REPO, parser, pyplot, save_figure, write_json  # noqa: E402

from zoo.cli.common import read_audio  # noqa: E402
from zoo.nn.distributions import DiscretizedMixLogistic  # noqa: E402

CLASSES = 65536


def continuous_nll(x: torch.Tensor, mean: torch.Tensor, log_scale: float) -> torch.Tensor:
    """``-log`` of the logistic density ``p(x) = e^-u / (s (1 + e^-u)^2)``, ``u = (x - mean) / s``."""
    u = (x - mean) * math.exp(-log_scale)
    return log_scale + u + 2.0 * F.softplus(-u)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "likelihood", "likelihood_discrete_vs_continuous", clip="LJ001-0008")
    args = p.parse_args(argv)
    audio, _ = read_audio(args.clip)
    x = torch.from_numpy(audio).double().clamp(-1, 1)
    # Quantise to the 16-bit grid the discrete model describes, then predict x_t from x_{t-1}.
    grid = torch.round((x + 1) / 2 * (CLASSES - 1)) / (CLASSES - 1) * 2 - 1
    target = grid[1:]
    predictors = {"previous": grid[:-1], "oracle": target}
    dist = DiscretizedMixLogistic(num_mixtures=1, num_classes=CLASSES, log_scale_min=-30.0)
    log_scales = torch.linspace(-14, -1, 53).tolist()
    rows = []
    for ls in log_scales:
        row = {"log_scale": ls, "scale": math.exp(ls)}
        for name, mean in predictors.items():
            y_hat = torch.stack([torch.zeros_like(mean), mean, torch.full_like(mean, ls)])[None]  # [1, 3, T]
            row[f"{name}_discrete_nll"] = float(dist.loss(y_hat, target[None]).mean())
            row[f"{name}_continuous_nll"] = float(continuous_nll(target, mean, ls).mean())
        rows.append(row)
    offset = math.log((CLASSES - 1) / 2)
    best = min(rows, key=lambda r: r["previous_discrete_nll"])
    wide = [r for r in rows if r["scale"] > 20 * 2 / (CLASSES - 1)]
    gap = max(abs(r[f"{k}_discrete_nll"] - r[f"{k}_continuous_nll"] - offset) for r in wide for k in predictors)
    sharp = rows[0]
    fwvwg = json.loads((REPO / "docs" / "data" / "flowavenet_vs_waveglow.json").read_text())
    flow_nll = fwvwg["flowavenet"]["val_nll_nats_per_sample"]
    report = {
        "clip": args.clip.name, "samples": int(target.numel()), "classes": CLASSES,
        "log_bins_per_unit": offset,
        "max_gap_when_scale_exceeds_20_bins": gap,
        "best_previous": best,
        "best_previous_discrete_bits": best["previous_discrete_nll"] / math.log(2),
        "sharpest_oracle": sharp,
        "flowavenet_short_run_nll": flow_nll,
        "flowavenet_as_discrete_nats": flow_nll + offset,
        "flowavenet_as_discrete_bits": (flow_nll + offset) / math.log(2),
        "sweep": rows,
    }
    write_json(report, args.json)
    plot(rows, offset, args.figure)
    print(f"ln((K-1)/2) = {offset:.4f}; largest |discrete - continuous - offset| where s > 20 bins: {gap:.2e}")
    print(f"previous-sample predictor, best scale exp({best['log_scale']:.2f}): discrete "
          f"{best['previous_discrete_nll']:.3f} nats, continuous {best['previous_continuous_nll']:.3f} nats")
    print(f"oracle at s = exp({sharp['log_scale']:.0f}): discrete {sharp['oracle_discrete_nll']:.4f}, "
          f"continuous {sharp['oracle_continuous_nll']:.2f} nats")
    return 0


def plot(rows: list[dict], offset: float, path: Path) -> None:
    plt = pyplot()

    s = [r["scale"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for name, color in (("previous", "C0"), ("oracle", "C3")):
        ax.semilogx(s, [r[f"{name}_discrete_nll"] for r in rows], color=color, lw=2.2,
                    label=f"{name}: discrete NLL (DiscretizedMixLogistic.loss)")
        ax.semilogx(s, [r[f"{name}_continuous_nll"] for r in rows], color=color, lw=1, alpha=0.6,
                    label=f"{name}: continuous NLL (logistic density)")
        ax.semilogx(s, [r[f"{name}_continuous_nll"] + offset for r in rows], "--", color=color, lw=1,
                    label=f"{name}: continuous NLL + ln(65535 / 2)")
    ax.set_ylim(-16, 24)
    ax.axvline(2 / (CLASSES - 1), color="0.6", lw=0.8)
    ax.text(2 / (CLASSES - 1) * 1.1, 21, "one bin", fontsize=8, color="0.4")
    ax.axhline(0, color="0.8", lw=0.6)
    ax.set_xlabel("scale s of the logistic (previous: centred on x_{t-1}; oracle: centred on x_t)")
    ax.set_ylabel("nats per sample (LJ001-0008)")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
