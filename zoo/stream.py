"""Streaming and bounded-memory synthesis for deterministic (parallel, non-autoregressive) vocoders.

A convolutional vocoder's output sample depends on a finite window of mel frames: its receptive field.
:func:`context_frames` *measures* it on the model itself (the support of d audio / d mel for a probe
input, by autograd), rather than trusting a formula. :func:`stream` then vocodes each stretch of frames
together with that many frames of context on both sides and keeps only the middle: as long as the context
covers the receptive field, every kept sample is the one-shot sample (up to float rounding), so no
crossfade is needed and the memory used depends on the chunk size, not on the utterance length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor

from zoo.vocoder import Vocoder

_CONTEXT_CACHE: dict[int, int] = {}


def context_frames(voc: Vocoder, probe_frames: int = 96, threshold: float = 0.0) -> int:
    """Frames on each side that influence an output sample, measured by autograd on a probe mel."""
    if not voc.deterministic:
        raise ValueError(f"{voc.architecture or type(voc).__name__} samples randomly: streaming needs a "
                         "deterministic vocoder")
    key = id(voc)
    if key in _CONTEXT_CACHE:
        return _CONTEXT_CACHE[key]
    m = voc.mel_config
    g = torch.Generator().manual_seed(0)
    mel = voc.mel(0.1 * torch.randn(probe_frames * m.hop_length, generator=g))[..., :probe_frames]
    mel = mel.to(device=voc.device, dtype=torch.float32)[None].requires_grad_(True)
    was_training = voc.training
    voc.eval()
    try:
        with torch.enable_grad():
            audio = voc.synthesize(mel.to(voc.dtype))
            centre = probe_frames // 2
            audio[0, centre * m.hop_length: (centre + 1) * m.hop_length].sum().backward()
    finally:
        voc.train(was_training)
    grad = mel.grad[0].abs().sum(0)
    support = (grad > threshold * grad.max()).nonzero().flatten()
    reach = int(max(centre - support.min().item(), support.max().item() - centre))
    if reach >= probe_frames // 2 - 1:
        return context_frames(voc, probe_frames * 2, threshold)
    _CONTEXT_CACHE[key] = reach + 1
    return reach + 1


def stream(voc: Vocoder, mel_chunks: Iterable[Tensor], *, context: int | None = None,
           min_emit_frames: int = 1) -> Iterator[Tensor]:
    """Yield audio as mel frames arrive (chunks ``[n_mels, frames]``); the concatenation equals one-shot.

    Each yield covers the frames whose right context has arrived; the last yield flushes the rest.
    """
    ctx = context_frames(voc) if context is None else context
    hop = voc.hop_length
    buf: Tensor | None = None  # frames kept: [n_mels, kept]
    offset = 0  # absolute index of buf's first frame
    emitted = 0  # frames already turned into audio
    with torch.inference_mode():
        for chunk in mel_chunks:
            chunk = voc._check_mel(chunk)
            if chunk.shape[0] != 1:
                raise ValueError(f"stream takes one utterance: mel chunks [n_mels, frames] (or [1, n_mels, "
                                 f"frames]); got a batch of {chunk.shape[0]}")
            chunk = chunk[0]
            buf = chunk if buf is None else torch.cat([buf, chunk.to(buf)], -1)
            available = offset + buf.shape[-1]
            ready = available - ctx
            if ready - emitted >= min_emit_frames:
                yield _window(voc, buf, offset, emitted, ready, ctx, hop)
                emitted = ready
                keep_from = max(0, emitted - ctx)
                buf, offset = buf[:, keep_from - offset:], keep_from
        if buf is not None and offset + buf.shape[-1] > emitted:
            yield _window(voc, buf, offset, emitted, offset + buf.shape[-1], ctx, hop)


def _window(voc: Vocoder, buf: Tensor, offset: int, start: int, stop: int, ctx: int, hop: int) -> Tensor:
    lo = max(offset, start - ctx)
    hi = min(offset + buf.shape[-1], stop + ctx)
    mel = buf[:, lo - offset: hi - offset]
    audio = voc.vocode(mel)[0]
    return audio[(start - lo) * hop: (stop - lo) * hop]


def vocode_long(voc: Vocoder, mel: Tensor, chunk_frames: int = 512) -> Tensor:
    """One-shot output of a long ``[n_mels, frames]`` mel with memory bounded by ``chunk_frames``."""
    pieces = [mel[:, i: i + chunk_frames] for i in range(0, mel.shape[-1], chunk_frames)]
    return torch.cat(list(stream(voc, pieces, min_emit_frames=1)), -1)


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
