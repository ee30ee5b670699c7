"""File helpers shared by every layer: atomic writes under the process umask.

A file is written to a temporary path beside its target and renamed onto it only when the write finished,
so no reader (another process, a crashed run resumed) ever sees half a file, and a failure leaves nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


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


SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}
"""The safetensors name of each tensor dtype :func:`write_safetensors` stores."""


def safetensors_header(entries: Mapping[str, Mapping[str, object]], metadata: Mapping[str, str] | None) -> bytes:
    """The canonical safetensors header: 8-byte little-endian length, then JSON without spaces holding the
    metadata (keys sorted) and ``entries`` in the order given, padded with spaces to a multiple of 8 bytes."""
    head: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    head.update(entries)
    text = json.dumps(head, separators=(",", ":"), sort_keys=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (CPU) to ``path`` atomically as a safetensors file in canonical form: tensors sorted
    by name, the data in that order, the header as :func:`safetensors_header` writes it. The same tensors
    and metadata always give the same bytes, and each tensor's bytes go to the file straight from its memory
    (no copy of the whole file is ever built, as ``safetensors.torch.save_file`` does)."""
    names = sorted(tensors)
    entries, offset = {}, 0
    for name in names:
        t = tensors[name]
        if t.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{name!r}: cannot store dtype {t.dtype} in safetensors")
        if t.device.type != "cpu":
            raise ValueError(f"{name!r} is on {t.device}; move the tensors to the CPU before saving")
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                         "data_offsets": [offset, offset + size]}
        offset += size
    target = Path(path)
    with atomic_path(target, ".tmp") as tmp, open(tmp, "wb") as out:
        out.write(safetensors_header(entries, metadata))
        for name in names:
            t = tensors[name].detach().contiguous()
            if t.numel():
                out.write(t.reshape(-1).view(torch.uint8).numpy().data)
    return target
