"""Streaming and bounded-memory synthesis.

A convolutional or flow vocoder's output sample depends on a finite window of mel frames: its receptive
field. :func:`context_window` takes it from the model's own ``context_frames()`` (computed from the layer
geometry) or, for a model without one, *measures* it with :func:`measure_context`: vocode a probe mel twice,
the second time with one frame changed, and see which samples move. That needs no autograd, so it works
under ``torch.inference_mode()`` as well as ``no_grad`` and grad mode. :func:`stream` then vocodes each
stretch of frames together with that much context on each side and keeps only the middle: as long as the
context covers the receptive field, every kept sample is the one-shot sample (up to float rounding), so no
crossfade is needed and the memory used depends on the chunk size, not on the utterance length.

Stochastic vocoders (WaveGlow, FloWaveNet, the Parallel WaveNet student) stream too: they draw their noise
by position (:mod:`zoo.core.noise`), :func:`stream` draws one seed from ``generator`` and vocodes every window
with the noise of its own positions, so the streamed audio equals ``vocode(mel, generator=...)`` with a
generator of the same seed.

An autoregressive model cannot be vocoded in windows: each sample depends on every sample before it. It streams
when it implements :meth:`~zoo.core.vocoder.Vocoder.open_stream`, which returns a :class:`StreamSession`: the
model's sampling state (its last samples, the position of its noise) carried from one stretch of frames to the
next. :func:`stream` hands the session each stretch of frames whose right context has arrived, together with
the mel frames around it that its (parallel) conditioning needs (``StreamSession.context``), and the session
samples on from where it stopped, drawing its noise by position from the stream's seed: the streamed audio again
equals one-shot ``vocode`` with a generator of the same seed, and the memory used does not grow with the length.
The base class refuses an autoregressive model that has no such session.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from zoo.core.noise import draw_seed, noise_at

if TYPE_CHECKING:  # annotations only: zoo.core.vocoder imports this module (Vocoder.stream)
    from zoo.core.vocoder import Vocoder


class StreamSession(Protocol):
    """One streamed utterance of an autoregressive model (:meth:`~zoo.core.vocoder.Vocoder.open_stream`)."""

    #: ``(left, right)`` mel frames of context the conditioning of a stretch of frames needs on each side.
    context: tuple[int, int]

    def __call__(self, mel: Tensor, first: int, start: int, stop: int) -> Tensor:
        """Audio ``[(stop - start) * hop]`` of frames ``[start, stop)`` of the utterance, sampled on from the end of
        the previous call (the first call starts at frame 0; every call starts where the last stopped).
        ``mel`` ``[n_mels, frames]`` holds frames ``[first, first + frames)``: at least ``context`` frames on
        each side of ``[start, stop)``, clipped at the utterance's ends (the last call has its last frame)."""
        ...


def _check_parallel(voc: Vocoder) -> None:
    if not voc.parallel:
        raise ValueError(f"{voc.architecture or type(voc).__name__} is autoregressive: each sample depends on "
                         "every sample before it, so it cannot be vocoded in windows and has no window context "
                         "(stream it with stream(), which carries its sampling state, or use vocode)")


def measure_context(voc: Vocoder, probe_frames: int = 64) -> tuple[int, int]:
    """``(left, right)`` frames of context an output frame needs, measured on the model itself.

    Vocodes a probe mel, then the same mel with its centre frame changed (the same noise both times, for a
    stochastic model): output frames that move depend on the centre frame. Frames *before* the centre that
    move need that much *right* context, frames after it need left context. Runs under any autograd mode.
    """
    _check_parallel(voc)
    m = voc.mel_config
    g = torch.Generator().manual_seed(0)
    mel = voc.mel(0.1 * torch.randn(probe_frames * m.hop_length, generator=g))[..., :probe_frames]
    centre = probe_frames // 2
    bumped = mel.clone()
    bumped[:, centre] += 1.0
    with torch.inference_mode(), noise_at(0, 0):
        diff = (voc.vocode(mel)[0] - voc.vocode(bumped)[0]).abs().reshape(probe_frames, m.hop_length).amax(-1)
    moved = (diff > 0).nonzero().flatten()
    if not moved.numel():
        return 0, 0
    right, left = centre - int(moved.min()), int(moved.max()) - centre
    if max(left, right) >= centre - 1:  # the probe was too short to see the whole receptive field
        return measure_context(voc, probe_frames * 2)
    return left + 1, right + 1


def context_window(voc: Vocoder) -> tuple[int, int]:
    """``(left, right)`` frames of context :func:`stream` gives each window: the model's ``context_frames()``
    (an int for both sides or a ``(left, right)`` pair) when it has one, else :func:`measure_context`."""
    _check_parallel(voc)
    own = getattr(voc, "context_frames", None)
    if callable(own):
        ctx = own()
        left, right = (ctx, ctx) if isinstance(ctx, int) else ctx
        return int(left), int(right)
    return measure_context(voc)


def context_frames(voc: Vocoder) -> int:
    """Frames on each side that can influence an output sample (the larger of :func:`context_window`)."""
    return max(context_window(voc))


def _context_arg(context: int | tuple[int, int]) -> tuple[int, int]:
    left, right = (context, context) if isinstance(context, int) else context
    if isinstance(left, bool) or isinstance(right, bool) or not isinstance(left, int) \
            or not isinstance(right, int) or left < 0 or right < 0:
        raise ValueError(f"context must be frames >= 0 (an int or a (left, right) pair), got {context!r}")
    return left, right


