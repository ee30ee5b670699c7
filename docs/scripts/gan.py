"""What does a GAN vocoder learn that phase reconstruction from the mel alone cannot give?

HiFi-GAN (both official checkpoints) against Griffin-Lim, which recovers a phase for the magnitudes the mel
implies and nothing else, on short eval-lj clips: the MR-STFT distance and log-mel L1 of QUALITY.md
(``zoo.audio.metrics``), the same MR-STFT distance with both signals cut at 8 kHz (the mel's upper edge: no
feature the vocoder sees describes the band above), the log-magnitude error per frequency (n_fft 1024,
hop 256, averaged over frames and clips) and the share of energy above 8 kHz.
Writes ``docs/data/gan.json`` and ``docs/figures/gan_band_error.png``.

    python docs/scripts/gan.py [--clips LJ001-0002 LJ001-0008 LJ001-0013]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import REPO, parser, pyplot, save_figure, write_json  # noqa: E402

import zoo  # noqa: E402
from zoo.audio.metrics import log_mel_l1, mr_stft_distance  # noqa: E402
from zoo.cli.common import read_audio  # noqa: E402

MODELS = ("hifigan.ljspeech", "hifigan.universal", "griffinlim.hifigan")
N_FFT, HOP, SR = 1024, 256, 22050


def log_mag(x: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x.float(), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs()
    return torch.log(spec + 1e-5)


def band_energy_db(x: torch.Tensor, lo: float, hi: float) -> float:
    spec = torch.stft(x.float(), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2)
    f = torch.fft.rfftfreq(N_FFT, 1 / SR)
    band = spec[(f >= lo) & (f < hi)].sum()
    return float(10 * torch.log10(band / spec.sum()))


def below(x: torch.Tensor, hz: float = 8000.0) -> torch.Tensor:
    """``x`` with everything at and above ``hz`` removed (brick-wall, in the FFT of the whole signal)."""
    spec = torch.fft.rfft(x.double())
    spec[torch.fft.rfftfreq(x.shape[-1], 1 / SR) >= hz] = 0
    return torch.fft.irfft(spec, n=x.shape[-1]).float()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "gan", "gan_band_error", clip=None)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "eval-lj")
    p.add_argument("--clips", nargs="+", default=["LJ001-0002", "LJ001-0008", "LJ001-0013"])
    args = p.parse_args(argv)
    clips = []
    for c in args.clips:
        wav, sr = read_audio(args.data / f"{c}.wav")
        assert sr == SR, sr
        clips.append(torch.from_numpy(wav))
    freqs = torch.fft.rfftfreq(N_FFT, 1 / SR)
    results, curves = {}, {}
    orig_high = sum(band_energy_db(y, 8000, SR / 2) for y in clips) / len(clips)
    for name in MODELS:
        voc = zoo.load(name, offline=True)
        err_sum, frames, mr, mr_low, l1, high = torch.zeros(N_FFT // 2 + 1), 0, [], [], [], []
        for y in clips:
            x = voc(voc.mel(y)).float()
            n = min(x.shape[-1], y.shape[-1])
            x, ref = x[:n], y[:n]
            mr.append(mr_stft_distance(x, ref))
            mr_low.append(mr_stft_distance(below(x), below(ref)))
            l1.append(log_mel_l1(x, ref))
            high.append(band_energy_db(x, 8000, SR / 2))
            d = (log_mag(x) - log_mag(ref)).abs()
            err_sum += d.sum(-1)
            frames += d.shape[-1]
        curve = err_sum / frames
        curves[name] = curve
        bands = {f"{lo // 1000}-{hi // 1000}kHz": float(curve[(freqs >= lo) & (freqs < hi)].mean())
                 for lo, hi in ((0, 4000), (4000, 8000), (8000, 11025))}
        results[name.replace(".", "_")] = {"name": name, "mr_stft": sum(mr) / len(mr),
                                           "mr_stft_below_8khz": sum(mr_low) / len(mr_low),
                         "log_mel_l1": sum(l1) / len(l1),
                         "log_magnitude_error_by_band": bands,
                         "energy_above_8khz_db": sum(high) / len(high)}
        print(name, json.dumps(results[name.replace(".", "_")]))
    rows = [("MR-STFT distance (QUALITY.md)", "mr_stft", ".3f"),
            ("MR-STFT, both cut at 8 kHz", "mr_stft_below_8khz", ".3f"), ("log-mel L1", "log_mel_l1", ".3f")]
    table = ["| | " + " | ".join(f"`{r['name']}`" for r in results.values()) + " |",
             "|---|" + "---|" * len(results)]
    for label, key, fmt in rows:
        table.append(f"| {label} | " + " | ".join(format(r[key], fmt) for r in results.values()) + " |")
    for band in next(iter(results.values()))["log_magnitude_error_by_band"]:
        table.append(f"| log-magnitude error, {band} | "
                     + " | ".join(f"{r['log_magnitude_error_by_band'][band]:.2f}" for r in results.values()) + " |")
    table.append(f"| energy above 8 kHz (original: {orig_high:.1f} dB) | "
                 + " | ".join(f"{r['energy_above_8khz_db']:.1f} dB" for r in results.values()) + " |")
    report = {"clips": ", ".join(args.clips), "original_energy_above_8khz_db": orig_high, "models": results,
              "table": "\n".join(table)}
    write_json(report, args.json)
    plot(freqs, curves, args.figure)
    return 0


def plot(freqs: torch.Tensor, curves: dict[str, torch.Tensor], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, curve in curves.items():
        ax.plot(freqs / 1000, curve, lw=1.2, label=name)
    ax.axvline(8, color="0.6", lw=0.8, ls="--")
    ax.text(8.1, ax.get_ylim()[1] * 0.95, "mel upper edge", fontsize=8, color="0.4", va="top")
    ax.set_xlabel("frequency (kHz)")
    ax.set_ylabel("mean |log|X| - log|Y||")
    ax.set_title("Copy-synthesis: log-magnitude error per frequency (3 eval-lj clips)", fontsize=10)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
