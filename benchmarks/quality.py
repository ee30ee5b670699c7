"""Copy-synthesis quality of every model that loads, as defined in ../shared/QUALITY.md.

For each wav of a folder (default ``<repo>/../shared/data/eval-lj``): compute the model's own mel
features, vocode them, and compare with the recording (both cut to the shorter length): log-mel L1,
multi-resolution STFT distance, and real-time factor (vocoding only, after one warm-up).

    python benchmarks/quality.py                          # every model
    python benchmarks/quality.py --models hifigan.universal,griffinlim --json quality.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eval-lj"


def evaluate(name: str, files: list[Path], *, device: str = "cpu", dtype: str = "float32", seed: int = 0,
             sampling: dict | None = None) -> dict:
    import zoo
    from zoo.data import load_audio
    from zoo.metrics import log_mel_l1, mr_stft_distance

    voc = zoo.load(name, device=device, dtype=dtype)
    sampling = sampling or {}
    clips = [load_audio(f, voc.sample_rate) for f in files]
    mels = [voc.mel(c) for c in clips]
    gen = torch.Generator(device=voc.device).manual_seed(seed)
    voc.vocode(mels[0][:, : min(20, mels[0].shape[-1])], generator=gen, **sampling)  # warm-up
    rows, compute, produced = [], 0.0, 0
    for path, clip, mel in zip(files, clips, mels, strict=True):
        t0 = time.perf_counter()
        audio = voc.vocode(mel, generator=gen, **sampling)[0]
        if voc.device.type == "cuda":
            torch.cuda.synchronize()
        compute += time.perf_counter() - t0
        produced += audio.numel()
        audio = audio.float().cpu()
        rows.append({"file": path.name, "mr_stft": mr_stft_distance(audio, clip),
                     "log_mel_l1": log_mel_l1(audio, clip)})
    return {
        "model": name,
        "files": len(rows),
        "mr_stft": statistics.mean(r["mr_stft"] for r in rows),
        "log_mel_l1": statistics.mean(r["log_mel_l1"] for r in rows),
        "rtf": compute / (produced / voc.sample_rate),
        "device": str(voc.device),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "per_file": rows,
    }


def main(argv: list[str] | None = None) -> int:
    import zoo

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", help="comma-separated model names (default: every model that loads)")
    p.add_argument("--limit", type=int, help="use only the first N files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(args.data.glob("*.wav"))[: args.limit]
    if not files:
        print(f"no wav files in {args.data}", file=sys.stderr)
        return 2
    names = args.models.split(",") if args.models else zoo.list_models()
    results = []
    print(f"{'model':<28}{'MR-STFT':>9}{'log-mel L1':>12}{'RTF':>9}   ({len(files)} files, "
          f"{args.device}, {args.dtype}, {torch.get_num_threads()} threads)")
    for name in names:
        try:
            res = evaluate(name, files, device=args.device, dtype=args.dtype)
        except Exception as exc:  # noqa: BLE001 - a model that does not load is reported, not fatal
            print(f"{name:<28} skipped: {type(exc).__name__}: {exc}")
            continue
        results.append(res)
        print(f"{name:<28}{res['mr_stft']:>9.3f}{res['log_mel_l1']:>12.3f}{res['rtf']:>9.3f}")
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