def stream(voc: Vocoder, mel_chunks: Iterable[Tensor], *, context: int | tuple[int, int] | None = None,
           min_emit_frames: int = 1, generator: torch.Generator | None = None, **sampling: Any) -> Iterator[Tensor]:
    """Yield audio as mel frames arrive (chunks ``[n_mels, frames]``); the concatenation equals one-shot.

    Each yield covers the frames whose right context has arrived; the last yield flushes the rest. A
    stochastic model draws its noise by position from one seed taken from ``generator``, so the audio equals
    ``voc.vocode(whole_mel, generator=g)`` for a ``g`` seeded alike; ``sampling`` holds the architecture's
    options (``sigma``, ``temperature``). An autoregressive model streams through its
    :meth:`~zoo.core.vocoder.Vocoder.open_stream` session (``context`` then overrides the session's). Works
    under ``torch.inference_mode()``, ``no_grad`` and grad mode.
    """
    if context is not None:
        _context_arg(context)
    if isinstance(min_emit_frames, bool) or not isinstance(min_emit_frames, int) or min_emit_frames < 1:
        raise ValueError(f"min_emit_frames must be a whole number >= 1, got {min_emit_frames!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    seed = draw_seed(generator)
    hop = voc.hop_length
    buf: Tensor | None = None  # frames kept: [n_mels, kept]
    offset = 0  # absolute index of buf's first frame
    emitted = 0  # frames already turned into audio

    def window(start: int, stop: int) -> Tensor:
        assert buf is not None
        lo = max(offset, start - left)
        hi = min(offset + buf.shape[-1], stop + right)
        if session is not None:
            return session(buf[:, lo - offset: hi - offset], lo, start, stop)
        with noise_at(seed, lo):
            audio = voc.vocode(buf[:, lo - offset: hi - offset], **sampling)[0]
        return audio[(start - lo) * hop: (stop - lo) * hop]

    with torch.inference_mode():
        session = None if voc.parallel else voc.open_stream(seed, **sampling)
        if session is not None:
            left, right = session.context if context is None else _context_arg(context)
        else:
            left, right = context_window(voc) if context is None else _context_arg(context)
        for chunk in mel_chunks:
            chunk = voc.checked_mel(chunk)
            if chunk.shape[0] != 1:
                raise ValueError(f"stream takes one utterance: mel chunks [n_mels, frames] (or [1, n_mels, "
                                 f"frames]); got a batch of {chunk.shape[0]}")
            chunk = chunk[0]
            buf = chunk if buf is None else torch.cat([buf, chunk.to(buf)], -1)
            ready = offset + buf.shape[-1] - right
            if ready - emitted >= min_emit_frames:
                yield window(emitted, ready)
                emitted = ready
                keep_from = max(0, emitted - left)
                buf, offset = buf[:, keep_from - offset:], keep_from
        if buf is not None and offset + buf.shape[-1] > emitted:
            yield window(emitted, offset + buf.shape[-1])


def vocode_long(voc: Vocoder, mel: Tensor, chunk_frames: int = 512, *, generator: torch.Generator | None = None,
                **sampling: Any) -> Tensor:
    """One-shot output of a long ``[n_mels, frames]`` mel with memory bounded by ``chunk_frames``."""
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise ValueError(f"chunk_frames must be a whole number >= 1, got {chunk_frames!r}")
    mel = voc.checked_mel(mel)
    if mel.shape[0] != 1:
        raise ValueError(f"vocode_long takes one utterance [n_mels, frames]; got a batch of {mel.shape[0]}")
    pieces = [mel[0, :, i: i + chunk_frames] for i in range(0, mel.shape[-1], chunk_frames)]
    return torch.cat(list(stream(voc, pieces, min_emit_frames=1, generator=generator, **sampling)), -1)


def in_windows(frames: int, chunk_frames: int, left: int, right: int, hop: int,
               run: Callable[[int, int], Tensor]) -> Tensor:
    """Audio of frames ``[0, frames)`` computed window by window: memory bounded by ``chunk_frames``.

    ``run(lo, hi)`` returns the audio ``[..., (hi - lo) * hop]`` of the mel frames ``[lo, hi)`` (with the
    model's noise for those samples). Each stretch of ``chunk_frames`` frames is run with ``left`` and
    ``right`` frames of context (clipped at the ends) and only its own samples are kept: when the context
    covers the receptive field the result equals one call on all frames. With ``chunk_frames`` 0 (never
    chunk) or at least ``frames``, it is that one call, ``run(0, frames)``.
    """
    if chunk_frames < 0:
        raise ValueError(f"chunk_frames must be >= 0, got {chunk_frames}")
    if not chunk_frames or frames <= chunk_frames:
        return run(0, frames)
    out: Tensor | None = None
    for start in range(0, frames, chunk_frames):
        stop = min(frames, start + chunk_frames)
        lo, hi = max(0, start - left), min(frames, stop + right)
        piece = run(lo, hi)[..., (start - lo) * hop: (stop - lo) * hop]
        if out is None:
            out = piece.new_empty((*piece.shape[:-1], frames * hop))
        out[..., start * hop: stop * hop] = piece
        if piece.device.type == "cpu":
            del piece
            release_freed_memory()
    assert out is not None
    return out


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_freed_memory() -> None:
    """Give the pages of freed CPU tensors back to the operating system (glibc ``malloc_trim``; a no-op
    elsewhere).

    glibc raises its mmap threshold each time a large block is freed, so the activations of later windows
    come from the heap, and the heap keeps their pages after they are freed: without a trim between windows,
    resident memory grows with the number of windows although the tensors alive do not.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
