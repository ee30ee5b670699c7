"""Noise drawn by position, so that a stochastic vocoder streams exactly what it vocodes in one shot.

A flow or IAF vocoder turns Gaussian noise ``z`` into audio. If ``z`` came from one ``torch.randn`` call,
the noise of sample ``t`` would depend on how many samples were drawn before it, and a stream (which
vocodes overlapping windows of frames) could never reproduce the one-shot audio. Here ``z`` is instead
assembled from fixed blocks of :data:`BLOCK` time positions; block ``k`` is drawn from its own
``torch.Generator`` seeded with a hash of ``(seed, k)``. The noise at a position depends only on the seed
and the position, so any window of the utterance gets the same noise as the whole.

``seed`` is one 63-bit number drawn from the caller's generator (or the global RNG) at the start of each
:meth:`~zoo.core.vocoder.Vocoder.vocode` call, so the same generator seed gives the same audio and successive
calls with one generator differ. :func:`zoo.core.stream.stream` draws the seed once and runs each window inside
:func:`noise_at`, which tells :func:`position_noise` the seed and the window's first frame.

A plugin calls :func:`position_noise` in place of ``torch.randn``; "time positions" are whatever its noise's
last axis counts (audio samples, or WaveGlow's grouped steps of ``n_group`` samples).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

#: Time positions per independently seeded block of noise.
BLOCK = 4096

_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class _Position:
    seed: int
    frame: int


_CURRENT: contextvars.ContextVar[_Position | None] = contextvars.ContextVar("zoo_noise_position", default=None)


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 63-bit noise seed drawn from ``generator`` (the global CPU RNG when ``None``)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def block_seed(seed: int, block: int) -> int:
    """The ``torch.Generator`` seed of noise block ``block`` (a splitmix64 mix of ``seed`` and ``block``)."""
    z = (seed * 0x9E3779B97F4A7C15 + (block + 1) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


@contextlib.contextmanager
def noise_at(seed: int, frame: int) -> Iterator[None]:
    """Within the block, :func:`position_noise` uses ``seed`` and takes the mel handed to the model to start
    at frame ``frame`` of the utterance (how :func:`zoo.core.stream.stream` vocodes a window)."""
    if frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    token = _CURRENT.set(_Position(int(seed), int(frame)))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _blocks(seed: int, batch: int, channels: int, start: int, length: int,
            draw: Callable[[torch.Generator], Tensor]) -> Tensor:
    """Positions ``[start, start + length)`` of the blocks ``draw(generator)`` makes (``[batch, channels,
    BLOCK]`` each, block ``k`` from a generator seeded with ``block_seed(seed, k)``)."""
    if start < 0 or length < 0:
        raise ValueError(f"noise positions must be >= 0, got start={start}, length={length}")
    out = torch.empty(batch, channels, length)
    first, last = start // BLOCK, (start + length - 1) // BLOCK
    for k in range(first, last + 1) if length else ():
        block = draw(torch.Generator().manual_seed(block_seed(seed, k)))
        lo, hi = max(start, k * BLOCK), min(start + length, (k + 1) * BLOCK)
        out[..., lo - start: hi - start] = block[..., lo - k * BLOCK: hi - k * BLOCK]
    return out


def noise_blocks(seed: int, batch: int, channels: int, start: int, length: int) -> Tensor:
    """Float32 CPU noise ``[batch, channels, length]`` for the time positions ``[start, start + length)``."""
    return _blocks(seed, batch, channels, start, length, lambda g: torch.randn(batch, channels, BLOCK, generator=g))


def uniform_blocks(seed: int, batch: int, channels: int, start: int, length: int, low: float = 0.0,
                   high: float = 1.0) -> Tensor:
    """Float32 CPU uniforms in ``[low, high)``, ``[batch, channels, length]``, for the time positions
    ``[start, start + length)``, drawn by position as :func:`noise_blocks` draws normals (what an
    autoregressive sampler reads to pick each sample)."""
    return _blocks(seed, batch, channels, start, length,
                   lambda g: torch.empty(batch, channels, BLOCK).uniform_(low, high, generator=g))


def current_position(generator: torch.Generator | None) -> tuple[int, int]:
    """``(seed, frame)`` for the noise of a mel handed to a model: from :func:`noise_at` inside one, else a seed
    drawn from ``generator`` and frame 0."""
    pos = _CURRENT.get()
    return (pos.seed, pos.frame) if pos is not None else (draw_seed(generator), 0)


def position_noise(generator: torch.Generator | None, batch: int, channels: int, length: int, frames: int, *,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Standard normal noise ``[batch, channels, length]`` for a mel of ``frames`` frames, drawn by position.

    ``length`` positions cover the ``frames`` frames (``length // frames`` per frame). Outside
    :func:`noise_at` the seed is drawn from ``generator`` and the mel starts at frame 0; inside, both come
    from :func:`noise_at`. Drawn in float32 and then cast, so a seed gives the same noise in every dtype.
    """
    if frames <= 0 or length % frames:
        raise ValueError(f"{length} noise positions do not split evenly over {frames} frames")
    seed, frame = current_position(generator)
    z = noise_blocks(seed, batch, channels, frame * (length // frames), length)
    return z.to(device=device, dtype=dtype or torch.float32)


__all__ = ["BLOCK", "block_seed", "current_position", "draw_seed", "noise_at", "noise_blocks", "position_noise",
           "uniform_blocks"]
