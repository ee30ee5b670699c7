"""Getting weights: card sources, sha256 pinning, the zoo cache, and one-time conversion.

Whatever the source (a Hub repo at a pinned commit, a file shipped by an installed package, a local
path, an https URL), the bytes are checked against the card's sha256 before use; a mismatch is refused
and the bad file is not kept. Hub downloads go through ``huggingface_hub`` (its cache, its locking, its
``HF_HUB_OFFLINE``). Legacy checkpoints are converted once by their plugin's converter into safetensors
in the zoo cache (``$ZOO_CACHE``, default ``~/.cache/vocoder-zoo``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from zoo.cards import ModelCard, Source
from zoo.vocoder import CONFIG_NAME, WEIGHTS_NAME, atomic_path, umask_mode

CACHE_ENV = "ZOO_CACHE"


class ChecksumError(ValueError):
    """Downloaded or found bytes do not match the pinned sha256."""


class SourceUnavailable(RuntimeError):
    """None of a card's sources could provide the weights (each attempt is listed)."""


def cache_dir() -> Path:
    """The zoo cache (``$ZOO_CACHE`` or ``~/.cache/vocoder-zoo``)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "vocoder-zoo")
    return Path(root)


def is_offline(offline: bool | None = None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected: str, what: str) -> Path:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            f"{what}: sha256 mismatch: the card pins {expected} but the file ({path}) has {actual}. If "
            f"these weights were regenerated, the card's sha256 is stale: pin the new one; otherwise the file "
            f"is corrupt, truncated or was replaced. It was not used"
        )
    return path


# ---------------------------------------------------------------------- sources
def fetch_source(source: Source, *, offline: bool | None = None) -> Path:
    """A local, sha256-verified path of ``source``'s file."""
    offline = is_offline(offline)
    what = source.describe()
    if source.kind == "hf":
        return _fetch_hf(source, offline)
    if source.kind == "package":
        try:
            dist = importlib.metadata.distribution(str(source.package))
        except importlib.metadata.PackageNotFoundError:
            raise FileNotFoundError(f"{what}: package {source.package!r} is not installed") from None
        path = Path(str(dist.locate_file(str(source.path))))
        if not path.is_file():
            path = _in_importable_package(str(source.path)) or path
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path} does not exist in the installed package")
        return verify(path, source.sha256, what)
    if source.kind == "path":
        path = Path(os.path.expanduser(str(source.path)))
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no such file")
        return verify(path, source.sha256, what)
    return _fetch_url(source, offline)


def _in_importable_package(rel: str) -> Path | None:
    """``pkg/sub/file`` inside the importable package ``pkg`` (editable installs keep files in the tree)."""
    import importlib.util

    top, _, rest = rel.partition("/")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(root) / rest
        if candidate.is_file():
            return candidate
    return None


def _fetch_hf(source: Source, offline: bool) -> Path:
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = source.describe()
    try:
        path = hf_download(str(source.repo), str(source.filename), str(source.revision), offline=offline)
    except LocalEntryNotFoundError as exc:
        if offline:
            raise FileNotFoundError(f"{what}: not in the Hugging Face cache and offline mode is on") from exc
        raise
    try:
        return verify(path, source.sha256, what)
    except ChecksumError:
        _evict_hf_file(path)
        raise


#: Tries of one Hub file when it fails transiently (HTTP 408/429/5xx, a connection reset or timeout, a body
#: shorter than announced); a ``Retry-After`` answer is waited for, up to :data:`HF_RETRY_WAIT_MAX` seconds.
HF_TRIES = 3
HF_RETRY_WAIT_MAX = 10.0
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_ERRORS = {"ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectTimeout", "WriteTimeout",
                     "PoolTimeout", "TimeoutException", "ConnectError", "ConnectionResetError", "TimeoutError",
                     "IncompleteRead"}


def hf_download(repo: str, filename: str, revision: str, *, offline: bool = False) -> Path:
    """``huggingface_hub.hf_hub_download`` with the endpoint and cache read from the environment now
    (``HF_ENDPOINT``, ``HF_HUB_CACHE``), so a process can switch hubs or caches between calls; transient
    failures are retried (:data:`HF_TRIES`), anything else is raised as huggingface_hub raised it."""
    from huggingface_hub import hf_hub_download

    for attempt in range(HF_TRIES):
        try:
            return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision,
                                        local_files_only=offline, endpoint=os.environ.get("HF_ENDPOINT") or None,
                                        cache_dir=os.environ.get("HF_HUB_CACHE") or None))
        except Exception as exc:
            wait = None if offline or attempt == HF_TRIES - 1 else _retry_wait(exc, attempt)
            if wait is None:
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")


