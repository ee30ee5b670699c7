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
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from filelock import FileLock
from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import LocalEntryNotFoundError
from safetensors import SafetensorError, safe_open

from zoo.core.files import atomic_path, safetensors_header, umask_mode
from zoo.core.vocoder import CONFIG_NAME, WEIGHTS_NAME, read_config
from zoo.registry.cards import CardError, ModelCard, Source, parse_card
from zoo.registry.plugins import get_registry

CACHE_ENV = "ZOO_CACHE"


class ChecksumError(ValueError):
    """Downloaded or found bytes do not match the pinned sha256."""


class SourceUnavailable(RuntimeError):
    """None of a card's sources could provide the weights (each attempt is listed)."""


class NotInCache(SourceUnavailable, FileNotFoundError):
    """Offline, and the weights of a downloadable model are in neither cache (the message says what is
    missing, its size, the command that fetches it and what works offline instead)."""


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
        path = _local_source_path(source)
        if path is None:
            try:
                importlib.metadata.distribution(str(source.package))
            except importlib.metadata.PackageNotFoundError:
                raise FileNotFoundError(f"{what}: package {source.package!r} is not installed") from None
            raise FileNotFoundError(f"{what}: {source.path} does not exist in the installed package")
        return verify(path, source.sha256, what)
    if source.kind == "path":
        path = Path(os.path.expanduser(str(source.path)))
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no such file")
        return verify(path, source.sha256, what)
    return _fetch_url(source, offline)


def _in_importable_package(rel: str) -> Path | None:
    """``pkg/sub/file`` inside the importable package ``pkg`` (editable installs keep files in the tree)."""
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
    """A Hub file at its pinned commit, downloaded by ``huggingface_hub`` (its cache, lock and progress bar)
    and verified before anything reads it; the user is told the size, source and cache before a download."""
    what = source.describe()
    args = (str(source.repo), str(source.filename), str(source.revision))
    try:
        path = hf_download(*args, offline=True, repo_type=source.repo_type)
    except LocalEntryNotFoundError as exc:
        if offline:
            raise FileNotFoundError(f"{what}: not in the Hugging Face cache ({hf_cache_root()}) and offline mode "
                                    f"is on") from exc
        announce(f"downloading {source.filename} ({format_size(source.size)}) from {what} into "
                 f"{hf_cache_root()}; it is checked against the pinned sha256 before use")
        try:
            path = hf_download(*args, offline=False, repo_type=source.repo_type)
        except Exception as exc:  # noqa: BLE001 - httpx, huggingface_hub and OS errors: one line each
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConnectionError(f"{what}: download failed ({type(exc).__name__}{': ' if reason else ''}{reason}); "
                                  f"nothing of it was kept, run the same command again to retry") from None
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


def announce(message: str) -> None:
    """Tell the user (standard error) what is about to happen, e.g. before a large download."""
    print(f"vocoder-zoo: {message}", file=sys.stderr, flush=True)


def format_size(size: int | None) -> str:
    """``675788412`` -> ``'644.5 MiB'`` (``'size unknown'`` for ``None``)."""
    if size is None:
        return "size unknown"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


def hf_cache_root() -> Path:
    """The ``huggingface_hub`` cache folder this process uses (``HF_HUB_CACHE``, else the library's)."""
    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def hf_download(repo: str, filename: str, revision: str, *, offline: bool = False,
                repo_type: str | None = None) -> Path:
    """``huggingface_hub.hf_hub_download`` with the endpoint and cache read from the environment now
    (``HF_ENDPOINT``, ``HF_HUB_CACHE``), so a process can switch hubs or caches between calls; transient
    failures are retried (:data:`HF_TRIES`), anything else is raised as huggingface_hub raised it."""
    for attempt in range(HF_TRIES):
        try:
            return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision,
                                        local_files_only=offline,
                                        repo_type=repo_type if repo_type != "model" else None,
                                        endpoint=os.environ.get("HF_ENDPOINT") or None,
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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line for a report (the hub's errors, ``zoo compare``'s table): its first
    line (huggingface_hub and torch add help and detail lines), whitespace collapsed, at most ``limit``
    characters; the exception's type name when the message is empty."""
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _evict_hf_file(path: Path) -> None:
    """Remove a bad file from the huggingface_hub cache (the snapshot link, its blob, and the folders
    that held only them), so that nothing of it is left behind."""
    with contextlib.suppress(OSError):
        blob = path.resolve()
        path.unlink()
        if blob != path and blob.exists():
            blob.unlink()
        folder = path.parent
        while "snapshots" in folder.parts and folder.name != "snapshots" and not any(folder.iterdir()):
            folder.rmdir()  # the empty snapshots/<commit>/... folders the bad file was in
            folder = folder.parent


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
def resolve_card(card: ModelCard, *, offline: bool | None = None,
                 requested: str | None = None) -> tuple[dict[str, Any], Path | None]:
    """``(config dict, safetensors path)`` for a card, trying its sources in order.

    A card without sources describes a model without weights (the path is ``None``).

    Sources whose ``format`` names a converter are converted once into the zoo cache; the converted
    folder records the source sha256 it came from and the sha256 of the weights it wrote, and a later load
    uses it without touching the original (offline too). Offline, when no source is in any cache, a
    :class:`NotInCache` error says what is missing, how big it is, ``zoo pull <requested>`` and what
    works offline instead.
    """
    if not card.sources:
        return card.model_config(), None
    for source in card.sources:
        if source.format != "safetensors":
            hit = converted_hit(card, source)
            if hit is not None:
                return card.model_config(), hit
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
    if is_offline(offline) and any(s.kind in ("hf", "url") for s in card.sources):
        raise NotInCache(offline_message(card, requested or card.name))
    raise SourceUnavailable(f"could not get the weights of {card.name!r}; tried:\n" + "\n".join(errors))


