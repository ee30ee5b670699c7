"""Model cards: the pretrained registry as data.

A card is a Hugging Face model card: YAML front matter between ``---`` lines, then prose. The same file is
the ``README.md`` of a Hub repository. Front matter fields:

``name`` (``architecture.tag``), ``architecture``, ``default`` (this tag is what the bare architecture name
loads), ``license``, ``library_name``, ``tags``, ``sample_rate``, ``config`` (architecture hyperparameters,
without ``mel``), ``mel`` (the :class:`~zoo.core.mel.MelConfig` as a dict), ``training_data``, ``quality``,
and ``sources``: an ordered list (empty for a model without weights, such as Griffin-Lim) of places
the weights can come from, each pinned by ``sha256``:

* ``{kind: hf, repo: owner/name, revision: <40-hex commit>, filename: model.safetensors, sha256: ...}``,
  optionally ``repo_type: model | space | dataset`` (default ``model``) and ``size`` (bytes, told to the
  user before a download and in ``zoo list``)
* ``{kind: package, package: <distribution>, path: <file inside it>, sha256: ..., format: <converter>}``
* ``{kind: path, path: <local file>, sha256: ...}``
* ``{kind: url, url: https://..., sha256: ..., format: <converter>}``

``format`` is ``safetensors`` (zoo weights, the default) or the name of a registered converter that turns
the original checkpoint into zoo weights.

Other optional fields: ``sounds_like`` (one line: what the model's output sounds like, measured) and
``offline_alternative`` (a shipped model named in the error when this one is not in the cache offline).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from zoo.core.mel import MelConfig

SOURCE_KINDS = ("hf", "package", "path", "url")
REPO_TYPES = ("model", "space", "dataset")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REVISION = re.compile(r"^[0-9a-f]{40}$")
_NAME = re.compile(r"^[a-z0-9_]+\.[a-z0-9_\-]+$")


class CardError(ValueError):
    """A malformed model card; the message names the file and the field."""

    def __init__(self, origin: str, field: str, problem: str) -> None:
        self.origin, self.field, self.problem = origin, field, problem
        super().__init__(f"{origin}: field '{field}': {problem}")


@dataclasses.dataclass(frozen=True)
class Source:
    """One place the weights of a card can come from, pinned by sha256."""

    kind: str
    sha256: str
    format: str = "safetensors"
    repo: str | None = None
    revision: str | None = None
    filename: str | None = None
    package: str | None = None
    path: str | None = None
    url: str | None = None
    repo_type: str | None = None
    size: int | None = None

    def describe(self) -> str:
        if self.kind == "hf":
            kind = f"{self.repo_type}s/" if self.repo_type and self.repo_type != "model" else ""
            return f"hf://{kind}{self.repo}@{self.revision}/{self.filename}"
        if self.kind == "package":
            return f"package {self.package}:{self.path}"
        if self.kind == "path":
            return f"path {self.path}"
        return f"url {self.url}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass
class ModelCard:
    """A parsed, validated model card."""

    name: str
    architecture: str
    config: dict[str, Any]
    mel: MelConfig
    sources: list[Source]
    default: bool = False
    license: str = "unknown"
    tags: list[str] = dataclasses.field(default_factory=list)
    training_data: Any = None
    quality: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    body: str = ""
    origin: str = "<string>"

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else ""

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    def model_config(self) -> dict[str, Any]:
        """The full architecture config dict (``config`` plus ``mel``), as ``config.json`` stores it."""
        return {**self.config, "mel": self.mel.to_dict()}

    def front_matter(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "architecture": self.architecture,
            "default": self.default,
            "library_name": "vocoder-zoo",
            "license": self.license,
            "tags": list(self.tags),
            "sample_rate": self.mel.sample_rate,
            "config": self.config,
            "mel": self.mel.to_dict(),
            "mel_fingerprint": self.mel.fingerprint(),
            "training_data": self.training_data,
            "quality": self.quality,
            "sources": [s.to_dict() for s in self.sources],
        }
        data.update(self.extra)
        return {k: v for k, v in data.items() if v is not None}

    def to_markdown(self) -> str:
        """The card as Hub README text (YAML front matter, then the prose)."""
        head = yaml.safe_dump(self.front_matter(), sort_keys=False, allow_unicode=True)
        return f"---\n{head}---\n{self.body}"


_KNOWN = {
    "name", "architecture", "default", "license", "library_name", "tags", "sample_rate", "config", "mel",
    "training_data", "quality", "sources", "mel_fingerprint",
}


def split_front_matter(text: str, origin: str = "<string>") -> tuple[dict[str, Any], str]:
    """``(front matter dict, body)`` of a card's text."""
    if not text.startswith("---"):
        raise CardError(origin, "<front matter>", "a card must start with '---' and YAML front matter")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise CardError(origin, "<front matter>", "no closing '---' after the YAML front matter")
    head = parts[0][3:]
    body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    try:
        data = yaml.safe_load(head) or {}
    except yaml.YAMLError as exc:
        raise CardError(origin, "<front matter>", f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CardError(origin, "<front matter>", "YAML front matter must be a mapping")
    return data, body


def _parse_source(raw: Any, origin: str, where: str) -> Source:
    if not isinstance(raw, dict):
        raise CardError(origin, where, "each source must be a mapping")
    kind = raw.get("kind")
    if kind not in SOURCE_KINDS:
        raise CardError(origin, f"{where}.kind", f"must be one of {SOURCE_KINDS}, got {kind!r}")
    sha = str(raw.get("sha256", "")).lower()
    if not _SHA256.match(sha):
        raise CardError(origin, f"{where}.sha256", "must be 64 lowercase hex digits")
    allowed = {f.name for f in dataclasses.fields(Source)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CardError(origin, where, f"unknown keys {unknown}")
    required = {"hf": ("repo", "revision", "filename"), "package": ("package", "path"), "path": ("path",),
                "url": ("url",)}[kind]
    for key in required:
        if not raw.get(key):
            raise CardError(origin, f"{where}.{key}", f"required for a {kind!r} source")
    if kind == "hf" and not _REVISION.match(str(raw["revision"])):
        raise CardError(origin, f"{where}.revision", "must be a full 40-hex commit sha (a pinned revision)")
    if kind == "url" and not str(raw["url"]).startswith("https://"):
        raise CardError(origin, f"{where}.url", "only https:// URLs are accepted")
    if "repo_type" in raw and (kind != "hf" or raw["repo_type"] not in REPO_TYPES):
        raise CardError(origin, f"{where}.repo_type", f"a Hub source's repo_type is one of {REPO_TYPES}, "
                                                      f"got {raw['repo_type']!r}")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise CardError(origin, f"{where}.size", f"must be the file's size in bytes, got {size!r}")
    fields = {k: (str(v) if v is not None else None) for k, v in raw.items() if k != "size"}
    fields["sha256"] = sha
    fields["size"] = size
    return Source(**fields)  # type: ignore[arg-type]


def parse_card(text: str, origin: str = "<string>") -> ModelCard:
    """Parse and validate a card; raises :class:`CardError` naming the file and field."""
    data, body = split_front_matter(text, origin)
    for key in ("name", "architecture", "config", "mel", "sources"):
        if key not in data:
            raise CardError(origin, key, "required field is missing")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise CardError(origin, "name", f"must look like 'architecture.tag' (lowercase), got {name!r}")
    arch = data["architecture"]
    if not isinstance(arch, str) or name.split(".", 1)[0] != arch:
        raise CardError(origin, "architecture", f"must be the part of the name before the dot ({name!r})")
    if not isinstance(data["config"], dict):
        raise CardError(origin, "config", "must be a mapping of hyperparameters")
    if "mel" in data["config"]:
        raise CardError(origin, "config.mel", "put the mel config in the top-level 'mel' field")
    try:
        mel = MelConfig.from_dict(data["mel"]) if isinstance(data["mel"], dict) else MelConfig.preset(data["mel"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CardError(origin, "mel", str(exc)) from None
    if "sample_rate" in data and (isinstance(data["sample_rate"], bool) or not isinstance(data["sample_rate"], int)):
        raise CardError(origin, "sample_rate", f"must be a whole number of Hz, got {data['sample_rate']!r}")
    if "sample_rate" in data and int(data["sample_rate"]) != mel.sample_rate:
        raise CardError(origin, "sample_rate",
                        f"{data['sample_rate']} disagrees with mel.sample_rate {mel.sample_rate}")
    for key in ("training_data", "library_name", "mel_fingerprint"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CardError(origin, key, f"must be a string, got {type(data[key]).__name__}")
    raw_sources = data["sources"]
    if not isinstance(raw_sources, list):
        raise CardError(origin, "sources", "must be a list (empty only for a model without weights)")
    sources = [_parse_source(s, origin, f"sources[{i}]") for i, s in enumerate(raw_sources)]
    tags = data.get("tags") or []
    if not isinstance(tags, list):
        raise CardError(origin, "tags", "must be a list")
    quality = data.get("quality") or {}
    if not isinstance(quality, dict):
        raise CardError(origin, "quality", "must be a mapping")
    default = data.get("default", False)
    if not isinstance(default, bool):
        raise CardError(origin, "default", "must be true or false")
    license_ = data.get("license", "unknown")
    if not isinstance(license_, str) or not license_:
        raise CardError(origin, "license", f"must be a license identifier such as 'mit', got {license_!r}")
    return ModelCard(
        name=name,
        architecture=arch,
        config=dict(data["config"]),
        mel=mel,
        sources=sources,
        default=default,
        license=license_,
        tags=[str(t) for t in tags],
        training_data=data.get("training_data"),
        quality=quality,
        extra={k: v for k, v in data.items() if k not in _KNOWN},
        body=body,
        origin=origin,
    )


def load_card(path: str | Path) -> ModelCard:
    """Read and validate a card file."""
    path = Path(path)
    return parse_card(path.read_text(encoding="utf-8"), origin=str(path))
