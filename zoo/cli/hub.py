"""Hub and registry commands: ``zoo lock``, ``zoo pull``, ``zoo cache``, ``zoo push``, ``zoo check-mel``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import huggingface_hub

import zoo
from zoo.api import hub_source, looks_like_path
from zoo.audio.adapt import check_mel
from zoo.cli.common import CliError, subcommand
from zoo.core.mel import MelConfig
from zoo.core.vocoder import CARD_NAME, WEIGHTS_NAME
from zoo.hub.lock import active_lock, card_entry, folder_entry, hub_entry, make_lock
from zoo.hub.sources import cache_dir, fetch_hf_repo, parse_hf_name, read_folder, sha256_file
from zoo.registry.cards import parse_card
from zoo.registry.plugins import get_registry


@subcommand
def _add_lock(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lock", help="print a lock file pinning the exact sources and sha256 of models")
    p.add_argument("names", nargs="+",
                   help="model names, NAME@<sha> (a card's Hub repo at another commit), hf://owner/repo@<sha> "
                        "or save_pretrained folders")
    p.add_argument("-o", "--output", help="write here instead of standard output")
    p.set_defaults(func=_cmd_lock)


def _cmd_lock(args: argparse.Namespace) -> int:
    def pinned(repo: str, revision: str) -> dict:
        _, weights, arch = fetch_hf_repo(repo, revision)
        return hub_entry(arch, repo, revision, sha256_file(weights))

    entries = {}
    for name in args.names:
        if name.startswith("hf://"):
            entries[name] = pinned(*parse_hf_name(name))
        elif looks_like_path(name):
            arch, config, weights = read_folder(Path(name))
            entries[name] = folder_entry(arch, config, sha256_file(weights))
        elif "@" in name:
            base, _, rev = name.partition("@")
            card = get_registry().card(base)
            repo, revision = parse_hf_name(f"hf://{hub_source(card).repo}@{rev}")
            entries[f"{card.name}@{revision}"] = pinned(repo, revision)
        else:
            card = get_registry().card(name)
            entries[card.name] = card_entry(card)
    text = json.dumps(make_lock(entries), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


@subcommand
def _add_pull(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="fetch (and convert) models into the caches, for offline machines")
    p.add_argument("names", nargs="*", help="model names (default: every model of --lock)")
    p.add_argument("--lock", help="a lock file (default: $ZOO_LOCK)")
    p.set_defaults(func=_cmd_pull)


def _cmd_pull(args: argparse.Namespace) -> int:
    lock = active_lock(args.lock)
    # A locked folder is already local: nothing to pull.
    names = list(args.names) or (sorted(n for n, e in lock["models"].items() if e.get("kind") != "folder")
                                 if lock else [])
    if not names:
        raise CliError("name models to pull, or give --lock (with models other than local folders)")
    for name in names:
        voc = zoo.load(name, lock=args.lock)
        print(f"{name}: ready ({voc.architecture}, {voc.num_parameters():,} parameters)")
    return 0


@subcommand
def _add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="inspect or clean the zoo cache (converted and downloaded weights)")
    p.add_argument("action", choices=["ls", "rm", "verify"])
    p.add_argument("names", nargs="*", help="for rm: entries to remove (default with --all: everything)")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=_cmd_cache)


def _entries() -> list[Path]:
    root = cache_dir()
    out = []
    for sub in ("converted", "downloads"):
        folder = root / sub
        if folder.is_dir():
            out.extend(sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")))
    return out


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cmd_cache(args: argparse.Namespace) -> int:
    entries = _entries()
    if args.action == "ls":
        print(f"zoo cache: {cache_dir()}")
        for e in entries:
            print(f"  {e.parent.name}/{e.name}  {_size(e) / 2**20:.1f} MiB")
        return 0
    if args.action == "rm":
        if not args.names and not args.all:
            raise CliError("name entries to remove (see `zoo cache ls`) or pass --all")
        chosen = entries if args.all else [e for e in entries if e.name in args.names]
        missing = set(args.names) - {e.name for e in chosen}
        if missing:
            raise CliError(f"no cache entries named {sorted(missing)}")
        for e in chosen:
            shutil.rmtree(e)
            print(f"removed {e}")
        return 0
    bad = 0
    for e in entries:
        stamp = e / "conversion.json"
        if stamp.is_file():
            info = json.loads(stamp.read_text())
            ok = sha256_file(e / "model.safetensors") == info.get("weights_sha256")
        else:  # downloads/<sha256>/<file>
            files = [f for f in e.iterdir() if f.is_file()]
            ok = bool(files) and all(sha256_file(f) == e.name for f in files)
        bad += not ok
        print(f"  {'ok ' if ok else 'BAD'} {e.parent.name}/{e.name}")
    if bad:
        raise CliError(f"{bad} cache entr{'y' if bad == 1 else 'ies'} failed verification; remove with `zoo cache rm`")
    return 0


@subcommand
def _add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a save_pretrained folder to a Hub repo and print the commit to pin")
    p.add_argument("folder")
    p.add_argument("repo", help="owner/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--message", default="Upload vocoder-zoo model")
    p.set_defaults(func=_cmd_push)


PUSHED_FILES = ("config.json", "model.safetensors", "README.md")
"""What ``zoo push`` uploads from a folder (``save_pretrained``'s files); anything else there stays local."""


def _check_push_folder(folder: Path) -> list[str]:
    """Refuse a folder that would make a broken Hub model; the problems found, each one line."""
    for needed in PUSHED_FILES:
        if not (folder / needed).is_file():
            raise CliError(f"{folder} lacks {needed}; write it with voc.save_pretrained(dir, card=...)")
    card = parse_card((folder / CARD_NAME).read_text(encoding="utf-8"), origin=str(folder / CARD_NAME))
    voc = zoo.load(folder)
    problems = []
    if card.architecture != voc.architecture:
        problems.append(f"the card says architecture {card.architecture!r}, the weights are {voc.architecture!r}")
    mel_diff = card.mel.diff(voc.mel_config)
    if mel_diff:
        fields = ", ".join(f"{k} {mine!r} vs {theirs!r}" for k, (mine, theirs) in mel_diff.items())
        problems.append(f"the card's mel config differs from the model's (card vs model: {fields})")
    if not problems and card.config:  # an empty card config states nothing to compare
        try:
            card_config = type(voc.config).from_dict(card.model_config()).replace(mel=voc.config.mel)
        except (ValueError, TypeError) as exc:
            problems.append(f"the card's config is not a valid {voc.architecture} config: {exc}")
        else:
            if card_config != voc.config:
                theirs = voc.config.to_dict()
                fields = sorted(k for k, v in card_config.to_dict().items() if theirs.get(k) != v)
                problems.append(f"the card's config differs from config.json in {', '.join(fields)}")
    digest = sha256_file(folder / WEIGHTS_NAME)
    for src in card.sources:
        if src.kind == "hf" and src.filename == WEIGHTS_NAME and src.sha256 != digest:
            problems.append(f"the card's source {src.describe()} has sha256 {src.sha256[:12]}..., "
                            f"but {WEIGHTS_NAME} here is {digest[:12]}...")
    return problems


def _cmd_push(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    problems = _check_push_folder(folder)
    if problems:
        raise CliError(f"not pushing {folder}: " + "; ".join(problems))
    extra = sorted(p.name for p in folder.iterdir() if p.name not in PUSHED_FILES)
    if extra:
        print(f"not uploading {len(extra)} other entr{'y' if len(extra) == 1 else 'ies'} of {folder}: "
              f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}", file=sys.stderr)
    api = huggingface_hub.HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    api.create_repo(args.repo, private=args.private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=args.repo, commit_message=args.message,
                             allow_patterns=list(PUSHED_FILES))
    sha = getattr(info, "oid", None)
    if not sha:
        raise CliError(f"the Hub did not report the commit of the upload to {args.repo}: {info}")
    print(f"hf://{args.repo}@{sha}")
    return 0


@subcommand
def _add_check_mel(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-mel", help="compare a model's mel contract with your features' (exit 1 if different)")
    p.add_argument("model")
    p.add_argument("--mel-config", required=True, help="a preset name or a JSON file with a MelConfig")
    p.set_defaults(func=_cmd_check_mel)


def _cmd_check_mel(args: argparse.Namespace) -> int:
    src = args.mel_config
    other = MelConfig.from_dict(json.loads(Path(src).read_text())) if Path(src).is_file() else MelConfig.preset(src)
    card = zoo.card(args.model) if not Path(args.model).is_dir() else None
    mine = card.mel if card is not None else zoo.load(args.model).mel_config
    report = check_mel(mine, other)
    print(report)
    if report.differences:
        print("adaptable with zoo.adapt" if report.adaptable else "NOT adaptable: see the fields marked above")
        return 1
    return 0