def offline_message(card: ModelCard, requested: str) -> str:
    """The one error of an offline load whose weights were never downloaded (see :class:`NotInCache`)."""
    remote = next(s for s in card.sources if s.kind in ("hf", "url"))
    name = Path(str(remote.filename or remote.url)).name
    text = (f"{card.name} is not in the cache and offline mode is on: it needs {name} ({format_size(remote.size)}) "
            f"from {remote.describe()}, converted once into {cache_dir()}. Fetch it once with network access: "
            f"`zoo pull {requested}`.")
    alternative = card.extra.get("offline_alternative")
    if alternative:
        text += f" Works offline now: zoo.load({alternative!r}), shipped with the package{_summary(alternative)}."
    return text


def _summary(name: str) -> str:
    """``': <sounds_like> (<eval-lj numbers>)'`` of a registered card, from the card itself."""
    card = get_registry().cards.get(name)
    if card is None:
        return ""
    parts = [str(card.extra["sounds_like"]).rstrip(".")] if card.extra.get("sounds_like") else []
    numbers = quality_line(card.quality)
    if numbers:
        parts.append(f"measured {numbers}")
    return (": " + "; ".join(parts)) if parts else ""


def quality_line(quality: dict[str, Any]) -> str:
    """``'eval-lj STOI 0.36, PESQ 1.03'``-style summary of a card's ``quality`` block (known metrics only)."""
    labels = {"stoi": "STOI", "pesq": "PESQ", "pesq_wb": "PESQ", "mr_stft": "MR-STFT", "log_mel_l1": "log-mel L1"}
    out = []
    for dataset, values in quality.items():
        if isinstance(values, dict):
            shown = [f"{label} {values[key]}" for key, label in labels.items()
                     if isinstance(values.get(key), (int, float))]
            if shown:
                out.append(f"{dataset} {', '.join(shown)}")
    return "; ".join(out)


def availability(card: ModelCard) -> tuple[str, int | None]:
    """``(status, size in bytes)`` of a card's weights without fetching or hashing anything.

    ``shipped``: a file of an installed package (or a local path); ``cached``: downloaded (or converted)
    into the caches, so it loads offline; ``downloadable``: it needs ``zoo pull`` (or a first online load);
    ``no weights``: a model without parameters; ``missing``: no source is available.
    """
    if not card.sources:
        return "no weights", None
    for source in card.sources:
        if source.kind in ("package", "path"):
            path = _local_source_path(source)
            if path is not None:
                return "shipped", path.stat().st_size
    for source in card.sources:
        if source.kind not in ("hf", "url"):
            continue
        if source.format != "safetensors" and converted_hit(card, source, verify=False) is not None:
            return "cached", source.size
        if source.kind == "hf":
            with contextlib.suppress(Exception):
                path = hf_download(str(source.repo), str(source.filename), str(source.revision), offline=True,
                                   repo_type=source.repo_type)
                return "cached", path.stat().st_size
        elif (cache_dir() / "downloads" / source.sha256 / Path(str(source.url)).name).is_file():
            return "cached", source.size
    remote = [s for s in card.sources if s.kind in ("hf", "url")]
    return ("downloadable", remote[0].size) if remote else ("missing", None)


