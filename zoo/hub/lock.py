"""Lock files: the exact sources, revisions and sha256 of the models a project depends on.

``zoo lock NAME... > zoo.lock`` writes one; ``zoo.load(name, lock="zoo.lock")`` or ``ZOO_LOCK=zoo.lock``
enforce it: a model whose card no longer matches the lock (another source, revision, checksum or config)
is refused with the differences listed, and a model missing from the lock is refused too. That covers
every kind of name ``zoo.load`` takes: a card (``hifigan.universal``), a card at another Hub revision
(``name@<sha>``, locked with the sha256 of the weights at that revision), a whole Hub repo
(``hf://owner/repo@<sha>``) and a local ``save_pretrained`` folder (locked by the sha256 of its weights
and config, wherever the folder is later). JSON format::

    {"format": "vocoder-zoo-lock", "version": 1,
     "models": {"hifigan.universal": {"architecture": "hifigan", "config_sha256": "...",
                                      "sources": [{"kind": "package", ..., "sha256": "..."}]},
                "hifigan.tiny@<sha>": {"repo": "owner/repo", "revision": "<sha>", "sha256": "..."},
                "hf://owner/repo@<sha>": {"repo": "owner/repo", "revision": "<sha>", "sha256": "..."},
                "./my-vocoder": {"kind": "folder", "architecture": "hifigan", "config_sha256": "...",
                                 "sha256": "..."}}}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from zoo.registry.cards import ModelCard

LOCK_ENV = "ZOO_LOCK"
FORMAT = "vocoder-zoo-lock"


class LockError(ValueError):
    """A model does not match (or is missing from) the lock file."""


def config_sha256(card: ModelCard | dict[str, Any]) -> str:
    """sha256 of a card's model config (or of a config dict) in canonical JSON."""
    config = card.model_config() if isinstance(card, ModelCard) else card
    canon = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def card_entry(card: ModelCard) -> dict[str, Any]:
    return {"architecture": card.architecture, "config_sha256": config_sha256(card),
            "sources": [s.to_dict() for s in card.sources]}


def make_lock(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"format": FORMAT, "version": 1, "models": dict(sorted(entries.items()))}


def read_lock(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LockError(f"lock file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise LockError(f"lock file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
        raise LockError(f"{path} is not a vocoder-zoo lock file")
    if data.get("version") != 1:
        raise LockError(f"lock file {path} has version {data.get('version')!r}; this vocoder-zoo reads version 1 "
                        "(upgrade vocoder-zoo, or write the lock again with `zoo lock`)")
    bad = sorted(str(k) for k, v in data["models"].items() if not isinstance(v, dict)
                 or not isinstance(v.get("sources", []), list)
                 or not all(isinstance(s, dict) for s in v.get("sources", [])))
    if bad:
        raise LockError(f"lock file {path} is malformed: the entries {bad[:8]} are not objects with a list of "
                        "source objects")
    return data


def active_lock(lock: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    path = lock or os.environ.get(LOCK_ENV)
    return read_lock(path) if path else None


def check_card(lock: dict[str, Any], card: ModelCard, requested: str) -> None:
    """Raise :class:`LockError` unless ``card`` is exactly what the lock pinned."""
    entry = lock["models"].get(card.name) or lock["models"].get(requested)
    if entry is None:
        raise LockError(f"model {card.name!r} is not in the lock file; add it with `zoo lock {card.name}`")
    mine = card_entry(card)
    problems = []
    if entry.get("architecture") != mine["architecture"]:
        problems.append(f"architecture {entry.get('architecture')!r} in the lock, {mine['architecture']!r} now")
    if entry.get("config_sha256") != mine["config_sha256"]:
        problems.append("the model config changed since the lock was written")
    locked = [(s.get("kind"), s.get("sha256"), s.get("revision")) for s in entry.get("sources", [])]
    now = [(s.get("kind"), s.get("sha256"), s.get("revision")) for s in mine["sources"]]
    if locked != now:
        problems.append(f"sources differ: locked {locked}, card {now}")
    if problems:
        raise LockError(f"model {card.name!r} does not match the lock file: " + "; ".join(problems))


def locked_hf_sha(lock: dict[str, Any], name: str, revision: str | None = None) -> str:
    """The sha256 the lock pins for a Hub name (``hf://...`` or ``name@<sha>``), checking its revision."""
    entry = lock["models"].get(name)
    if entry is None or "sha256" not in entry:
        raise LockError(f"{name!r} is not in the lock file; add it with `zoo lock {name}`")
    if revision is not None and entry.get("revision") != revision:
        raise LockError(f"the lock pins {name!r} at revision {entry.get('revision')!r}, not {revision!r}")
    return str(entry["sha256"])


def hub_entry(architecture: str, repo: str, revision: str, weights_sha256: str) -> dict[str, Any]:
    """The lock entry of a Hub repo at a commit (``hf://owner/repo@<sha>`` or ``NAME@<sha>``)."""
    return {"architecture": architecture, "repo": repo, "revision": revision, "sha256": weights_sha256}


def folder_entry(architecture: str, config: dict[str, Any], weights_sha256: str) -> dict[str, Any]:
    return {"kind": "folder", "architecture": architecture, "config_sha256": config_sha256(config),
            "sha256": weights_sha256}


def check_folder(lock: dict[str, Any], folder: str, architecture: str, config: dict[str, Any],
                 weights_sha256: str) -> None:
    """Raise :class:`LockError` unless the lock has a folder entry with these weights and this config
    (matched by content, so the folder may have moved)."""
    mine = folder_entry(architecture, config, weights_sha256)
    for entry in lock["models"].values():
        if entry.get("kind") == "folder" and entry.get("sha256") == weights_sha256:
            if entry == mine:
                return
            raise LockError(f"folder {folder!r} has the weights the lock pins, but its "
                            f"{'architecture' if entry.get('architecture') != architecture else 'config'} differs")
    raise LockError(f"folder {folder!r} (model.safetensors sha256 {weights_sha256[:12]}...) is not in the lock "
                    f"file; add it with `zoo lock {folder}`")
