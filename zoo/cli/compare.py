"""``zoo compare``: copy-synthesise clips with several models and write a static listening report.

    zoo compare hifigan.ljspeech hifigan.universal griffinlim --data CLIPS -o REPORT [--max-seconds 4]
    zoo compare hifigan.universal --mels TTS_MELS -o REPORT

The report folder holds ``index.html`` (players, spectrograms on one colour scale, sortable metric tables,
a summary with means, RTF, parameter count, mel config fingerprint and the machine), ``metrics.csv`` (the
same numbers) and the wav and png files, linked relatively. A model that cannot run gets a row saying why;
the rest of the report is still written. STOI, PESQ and DNSMOS need the ``quality`` extra.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import zoo
from zoo.audio import report
from zoo.audio.metrics import MissingExtraError, metric_versions, quality_available, resample, score
from zoo.cli.common import AUDIO_EXT, MEL_EXT, CliError, progress, read_mel, subcommand
from zoo.core.files import write_wav_atomic
from zoo.hub.sources import one_line
from zoo.runtime.bench import machine_info
from zoo.train.data import read_mono


@subcommand
def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="vocode clips with several models into a listening report (index.html)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model names, architectures or folders (default: hifigan)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", metavar="DIR_OR_FILES", help="wav files or folders of them (copy-synthesis)")
    src.add_argument("--mels", metavar="DIR", help="folder (or file) of mels [n_mels, frames] (.npy/.pt), e.g. from "
                     "a TTS model: no reference audio, so only DNSMOS and RTF")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="report folder (created)")
    p.add_argument("--max-seconds", type=float, metavar="N", help="cut every clip to its first N seconds")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seed", type=int, default=0, help="seed of the stochastic models' noise")
    p.add_argument("--offline", action="store_true", help="never download weights (HF_HUB_OFFLINE)")
    p.add_argument("--no-perceptual", action="store_true",
                   help="leave out STOI, PESQ and DNSMOS (they need the quality extra)")
    p.add_argument("--title", default="vocoder-zoo listening report")
    p.set_defaults(func=_cmd_compare)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _inputs(items: Sequence[str], suffixes: set[str], what: str) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in suffixes)
            if not found:
                raise CliError(f"{p}: folder holds no {what} files ({', '.join(sorted(suffixes))})")
            paths.extend(found)
        elif not p.is_file():
            raise CliError(f"{p}: no such file or folder")
        elif p.suffix.lower() not in suffixes:
            raise CliError(f"{p}: unsupported input type {p.suffix!r}; expected {what} ({', '.join(sorted(suffixes))})")
        else:
            paths.append(p)
    return paths


def _cmd_compare(args: argparse.Namespace) -> int:
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise CliError(f"--max-seconds must be > 0, got {args.max_seconds}")
    perceptual = not args.no_perceptual
    if perceptual and not quality_available():
        raise CliError('STOI, PESQ and DNSMOS need the quality extra: pip install "vocoder-zoo[quality]" '
                       "(or pass --no-perceptual)")
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    names = list(args.models) or ["hifigan"]  # as zoo vocode: the hifigan architecture's default model
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise CliError(f"-o {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)

    # Inputs: (clip id, reference audio or None, its rate, mel or None)
    clips: list[tuple[str, np.ndarray | None, int | None, Any]] = []
    if args.data:
        for path in _inputs(args.data, AUDIO_EXT, "audio"):
            try:
                audio, sr = read_mono(path)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            if args.max_seconds:
                audio = audio[: int(round(args.max_seconds * sr))]
            clips.append((path.stem, audio, sr, None))
    else:
        for path in _inputs([args.mels], MEL_EXT, "mel"):
            clips.append((path.stem, None, None, read_mel(path)))
    ids = [c[0] for c in clips]
    if len(set(ids)) != len(ids):  # same stem in two folders
        clips = [(f"{i:02d}_{c[0]}", *c[1:]) for i, c in enumerate(clips)]

    cells: list[report.Cell] = []
    summaries: list[report.ModelSummary] = []
    clip_names = [c[0] for c in clips]
    for name, audio, sr, _ in clips:
        if audio is None:
            continue
        cell = report.Cell(clip=name, model="original", duration=len(audio) / sr)
        cell.audio = f"audio/{_slug(name)}/original.wav"
        cell.image = f"img/{_slug(name)}/original.png"
        write_wav_atomic(out / cell.audio, audio, sr)
        report.spectrogram_image(audio, sr, out / cell.image)
        if perceptual:
            cell.metrics = score(torch.from_numpy(audio), None, sr)
        cells.append(cell)

    bar = progress(None, total=len(clips) * len(names), desc="compare", unit="clip")
    try:
        for index, model_name in enumerate(names):
            summary = report.ModelSummary(model=model_name)
            summaries.append(summary)
            try:
                voc = zoo.load(model_name, device=args.device, dtype=args.dtype)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a model that cannot load gets a row saying why
                summary.error = f"cannot load: {one_line(exc)}"
                cells += [report.Cell(clip=c[0], model=model_name, error=summary.error) for c in clips]
                bar.update(len(clips))
                continue
            summary.sample_rate = voc.sample_rate
            summary.parameters = sum(p.numel() for p in voc.parameters())
            summary.mel_fingerprint = voc.mel_config.fingerprint()
            resampled = sorted({sr for _, a, sr, _ in clips if a is not None and sr != voc.sample_rate})
            if resampled:
                summary.note = f"clips at {', '.join(map(str, resampled))} Hz resampled to {voc.sample_rate} Hz"
            warm = False
            for clip_name, audio, sr, mel in clips:
                cell = report.Cell(clip=clip_name, model=model_name)
                cells.append(cell)
                try:
                    cell_audio = _vocode_one(voc, audio, sr, mel, args.seed, warm, cell)
                    warm = True
                    ref = None
                    if audio is not None:
                        ref = torch.from_numpy(audio)
                        if sr != voc.sample_rate:
                            ref = resample(ref, sr, voc.sample_rate)
                    cell.metrics = score(cell_audio, ref, voc.sample_rate, perceptual=perceptual)
                    base = f"{_slug(clip_name)}/{index:02d}_{_slug(model_name)}"  # unique even if two names slug alike
                    cell.audio, cell.image = f"audio/{base}.wav", f"img/{base}.png"
                    samples = cell_audio.numpy()
                    write_wav_atomic(out / cell.audio, samples, voc.sample_rate)
                    report.spectrogram_image(samples, voc.sample_rate, out / cell.image)
                except MissingExtraError as exc:
                    raise CliError(str(exc)) from None
                except Exception as exc:  # noqa: BLE001 - one clip that fails gets a row saying why
                    cell.error, cell.audio, cell.image = one_line(exc), None, None
                bar.update(1)
            del voc
    finally:
        bar.close()

    machine = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "device": args.device, "dtype": args.dtype}
    machine.update({k: v for k, v in machine_info().items() if not isinstance(v, (list, dict))})
    machine["simd"] = " ".join(machine_info().get("simd", []))
    machine.update({f"version {k}": v for k, v in metric_versions().items()})
    notes = ["Copy-synthesis: each model vocodes the mel features it computes from the recording; metrics compare "
             "its output with the recording (both cut to the shorter length)." if args.data else
             "Mels given as input: no reference audio, so only DNSMOS and RTF."]
    if args.max_seconds:
        notes.append(f"Clips cut to their first {args.max_seconds:g} s.")
    report.colorbar_image(out / "colorbar.png")
    report.write_csv(out / "metrics.csv", cells)
    report.write_html(out / "index.html", title=args.title, clips=clip_names, cells=cells, models=summaries,
                      machine=machine, notes=notes)
    failed = sorted({c.model for c in cells if c.error})
    print(f"wrote {out / 'index.html'} ({len(clip_names)} clips x {len(names)} models"
          + (f"; failed: {', '.join(failed)}" if failed else "") + ")")
    return 0


def _vocode_one(voc: Any, audio: np.ndarray | None, sr: int | None, mel: Any, seed: int, warm: bool,
                cell: Any) -> Any:
    """Vocode one clip (its mel computed by the model when it is audio); times the vocoding alone, after one
    short warm-up per model; returns the float32 CPU samples and fills ``cell``'s timing and duration."""
    if audio is not None:
        x = torch.from_numpy(audio)
        if sr != voc.sample_rate:
            x = resample(x, sr, voc.sample_rate)
        mel = voc.mel(x.to(voc.device))
    gen = torch.Generator(device=voc.device).manual_seed(seed)
    if not warm:
        voc.vocode(mel[..., : min(20, mel.shape[-1])], generator=gen)
    t0 = time.perf_counter()
    out = voc.vocode(mel, generator=gen)[0]
    if voc.device.type == "cuda":
        torch.cuda.synchronize()
    cell.seconds = time.perf_counter() - t0
    samples = out.float().cpu()
    cell.duration = samples.numel() / voc.sample_rate
    return samples