def _local_source_path(source: Source) -> Path | None:
    if source.kind == "path":
        path = Path(os.path.expanduser(str(source.path)))
        return path if path.is_file() else None
    try:
        dist = importlib.metadata.distribution(str(source.package))
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(str(source.path))))
    if not path.is_file():
        path = _in_importable_package(str(source.path)) or path
    return path if path.is_file() else None


def _converted_folder(card: ModelCard, source: Source) -> Path:
    return cache_dir() / "converted" / f"{source.format}-{source.sha256[:16]}-{card.name}"


def converted_hit(card: ModelCard, source: Source, *, verify: bool = True) -> Path | None:
    """The cached conversion of ``source`` for ``card`` if present and intact, else ``None``. With
    ``verify=False`` the weights are not hashed (a listing only needs to know the conversion is there)."""
    folder = _converted_folder(card, source)
    weights, stamp = folder / WEIGHTS_NAME, folder / "conversion.json"
    if weights.is_file() and stamp.is_file():
        try:
            info = json.loads(stamp.read_text())
        except (OSError, ValueError):
            return None
        if info.get("source_sha256") == source.sha256 and (
                not verify or sha256_file(weights) == info.get("weights_sha256")):
            return weights
    return None


def convert_cached(card: ModelCard, source: Source, path: Path) -> Path:
    """Convert a verified legacy checkpoint once; returns the cached ``model.safetensors``.

    One process converts at a time (others wait on a file lock, then find the result; the lock dies with its
    process). The weights are written in canonical form (``zoo.core.files.write_safetensors``), so the same source
    gives a byte-identical ``model.safetensors`` on every machine, which a lock file or a mirror can pin.
    """
    folder = _converted_folder(card, source)
    with FileLock(str(_ensure(folder.parent) / f".{folder.name}.lock")):
        hit = converted_hit(card, source)
        if hit is not None:
            return hit
        for stale in folder.parent.glob(f".tmp-{folder.name}-*"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        converter = get_registry().converter(str(source.format))
        model = converter.fn(path, config=card.model_config())
        _write_converted(model, card, source, folder)
    return folder / WEIGHTS_NAME


def _write_converted(model: Any, card: ModelCard, source: Source, folder: Path) -> None:
    """Save a converted model into ``folder`` through a temporary folder renamed into place, so no reader
    ever sees half of it; a failed write (disk full ...) leaves nothing and says so in one line."""
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        try:
            model.save_pretrained(tmp)  # canonical form (zoo.core.files.write_safetensors)
            del model
            info = {"source": source.to_dict(), "source_sha256": source.sha256, "converter": source.format,
                    "weights_sha256": sha256_file(tmp / WEIGHTS_NAME), "model": card.name}
            (tmp / "conversion.json").write_text(json.dumps(info, indent=2, sort_keys=True))
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


def canonical_safetensors(path: Path) -> Path:
    """Rewrite a safetensors file in canonical form, in place: header JSON with sorted metadata keys and
    tensors sorted by name, without spaces, data in the same name order, padded to 8 bytes.

    ``safetensors`` keeps the metadata in a hash map, so its order (and the file's sha256) changes from one
    save to the next; the canonical form depends only on the tensors and the metadata. It is the form
    ``Vocoder.save_pretrained`` writes (``zoo.core.files.write_safetensors``); this rewrites files from
    elsewhere. The data is copied tensor by tensor (bounded memory), never parsed as numbers.
    """
    with open(path, "rb") as src:
        (n,) = struct.unpack("<Q", src.read(8))
        header = json.loads(src.read(n))
        base = 8 + n
        meta = header.pop("__metadata__", None)
        entries, offset = {}, 0
        for name in sorted(header):
            begin, end = header[name]["data_offsets"]
            entries[name] = {"dtype": header[name]["dtype"], "shape": header[name]["shape"],
                             "data_offsets": [offset, offset + end - begin]}
            offset += end - begin
        with atomic_path(path, ".canon") as tmp, open(tmp, "wb") as out:
            out.write(safetensors_header(entries, meta))
            for name in entries:
                begin, end = header[name]["data_offsets"]
                src.seek(base + begin)
                remaining = end - begin
                while remaining:
                    block = src.read(min(remaining, 1 << 24))
                    if not block:
                        raise ValueError(f"{path}: truncated safetensors data for {name!r}")
                    out.write(block)
                    remaining -= len(block)
    return path


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_folder(directory: Path) -> tuple[str, dict[str, Any], Path]:
    """``(architecture, config, weights path)`` of a ``save_pretrained`` folder."""
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
