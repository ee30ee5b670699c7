"""What every ``zoo`` command module shares: the one-line error type, the subcommand registration, reading
the inputs (audio files and saved mels) and the progress bar.

A command module decorates each function that adds its subparser with :func:`subcommand`; ``zoo.cli``
imports the command modules explicitly and adds their subparsers, module by module, in a fixed order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from zoo.train.data import read_mono

AUDIO_EXT = {".wav", ".flac", ".ogg"}
MEL_EXT = {".npy", ".pt"}

AddParser = Callable[[argparse._SubParsersAction], None]

_ADDERS: dict[str, list[AddParser]] = {}


class CliError(Exception):
    """An error reported as one line, without a traceback."""


def subcommand(fn: AddParser) -> AddParser:
    """Register a function that adds a subparser, under the module that defines it."""
    _ADDERS.setdefault(fn.__module__, []).append(fn)
    return fn


def registered(module: str) -> list[AddParser]:
    """The subparser adders the module named ``module`` registered, in definition order."""
    return list(_ADDERS.get(module, []))


def progress(iterable: Any, **kw: Any) -> Any:
    """A tqdm progress bar over ``iterable`` (hidden when ``disable``)."""
    return tqdm(iterable, disable=kw.pop("disable", None), dynamic_ncols=True, **kw)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 audio and its sample rate (:func:`zoo.train.data.read_mono`), errors as one CLI line."""
    try:
        return read_mono(path)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def read_mel(path: Path) -> Any:
    """A saved mel as a float tensor (``.npy`` via numpy without pickles, ``.pt`` with weights_only)."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(str(path), allow_pickle=False)
            return torch.from_numpy(np.ascontiguousarray(arr))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CliError(f"{path}: cannot read mel ({exc})") from None
    if not isinstance(obj, torch.Tensor):
        raise CliError(f"{path}: expected a tensor, found {type(obj).__name__}")
    return obj
