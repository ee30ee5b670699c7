"""The torch/torchaudio pair, checked before torchaudio loads.

A torchaudio release is built for the torch of its own ``X.Y`` (pyproject.toml declares the supported range,
torch and torchaudio 2.4 to 2.11). Not every torchaudio wheel says so in its metadata (2.11.0 declares no torch
requirement), so pip can install torchaudio 2.11.0 beside an older torch, and ``import torchaudio`` then fails
inside its loader with ``undefined symbol``. :func:`check_torch_pair` runs when this module is imported (first
in ``zoo/__init__.py``, before any module imports torchaudio) and names the pair to install instead.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _minor(release: str) -> tuple[int, ...]:
    """``"2.11.0+cu130" -> (2, 11)``."""
    return tuple(int(part) for part in release.split("+")[0].split(".")[:2] if part.isdigit())


def check_torch_pair() -> None:
    """Raise ``ImportError`` naming the fix when the installed torchaudio is not of the installed torch's release.

    Versions are read from the installed metadata (nothing is imported); a torch or torchaudio installed without
    metadata (a source build on the path) is not checked.
    """
    try:
        torch_v, audio_v = version("torch"), version("torchaudio")
    except PackageNotFoundError:
        return
    if _minor(torch_v) != _minor(audio_v):
        x_y = ".".join(map(str, _minor(torch_v)))
        raise ImportError(f"torchaudio {audio_v} does not match torch {torch_v} (a torchaudio release works only "
                          f"with the torch of its own X.Y): install the pair, e.g. pip install "
                          f"\"torchaudio=={x_y}.*\"")


check_torch_pair()
