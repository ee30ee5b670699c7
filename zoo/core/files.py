"""File helpers shared by every layer: atomic writes under the process umask.

A file is written to a temporary path beside its target and renamed onto it only when the write finished,
so no reader (another process, a crashed run resumed) ever sees half a file, and a failure leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf


def umask_mode(path: str | os.PathLike[str]) -> None:
    """Give a file or folder made by ``tempfile`` (always private: 0600 / 0700) the mode a plain ``open`` or
    ``mkdir`` would, under the process umask, before it is moved into place."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; when the block ends without an error it is given
    the umask's mode and renamed onto ``target`` (so no reader ever sees half a file), else removed."""
    target = Path(target)
    fd, name = tempfile.mkstemp(dir=target.parent, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask_mode(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, ".tmp") as tmp:
        tmp.write_bytes(data)


def write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write a 16-bit wav via a temporary file, so a failure never leaves a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".wav.part") as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
