"""Copy-synthesis quality of every model that loads, as defined in ../shared/QUALITY.md.

For each wav of a folder (default ``<repo>/../shared/data/eval-lj``): compute the model's own mel
features, vocode them, and compare with the recording (both cut to the shorter length): STOI, wideband
PESQ, DNSMOS (overall and P.808; of the output alone), multi-resolution STFT distance, log-mel L1, and
real-time factor (vocoding only, after one warm-up). Per clip and as means, with the versions of the metric
packages and the machine. STOI, PESQ and DNSMOS need the quality extra (``pip install -e ".[quality]"``);
``--no-perceptual`` leaves them out.

    python benchmarks/quality.py                          # every model
    python benchmarks/quality.py --models hifigan.universal,griffinlim --json quality.json
    python benchmarks/quality.py --json q.json --write-cards   # also rewrite the cards' quality blocks and
                                                              # the README table's numbers from this run
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eval-lj"
#: The means reported for each model (``zoo.audio.metrics.METRIC_COLUMNS`` plus DNSMOS's two other heads).
MEANS = ("stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "mr_stft", "log_mel_l1")


def evaluate(name: str, files: list[Path], *, device: str = "cpu", dtype: str = "float32", seed: int = 0,
             sampling: dict | None = None, perceptual: bool = True) -> dict:
    import zoo
    from zoo.audio.metrics import score
    from zoo.train.data import load_audio

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
        rows.append({"file": path.name, **score(audio, clip, voc.sample_rate, perceptual=perceptual)})
    return {
        "model": name,
        "files": len(rows),
        **{k: statistics.mean(r[k] for r in rows) for k in MEANS if k in rows[0]},
        "rtf": compute / (produced / voc.sample_rate),
        "device": str(voc.device),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "per_file": rows,
    }


def original_scores(files: list[Path], perceptual: bool) -> dict:
    """DNSMOS of the recordings themselves (the ceiling the vocoded clips are read against)."""
    from zoo.audio.metrics import dnsmos
    from zoo.train.data import read_mono

    if not perceptual:
        return {}
    rows = []
    for path in files:
        audio, sr = read_mono(path)
        rows.append({"file": path.name, **dnsmos(torch.from_numpy(audio), sr)})
    return {"model": "original recording", "files": len(rows),
            **{k: statistics.mean(r[k] for r in rows) for k in rows[0] if k != "file"}, "per_file": rows}


# ---------------------------------------------------------------------- writing the cards and the README
CARD_KEYS = ("stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808", "mr_stft", "log_mel_l1", "rtf")
DIGITS = {"stoi": 3, "pesq_wb": 2, "dnsmos_ovrl": 2, "dnsmos_p808": 2, "mr_stft": 3, "log_mel_l1": 3, "rtf": 3}
README_COLUMNS = ("STOI", "PESQ-wb", "DNSMOS ovrl", "DNSMOS P.808", "eval-lj MR-STFT", "log-mel L1", "RTF (CPU)")


def _yaml_str(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def quality_block(res: dict, measured: str) -> str:
    """The ``quality:`` front-matter block of a card for one result of :func:`evaluate` (an ``rtf_measured``
    entry says where an RTF kept from an earlier measurement comes from)."""
    lines = ["quality:", "  eval-lj:"]
    lines += [f"    {k}: {res[k]:.{DIGITS[k]}f}" for k in CARD_KEYS if k in res]
    lines.append(f"    measured: {_yaml_str(measured)}")
    if "rtf_measured" in res:
        lines.append(f"    rtf_measured: {_yaml_str(res['rtf_measured'])}")
    return "\n".join(lines) + "\n"


def rewrite_card(text: str, block: str) -> str:
    """``text`` (a card) with its ``quality:`` block (up to the next top-level key) replaced by ``block``."""
    pattern = re.compile(r"^quality:\n(?:(?:[ \t].*)?\n)*?(?=^[A-Za-z_][\w-]*:|^---)", re.M)
    if not pattern.search(text):
        raise ValueError("card has no quality: block followed by another key")
    return pattern.sub(lambda _: block, text, count=1)


def rewrite_readme_table(text: str, results: dict[str, dict]) -> str:
    """The README's model table with its number columns (:data:`README_COLUMNS`, between ``weights`` and
    ``license``) rewritten from ``results``; rows of models not measured keep their cells (blank where new)."""
    lines = text.split("\n")
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| model |") and "license" in ln)
    cols = [c.strip() for c in lines[head].strip("|").split("|")]
    first, last = cols.index("weights") + 1, cols.index("license")
    old = cols[first:last]
    lines[head] = "| " + " | ".join(cols[:first] + list(README_COLUMNS) + cols[last:]) + " |"
    lines[head + 1] = "|" + "---|" * (len(cols) - len(old) + len(README_COLUMNS))
    i = head + 2
    while i < len(lines) and lines[i].startswith("|"):
        cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        name = re.search(r"`([^`]+)`", cells[0])
        res = results.get(name.group(1)) if name else None
        if res is not None:
            nums = [f"{res[k]:.{DIGITS[k]}f}" if k in res else "" for k in CARD_KEYS]
        else:
            kept = dict(zip(old, cells[first:last], strict=False))
            nums = [kept.get(c, "") for c in README_COLUMNS]
        lines[i] = "| " + " | ".join(cells[:first] + nums + cells[last:]) + " |"
        i += 1
    return "\n".join(lines)


def write_cards(results: list[dict], measured: str, cards_dir: Path, readme: Path, *,
                keep_rtf: bool = False) -> list[Path]:
    """Rewrite the quality block of every card in ``cards_dir`` that was measured, and the README table.
    ``keep_rtf``: each card keeps its RTF and says where it was measured (``rtf_measured``), for a run on a
    machine too loaded to time anything."""
    import zoo

    by_name = {r["model"]: dict(r) for r in results}
    written = []
    for name, res in by_name.items():
        path = cards_dir / f"{name}.md"
        if not path.is_file() or zoo.card(name).name != name:
            continue
        if keep_rtf:
            old = zoo.card(name).quality.get("eval-lj", {})
            if "rtf" in old:
                res["rtf"] = float(old["rtf"])
                res["rtf_measured"] = str(old.get("rtf_measured", old.get("measured", "earlier")))
            else:
                res.pop("rtf", None)
        path.write_text(rewrite_card(path.read_text(), quality_block(res, measured)))
        written.append(path)
    readme.write_text(rewrite_readme_table(readme.read_text(), by_name))
    return written


def main(argv: list[str] | None = None) -> int:
    import zoo
    from zoo.audio.metrics import MissingExtraError, metric_versions, quality_available
    from zoo.runtime.bench import machine_info

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", help="comma-separated model names (default: every model that loads)")
    p.add_argument("--limit", type=int, help="use only the first N files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--no-perceptual", action="store_true", help="leave out STOI, PESQ and DNSMOS")
    p.add_argument("--write-cards", action="store_true",
                   help="rewrite the quality blocks of the measured cards in model_cards/ and the README table")
    p.add_argument("--from-json", type=Path, metavar="PATH",
                   help="with --write-cards: take the results of an earlier run's --json file instead of measuring")
    p.add_argument("--keep-rtf", action="store_true",
                   help="with --write-cards: keep each card's RTF (and say where it was measured), e.g. when this "
                        "machine is shared with other jobs")
    args = p.parse_args(argv)
    if args.from_json:
        if not args.write_cards:
            p.error("--from-json only makes sense with --write-cards")
        run = json.loads(args.from_json.read_text())
        measured = measured_text(run["command"], run["date"][:10], len(run["results"][0]["per_file"]),
                                 Path(run["data"]).name, run["results"][0]["device"], run["results"][0]["dtype"],
                                 run["results"][0]["threads"], run["machine"], run["versions"])
        measured += f"; cards written by python benchmarks/quality.py {shlex.join(argv or sys.argv[1:])}"
        for path in write_cards(run["results"], measured, REPO / "model_cards", REPO / "README.md",
                                keep_rtf=args.keep_rtf):
            print(f"rewrote {path.relative_to(REPO)}")
        return 0
    perceptual = not args.no_perceptual
    if perceptual and not quality_available():
        print('STOI, PESQ and DNSMOS need the quality extra: pip install -e ".[quality]" (or pass --no-perceptual)',
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    files = sorted(args.data.glob("*.wav"))[: args.limit]
    if not files:
        print(f"no wav files in {args.data}", file=sys.stderr)
        return 2
    names = args.models.split(",") if args.models else zoo.list_models()
    started = datetime.datetime.now(datetime.timezone.utc)
    results = []
    cols = ("stoi", "pesq_wb", "dnsmos_ovrl", "dnsmos_p808", "mr_stft", "log_mel_l1", "rtf")
    print(f"{'model':<28}" + "".join(f"{c:>12}" for c in cols) + f"   ({len(files)} files, {args.device}, "
          f"{args.dtype}, {torch.get_num_threads()} threads)", flush=True)

    def show(res: dict) -> None:
        print(f"{res['model']:<28}" + "".join(f"{res[c]:>12.3f}" if c in res else f"{'':>12}" for c in cols),
              flush=True)

    original = original_scores(files, perceptual)
    if original:
        show(original)
    for name in names:
        try:
            res = evaluate(name, files, device=args.device, dtype=args.dtype, perceptual=perceptual)
        except MissingExtraError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except Exception as exc:  # noqa: BLE001 - a model that does not load is reported, not fatal
            print(f"{name:<28} skipped: {type(exc).__name__}: {exc}", flush=True)
            continue
        results.append(res)
        show(res)
    machine = machine_info()
    versions = metric_versions()
    command = "python benchmarks/quality.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps({
            "data": str(args.data), "command": command.strip(), "date": started.isoformat(timespec="seconds"),
            "machine": machine, "versions": versions, "original": original, "results": results}, indent=2))
    if args.write_cards:
        measured = measured_text(command.strip(), f"{started:%Y-%m-%d}", len(files), args.data.name, args.device,
                                 args.dtype, torch.get_num_threads(), machine, versions)
        for path in write_cards(results, measured, REPO / "model_cards", REPO / "README.md", keep_rtf=args.keep_rtf):
            print(f"rewrote {path.relative_to(REPO)}")
    return 0


def measured_text(command: str, date: str, n_files: int, data: str, device: str, dtype: str, threads: int,
                  machine: dict, versions: dict) -> str:
    """The ``measured`` line of a card: the command, date, clips, device, threads, CPU and package versions."""
    return (f"{command} ({date}): {n_files} clips of {data}, {device} {dtype}, {threads} "
            f"thread{'s' if threads > 1 else ''}, {machine.get('cpu', machine.get('processor'))}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()))


if __name__ == "__main__":
    sys.exit(main())
