"""The public functions: list, describe, create, load and convert vocoders."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import torch

from zoo.audio.adapt import as_mel_config
from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.hub.lock import active_lock, check_card, check_folder, locked_hf_sha
from zoo.hub.sources import fetch_hf_repo, parse_hf_name, read_folder, resolve_card, sha256_file
from zoo.registry.cards import ModelCard, Source
from zoo.registry.plugins import RegistryError, get_registry


class MelMismatchError(ValueError):
    """A TTS model's mel features do not match what the vocoder expects."""


def list_architectures() -> list[str]:
    """Names of every registered architecture."""
    return sorted(get_registry().architectures)


def list_models(pattern: str | None = None) -> list[str]:
    """Names (``architecture.tag``) of every pretrained model card, optionally filtered by a glob."""
    names = sorted(get_registry().cards)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def info(name: str) -> dict[str, Any]:
    """What the zoo knows about a model or an architecture, as a dict."""
    reg = get_registry()
    if name in reg.architectures and not any(c.architecture == name for c in reg.cards.values()):
        arch = reg.architecture(name)
        return {
            "architecture": name,
            "plugin": arch.plugin,
            "class": f"{arch.cls.__module__}.{arch.cls.__qualname__}",
            "default_config": arch.cls.config_class().to_dict(),
            "models": [],
            "doc": (arch.cls.__doc__ or "").strip(),
        }
    card = reg.card(name)
    arch = reg.architecture(card.architecture)
    return {
        "name": card.name,
        "architecture": card.architecture,
        "plugin": arch.plugin,
        "default": card.default,
        "license": card.license,
        "tags": card.tags,
        "sample_rate": card.sample_rate,
        "config": card.config,
        "mel": card.mel.to_dict(),
        "training_data": card.training_data,
        "quality": card.quality,
        "sources": [s.to_dict() for s in card.sources],
        "card": card.origin,
        "models": sorted(c.name for c in reg.cards.values() if c.architecture == card.architecture),
    }


def card(name: str) -> ModelCard:
    """The :class:`~zoo.registry.cards.ModelCard` of a model (a bare architecture name gives its default)."""
    return get_registry().card(name)


def create(architecture: str, config: VocoderConfig | dict[str, Any] | None = None, **overrides: Any) -> Vocoder:
    """A randomly initialised model of ``architecture`` (for training or tests)."""
    cls = get_registry().architecture(architecture).cls
    if config is None:
        cfg = cls.config_class()
    elif isinstance(config, dict):
        cfg = cls.config_class.from_dict(config)
    else:
        cfg = config
    if overrides:
        cfg = cfg.replace(**overrides)
    return cls(cfg)


def _build(arch: str, config: dict[str, Any], weights: Path | None) -> Vocoder:
    cls = get_registry().architecture(arch).cls
    model = cls(cls.config_class.from_dict(config))
    if weights is not None:
        model.load_weights(weights)
    elif model.state_dict():
        raise RegistryError(f"the card of this {arch!r} model lists no weights, but the architecture has parameters")
    return model