def _retry_wait(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before retrying after ``exc``, or ``None`` when it is not transient."""
    backoff = 0.5 * 2**attempt
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            if status not in _TRANSIENT_STATUS:
                return None
            try:
                after = float(response.headers.get("Retry-After"))  # type: ignore[union-attr]
            except (TypeError, ValueError):
                return backoff
            return min(max(after, 0.0), HF_RETRY_WAIT_MAX)
        if type(err).__name__ in _TRANSIENT_ERRORS or "Consistency check failed" in str(err):
            return backoff
    return None


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (huggingface_hub adds help lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _evict_hf_file(path: Path) -> None:
    """Remove a bad file from the huggingface_hub cache (the snapshot link and its blob)."""
    with contextlib.suppress(OSError):
        blob = path.resolve()
        path.unlink()
        if blob != path and blob.exists():
            blob.unlink()


def _fetch_url(source: Source, offline: bool) -> Path:
    what = source.describe()
    target = cache_dir() / "downloads" / source.sha256 / Path(str(source.url)).name
    if target.is_file():
        try:
            return verify(target, source.sha256, what)
        except ChecksumError:
            target.unlink()
    if offline:
        raise FileNotFoundError(f"{what}: not in the zoo cache ({target}) and offline mode is on")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with tmp.open("wb") as out, urllib.request.urlopen(str(source.url), timeout=60) as resp:  # noqa: S310
            shutil.copyfileobj(resp, out)
        verify(tmp, source.sha256, what)
    return target


# ---------------------------------------------------------------------- cards -> weights
def resolve_card(card: ModelCard, *, offline: bool | None = None) -> tuple[dict[str, Any], Path | None]:
    """``(config dict, safetensors path)`` for a card, trying its sources in order.

    A card without sources describes a model without weights (the path is ``None``).

    Sources whose ``format`` names a converter are converted once into the zoo cache; the converted
    folder records the source sha256 it came from and the sha256 of the weights it wrote.
    """
    if not card.sources:
        return card.model_config(), None
    errors = []
    for source in card.sources:
        try:
            path = fetch_source(source, offline=offline)
        except (OSError, ChecksumError, RuntimeError, ValueError) as exc:
            what, message = source.describe(), str(exc)  # most messages start with the source: name it once
            errors.append(f"  - {message}" if message.startswith(what) else f"  - {what}: {message}")
            continue
        if source.format == "safetensors":
            return card.model_config(), path
        return card.model_config(), convert_cached(card, source, path)
    raise SourceUnavailable(f"could not get the weights of {card.name!r}; tried:\n" + "\n".join(errors))


def convert_cached(card: ModelCard, source: Source, path: Path) -> Path:
    """Convert a verified legacy checkpoint once; returns the cached ``model.safetensors``."""
    from filelock import FileLock

    from zoo.registry import get_registry

    folder = cache_dir() / "converted" / f"{source.format}-{source.sha256[:16]}-{card.name}"
    weights = folder / WEIGHTS_NAME
    # One process converts at a time (others wait, then find the result); the lock dies with its process.
    with FileLock(str(_ensure(folder.parent) / f".{folder.name}.lock")):
        if _converted_ok(folder, source.sha256):
            return weights
        for stale in folder.parent.glob(f".tmp-{folder.name}-*"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        converter = get_registry().converter(str(source.format))
        model = converter.fn(path, config=card.model_config())
        _write_converted(model, card, source, folder)
    return weights


def _converted_ok(folder: Path, source_sha256: str) -> bool:
    stamp, weights = folder / "conversion.json", folder / WEIGHTS_NAME
    if not (weights.is_file() and stamp.is_file()):
        return False
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return info.get("source_sha256") == source_sha256 and sha256_file(weights) == info.get("weights_sha256")


def _write_converted(model: Any, card: ModelCard, source: Source, folder: Path) -> None:
    """Save a converted model into ``folder`` through a temporary folder renamed into place, so no reader
    ever sees half of it; a failed write (disk full ...) leaves nothing and says so in one line."""
    from safetensors import SafetensorError

    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        try:
            model.save_pretrained(tmp)
            info = {"source": source.to_dict(), "source_sha256": source.sha256, "converter": source.format,
                    "weights_sha256": sha256_file(tmp / WEIGHTS_NAME), "model": card.name}
            (tmp / "conversion.json").write_text(json.dumps(info, indent=2))
        except (OSError, SafetensorError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OSError(f"could not write the converted {card.name!r} into the zoo cache ({reason}; disk "
                          "full?); nothing was kept") from None
        if folder.exists():
            shutil.rmtree(folder)
        umask_mode(tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_folder(directory: Path) -> tuple[str, dict[str, Any], Path]:
    """``(architecture, config, weights path)`` of a ``save_pretrained`` folder."""
    from zoo.vocoder import read_config

    arch, config = read_config(directory)
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    return arch, config, weights


# ---------------------------------------------------------------------- whole Hub repos
def parse_hf_name(name: str) -> tuple[str, str]:
    """``"hf://owner/repo@<40-hex sha>"`` -> ``(repo, revision)``; the revision must be a full commit sha."""
    body = name[len("hf://"):]
    repo, _, revision = body.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"{name!r}: expected hf://owner/repo@<commit sha>")
    if not revision:
        raise ValueError(f"{name!r}: pin a revision (hf://{repo}@<40-hex commit sha>); a branch name can move")
    if len(revision) != 40 or any(ch not in "0123456789abcdef" for ch in revision):
        raise ValueError(f"{name!r}: the revision must be a full 40-hex commit sha, got {revision!r}")
    return repo, revision


def fetch_hf_repo(repo: str, revision: str, *, offline: bool | None = None,
                  expected_sha256: str | None = None) -> tuple[dict[str, Any], Path, str]:
    """``(config dict with 'architecture', weights path, architecture)`` of a save_pretrained Hub repo.

    The weights are checked against ``expected_sha256`` when given, else against the sha256 that the
    repo's own model card (README.md) lists for ``model.safetensors``; the config in ``config.json`` must
    agree with the safetensors metadata.
    """
    from safetensors import SafetensorError, safe_open

    from zoo.cards import CardError, parse_card

    off = is_offline(offline)
    where = f"hf://{repo}@{revision}"
    try:
        config_path = hf_download(repo, CONFIG_NAME, revision, offline=off)
        weights_path = hf_download(repo, WEIGHTS_NAME, revision, offline=off)
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many kinds; report one line
        hint = " (offline mode: only the cache was searched)" if off else ""
        raise FileNotFoundError(f"{where}: cannot get {CONFIG_NAME}/{WEIGHTS_NAME}{hint}: {one_line(exc)}") from None
    data = json.loads(Path(config_path).read_text())
    arch, config = str(data.get("architecture", "")), data.get("config")
    if not arch or not isinstance(config, dict):
        raise ValueError(f"{where}: {CONFIG_NAME} must hold 'architecture' and 'config'")
    if expected_sha256 is None:
        try:
            card = parse_card(hf_download(repo, "README.md", revision, offline=off).read_text(), f"{where}/README.md")
            pins = [s.sha256 for s in card.sources if s.filename in (None, WEIGHTS_NAME)]
            expected_sha256 = pins[0] if pins else None
        except (CardError, OSError, Exception):  # noqa: BLE001 - a repo without a card is allowed
            expected_sha256 = None
    if expected_sha256 is not None:
        try:
            verify(weights_path, expected_sha256, f"{where}/{WEIGHTS_NAME}")
        except ChecksumError:
            _evict_hf_file(weights_path)
            raise
    try:
        with safe_open(str(weights_path), "pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as exc:  # no pin to check it against, and it does not parse
        raise ValueError(f"{where}/{WEIGHTS_NAME} is not a readable safetensors file: {exc}") from None
    if meta.get("architecture") and meta["architecture"] != arch:
        raise ValueError(f"{where}: {CONFIG_NAME} says {arch!r} but the weights say {meta['architecture']!r}")
    if meta.get("config") and json.loads(meta["config"]) != config:
        raise ValueError(f"{where}: {CONFIG_NAME} and the safetensors metadata disagree on the config")
    return config, weights_path, arch
