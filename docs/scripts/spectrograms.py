"""Copy-synthesis spectrograms: one eval-lj clip, vocoded by every model the registry offers, next to the original.

Every model of ``zoo.list_models()`` that loads offline is used (a model whose weights are not on this
machine is listed as skipped), so newly registered models appear when the script is rerun. Each vocodes
the mel that its own front-end computes from the clip (cut to ``--seconds``: autoregressive WaveNet
sampling is slow on a CPU), with a fixed seed. The panels are log-magnitude STFTs (n_fft 1024, hop 256) on
one colour scale, with each model's MR-STFT distance to the original (``zoo.audio.metrics``, as QUALITY.md
defines it) in its title. Writes ``docs/figures/copy_synthesis.png`` and ``docs/data/copy_synthesis.json``.

    python docs/scripts/spectrograms.py [--clip ../shared/data/eval-lj/LJ001-0008.wav] [--seconds 1.5]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import parser, pyplot, save_figure, write_json  # noqa: E402

import zoo  # noqa: E402
from zoo.audio.metrics import log_mel_l1, mr_stft_distance  # noqa: E402
from zoo.cli.common import read_audio  # noqa: E402


def log_spectrogram(x: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x.float(), 1024, 256, window=torch.hann_window(1024), return_complex=True).abs()
    return 20 * torch.log10(spec + 1e-5)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "copy_synthesis", "copy_synthesis", clip="LJ001-0008")
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--models", nargs="*", help="default: every model of zoo.list_models()")
    args = p.parse_args(argv)
    wav, sr = read_audio(args.clip)
    original = torch.from_numpy(wav[: int(args.seconds * sr)])
    panels = [("original", original, None)]
    rows, skipped = [], {}
    for name in args.models or zoo.list_models():
        try:
            voc = zoo.load(name, offline=True)
        except Exception as exc:  # noqa: BLE001 - a model whose weights are not here is skipped, and said so
            skipped[name] = str(exc).splitlines()[0]
            print(f"skip {name}: {skipped[name]}", file=sys.stderr)
            continue
        mel = voc.mel(original, sample_rate=sr, resample=True)
        start = time.perf_counter()
        audio = voc.vocode(mel, generator=torch.Generator().manual_seed(0))[0].float()
        seconds = time.perf_counter() - start
        if voc.sample_rate != sr:
            import torchaudio.functional as AF

            audio = AF.resample(audio, voc.sample_rate, sr)
        n = min(audio.shape[-1], original.shape[-1])
        row = {"model": name, "mr_stft": mr_stft_distance(audio[:n], original[:n]),
               "log_mel_l1": log_mel_l1(audio[:n], original[:n]), "vocode_seconds": seconds}
        rows.append(row)
        panels.append((name, audio[:n], row))
        print(f"{name:<28} MR-STFT {row['mr_stft']:.3f}  log-mel L1 {row['log_mel_l1']:.3f}  {seconds:.1f} s")
    report = {"clip": args.clip.name, "seconds": original.shape[-1] / sr, "models": rows, "skipped": skipped}
    write_json(report, args.json)
    plot(panels, sr, args.figure)
    return 0


def plot(panels: list, sr: int, path: Path) -> None:
    plt = pyplot()

    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), squeeze=False, sharex=True, sharey=True)
    ref = log_spectrogram(panels[0][1])
    vmax = float(ref.max())
    for ax, (name, audio, row) in zip(axes.flat, panels, strict=False):
        spec = log_spectrogram(audio).numpy()
        extent = (0, audio.shape[-1] / sr, 0, sr / 2000)
        im = ax.imshow(spec, origin="lower", aspect="auto", extent=extent, vmin=vmax - 90, vmax=vmax, cmap="magma")
        title = name if row is None else f"{name}  (MR-STFT {row['mr_stft']:.2f})"
        ax.set_title(title, fontsize=9)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("kHz")
    for ax in axes[-1, :]:
        ax.set_xlabel("s")
    fig.colorbar(im, ax=axes, shrink=0.8, label="dB")
    save_figure(fig, path, dpi=100, tight=False)


if __name__ == "__main__":
    sys.exit(main())