def load(
    name: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    offline: bool | None = None,
    expect_mel: MelConfig | str | dict[str, Any] | None = None,
    lock: str | os.PathLike[str] | None = None,
) -> Vocoder:
    """A ready, pretrained vocoder in eval mode.

    ``name`` is a model name (``"hifigan.universal"``), an architecture name (its default model), a
    model at another Hub revision (``"name@<commit sha>"``), any Hub repo written by ``save_pretrained``
    (``"hf://owner/repo@<commit sha>"``), or a local folder. ``offline=True`` (or ``HF_HUB_OFFLINE=1``)
    uses only caches. ``lock`` (or ``ZOO_LOCK``) enforces a lock file. ``expect_mel`` (a
    :class:`~zoo.core.mel.MelConfig`, a preset name or a dict) raises :class:`MelMismatchError` when your
    features differ from the model's.
    """
    dtype_ = _dtype(dtype)
    device_ = _device(device)
    if expect_mel is not None:
        expect_mel = as_mel_config(expect_mel)
    locked = active_lock(lock)
    if isinstance(name, os.PathLike) or (isinstance(name, str) and looks_like_path(name)):
        arch, config, weights = read_folder(Path(name))
        if locked:
            check_folder(locked, str(name), arch, config, sha256_file(weights))
        model = _build(arch, config, weights)
    elif str(name).startswith("hf://"):
        repo, revision = parse_hf_name(str(name))
        expected = locked_hf_sha(locked, str(name)) if locked else None
        config, weights, arch = fetch_hf_repo(repo, revision, offline=offline, expected_sha256=expected)
        model = _build(arch, config, weights)
    else:
        reg = get_registry()
        base, _, revision = str(name).partition("@")
        card_ = reg.card(base)
        hf = hub_source(card_) if revision else None
        other_revision = hf is not None and revision != hf.revision
        if locked and not other_revision:
            check_card(locked, card_, base)
        if hf is not None:
            revision = parse_hf_name(f"hf://{hf.repo}@{revision}")[1]
            if not other_revision:
                expected = hf.sha256
            else:  # another revision than the card's: pinned by its own lock entry, else unchecked
                expected = locked_hf_sha(locked, f"{card_.name}@{revision}", revision) if locked else None
            config, weights, arch = fetch_hf_repo(str(hf.repo), revision, offline=offline,
                                                  expected_sha256=expected)
            model = _build(arch, config, weights)
        else:
            config, weights = resolve_card(card_, offline=offline, requested=base)
            model = _build(card_.architecture, config, weights)
    model.prepare_for_inference()
    if expect_mel is not None:
        check_mel_compatible(model.mel_config, expect_mel)
    if device_ is not None or dtype_ is not None:
        model = model.to(device=device_, dtype=dtype_)
        model.prepare_for_inference()
    return model


def check_mel_compatible(vocoder_mel: MelConfig, tts_mel: MelConfig) -> None:
    """Raise :class:`MelMismatchError` listing every field where ``tts_mel`` differs from ``vocoder_mel``."""
    diff = vocoder_mel.diff(tts_mel)
    if diff:
        lines = [f"  {field}: vocoder expects {mine!r}, got {theirs!r}" for field, (mine, theirs) in diff.items()]
        raise MelMismatchError("mel features do not match the vocoder:\n" + "\n".join(lines))


def convert(source: str, checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
            config: dict[str, Any] | None = None) -> Vocoder:
    """Convert an original checkpoint with the converter ``source``; saved to ``out_dir`` if given, with the
    weights in canonical form (the same checkpoint always gives the same ``model.safetensors`` bytes)."""
    converter = get_registry().converter(source)
    if config is not None and not isinstance(config, dict):
        raise ValueError(f"config must be a dict of hyperparameters, got {type(config).__name__}")
    try:
        model = converter.fn(Path(checkpoint), config=config)
    except ValueError as exc:
        if str(checkpoint) in str(exc):
            raise
        raise ValueError(f"{checkpoint}: {exc}") from None
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - a checkpoint is untrusted input: any failure is a bad file
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"{checkpoint}: the {source!r} converter cannot convert it "
                         f"({type(exc).__name__}{': ' + reason if reason else ''})") from None
    if out_dir is not None:
        model.save_pretrained(out_dir)  # canonical form: same source, same bytes
    return model


def hub_source(card: ModelCard) -> Source:
    """The card's first Hub source (``kind: hf``), the repository a ``NAME@<sha>`` name points into."""
    for source in card.sources:
        if source.kind == "hf":
            return source
    raise RegistryError(f"{card.name!r} has no Hub source, so it has no revisions to choose from")


def looks_like_path(name: str) -> bool:
    """Whether a model name given to :func:`load` means a local folder (a path, or an existing folder)."""
    if name.startswith("hf://"):
        return False
    return name.startswith((".", "/", "~")) or os.sep in name or Path(name).is_dir()


def _device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here (use 'cpu')")
    return dev


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type (float32, float16, bfloat16), got {dtype}")
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}
    try:
        return names[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)}") from None


__all__ = ["list_architectures", "list_models", "info", "card", "create", "load", "convert",
           "check_mel_compatible", "MelMismatchError", "RegistryError"]
