"""The Vocoder contract every architecture implements.

A :class:`Vocoder` is a ``torch.nn.Module`` that turns mel-spectrograms ``[B, n_mels, frames]`` into audio
``[B, frames * hop]``. Subclasses implement :meth:`Vocoder.synthesize` for a batch of equal-length items;
the base class does everything around it: input checks with clear errors, variable-length batches
(padding never leaks into a shorter item's audio), ``torch.inference_mode``, device/dtype handling,
reproducible sampling through an explicit ``torch.Generator``, feature extraction with the model's own
mel front-end, and ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

import numpy as np
import torch
import torchaudio.functional as AF
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from zoo.core.config import VocoderConfig
from zoo.core.files import atomic_write, write_safetensors
from zoo.core.mel import MelConfig, all_finite, mel_spectrogram, reference_hash
from zoo.core.stream import StreamSession, stream

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1


ConfigT = TypeVar("ConfigT", bound=VocoderConfig)


class Vocoder(nn.Module, Generic[ConfigT]):
    """Base class of every vocoder, generic in its config type: ``class HiFiGAN(Vocoder[HiFiGANConfig])``
    makes ``self.config`` a ``HiFiGANConfig`` for readers and type checkers.

    Class attributes a subclass sets:

    * ``config_class``: the :class:`~zoo.core.config.VocoderConfig` subclass holding the hyperparameters. Taken
      from ``Vocoder[XConfig]`` when the class does not set it (a class that sets both must set the same).
    * ``deterministic``: ``False`` when :meth:`synthesize` draws random numbers (flows, WaveNet).
    * ``parallel``: ``False`` for autoregressive models (sample by sample). Such a model streams only if it
      overrides :meth:`open_stream`.
    * ``padded_batches``: ``True`` when :meth:`synthesize` takes ``lengths=`` and samples a padded batch of
      different lengths in one run, each item stopping at its own length (an autoregressive model then reads
      its weights once per step for all items); otherwise :meth:`vocode` calls :meth:`synthesize` once per
      distinct length.

    ``architecture``, the architecture name (``"hifigan"``), is set by the registry to the name the class is
    registered under (``register("hifigan", HiFiGAN)`` in a plugin's ``zoo_register_architectures``); a
    subclass need not set it. A subclass of a registered class registered under another name gets that name.
    """

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[VocoderConfig]] = VocoderConfig
    config: ConfigT
    deterministic: ClassVar[bool] = True
    parallel: ClassVar[bool] = True
    padded_batches: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """``class X(Vocoder[XConfig])`` declares the config type once: ``config_class`` is taken from it."""
        super().__init_subclass__(**kwargs)
        declared = [arg for base in cls.__dict__.get("__orig_bases__", ()) if get_origin(base) is Vocoder
                    for arg in get_args(base) if isinstance(arg, type)]
        if not declared:
            return
        own = cls.__dict__.get("config_class")
        if own is None:
            cls.config_class = declared[0]
        elif own is not declared[0]:
            raise TypeError(f"{cls.__name__} is a Vocoder[{declared[0].__name__}] but sets config_class = "
                            f"{own.__name__}: declare the config type once, as Vocoder[...]")

    def __init__(self, config: ConfigT | None = None) -> None:
        super().__init__()
        if config is None:
            config = cast(ConfigT, self.config_class())
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} expects a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config

    # ------------------------------------------------------------------ the feature contract
    @property
    def mel_config(self) -> MelConfig:
        """The exact mel features this model expects (see :class:`zoo.core.mel.MelConfig`)."""
        return self.config.mel

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.mel.hop_length

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.float32

    def mel(self, audio: Tensor, sample_rate: int | None = None, *, resample: bool = False) -> Tensor:
        """Mel features of ``audio`` (``[T]`` or ``[B, T]``, floats in [-1, 1]) as this model expects them.

        Audio peaking above :data:`MAX_AUDIO_PEAK` is refused (it is not [-1, 1] audio).
        ``sample_rate`` is checked against the model's; with ``resample=True`` a different rate is
        resampled (torchaudio) instead of refused.
        """
        audio = as_float_tensor(audio, "audio")
        peak = float(audio.abs().max()) if audio.numel() else 0.0
        if math.isfinite(peak) and peak > MAX_AUDIO_PEAK:  # NaN / Inf are refused by the mel front-end
            raise ValueError(f"audio peaks at {peak:g}, but floats in [-1, 1] are expected "
                             f"(integer PCM samples? divide 16-bit ones by 32768)")
        if sample_rate is not None and (isinstance(sample_rate, bool) or not float(sample_rate).is_integer()
                                        or sample_rate <= 0):
            raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            if not resample:
                raise ValueError(
                    f"audio sample rate is {sample_rate} Hz but {self.architecture or type(self).__name__} "
                    f"expects {self.sample_rate} Hz; resample first or pass resample=True"
                )
            audio = AF.resample(audio.float(), int(sample_rate), self.sample_rate)
        return mel_spectrogram(audio, self.mel_config)

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, mel: Tensor, *, generator: torch.Generator | None = None, **sampling: Any) -> Tensor:
        """Audio ``[B, frames * hop]`` from mels ``[B, n_mels, frames]`` of one common length (with
        ``padded_batches``, also a padded batch: ``lengths=`` a ``[B]`` tensor of valid frames per item; the
        audio past an item's length is then ignored).

        Implemented by each architecture. Called by :meth:`vocode` under ``torch.inference_mode`` with
        checked input already on the model's device and dtype. ``mel`` may be the caller's own tensor, so it
        must not be changed in place; the audio must be a new tensor, never a buffer kept between calls
        (:meth:`vocode` hands it to the caller as it is when no item of the batch is padded).
        """
        raise NotImplementedError

    def vocode(
        self,
        mel: Tensor,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        generator: torch.Generator | None = None,
        **sampling: Any,
    ) -> tuple[Tensor, Tensor]:
        """Turn mels into audio; returns ``(audio, audio_lengths)``.

        ``mel`` is ``[n_mels, frames]`` or ``[B, n_mels, frames]`` (any float dtype; moved to the model's
        device and dtype). ``lengths`` gives the valid frames of each item of a padded batch. The audio is
        ``[B, frames * hop]`` (``[frames * hop]`` for unbatched input) in :attr:`audio_dtype` (float32 for a
        float16 or bfloat16 model), zero past each item's length, and for a deterministic model each item is
        exactly what vocoding it alone gives (a stochastic one may draw its noise for the whole batch, so that
        an item's audio also depends on the generator's state and its batch mates; a model whose draws depend
        only on the seed and the position gives each item what it gives alone with the same seed). ``generator`` (a
        ``torch.Generator``) makes stochastic sampling reproducible; ``sampling`` holds architecture options
        (``sigma``, ``temperature`` ...).
        """
        mel = as_float_tensor(mel, "mel")
        unbatched = mel.dim() == 2
        mel = self.checked_mel(mel)
        lengths_t = self._check_lengths(lengths, mel)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)), "
                             f"got {type(generator).__name__}")
        hop = self.hop_length
        with torch.inference_mode():
            given = mel.dtype
            mel = mel.to(device=self.device, dtype=self._compute_dtype())
            if mel.dtype != given and not all_finite(mel):
                raise ValueError(f"mel values exceed the range of {mel.dtype}, the model's dtype (largest magnitude "
                                 f"{torch.finfo(mel.dtype).max:g})")
            batch, _, frames = mel.shape
            groups = sorted(set(lengths_t.tolist()), reverse=True)
            if groups == [frames]:
                # No padding: synthesize's audio is the result (no second utterance-sized buffer, which
                # would count against bounded-memory synthesis of long inputs).
                out = self._synthesize_checked(mel, generator, sampling).to(self.audio_dtype).contiguous()
                if out.untyped_storage().data_ptr() == mel.untyped_storage().data_ptr():
                    out = out.clone()  # a view of the input (a trivial plugin): never hand back the caller's mel
            elif self.padded_batches:
                # One run for the whole padded batch, each item stopping at its own length.
                out = self._synthesize_checked(mel, generator, {**sampling, "lengths": lengths_t}).to(self.audio_dtype)
                out = out.masked_fill(torch.arange(frames * hop, device=out.device)
                                      >= (lengths_t * hop).to(out.device)[:, None], 0.0)
            else:
                out = torch.zeros(batch, frames * hop, device=mel.device, dtype=self.audio_dtype)
                for length in groups:
                    idx = (lengths_t == length).nonzero().flatten().tolist()
                    audio = self._synthesize_checked(mel[idx, :, :length], generator, sampling)
                    out[idx, : length * hop] = audio.to(out.dtype)
        audio_lengths = lengths_t * hop
        if unbatched:
            return out[0], audio_lengths[0]
        return out, audio_lengths

    def _synthesize_checked(self, mel: Tensor, generator: torch.Generator | None, sampling: dict[str, Any]) -> Tensor:
        """:meth:`synthesize` of a batch of one length, its output shape checked."""
        audio = self.synthesize(mel, generator=generator, **sampling)
        expected = (mel.shape[0], mel.shape[-1] * self.hop_length)
        if tuple(audio.shape) != expected:
            raise RuntimeError(f"{type(self).__name__}.synthesize returned shape {tuple(audio.shape)}, "
                               f"expected {expected}")
        return audio

    def forward(
        self,
        mel: Tensor,
        lengths: Tensor | Sequence[int] | None = None,
        *,
        generator: torch.Generator | None = None,
        **sampling: Any,
    ) -> Tensor:
        """``voc(mel)``: the audio of :meth:`vocode` without the lengths."""
        return self.vocode(mel, lengths, generator=generator, **sampling)[0]

    def _compute_dtype(self) -> torch.dtype:
        return self.dtype

    @property
    def audio_dtype(self) -> torch.dtype:
        """The dtype of the audio :meth:`vocode` returns: the model's, but at least float32. 16-bit floats
        cannot hold 16-bit PCM (bfloat16 keeps 8 significant bits: rounding HiFi-GAN's output to it alone
        costs 1.3% of the multi-resolution STFT distance on LJSpeech, float16 keeps 11)."""
        return torch.promote_types(self.dtype, torch.float32)

    # ------------------------------------------------------------------ kernels and helpers
    #: The compiled kernels (:mod:`zoo.kernels.native` names) this architecture's CPU inference uses, each with
    #: the operand dtypes it has a compiled form for: what ``zoo info --kernels`` and ``zoo bench`` report.
    compiled_kernels: ClassVar[Mapping[str, tuple[torch.dtype, ...]]] = {}
    #: Sampling options :class:`zoo.audio.denoiser.Denoiser` uses when it measures the model's bias.
    denoiser_sampling: ClassVar[Mapping[str, Any]] = {}

    # ------------------------------------------------------------------ export
    #: Why this architecture cannot be exported to TorchScript/ONNX (``None``: a parallel one can).
    export_refusal: ClassVar[str | None] = None

    def noise_shape(self, batch: int, frames: int) -> tuple[int, ...] | None:
        """The shape of the noise :meth:`synthesize` draws for ``batch`` mels of ``frames`` frames, for a
        stochastic model that :mod:`zoo.runtime.export` exports with the noise as a second input
        (then :meth:`synthesize_from_noise` must be implemented); ``None`` for a deterministic model."""
        return None

    def synthesize_from_noise(self, mel: Tensor, z: Tensor) -> Tensor:
        """Audio ``[B, frames * hop]`` from mels and the noise ``z`` of :meth:`noise_shape`, already scaled
        by the sampling temperature/sigma: the deterministic core of a stochastic :meth:`synthesize`,
        traceable (no Python branching on values). Implemented by stochastic architectures."""
        raise NotImplementedError(f"{type(self).__name__} has no noise-input form (synthesize_from_noise)")

    def stream(self, mel_chunks: Any, **kwargs: Any) -> Any:
        """Yield audio while mel chunks ``[n_mels, frames]`` arrive; equal to one-shot :meth:`vocode` (with a
        generator of the same seed for a stochastic model). Parallel vocoders, and autoregressive ones that
        implement :meth:`open_stream`; see :mod:`zoo.core.stream`."""
        return stream(self, mel_chunks, **kwargs)

    def open_stream(self, seed: int, **sampling: Any) -> StreamSession:
        """The sampling state of one streamed utterance of an autoregressive model (``parallel = False``).

        A parallel model is streamed by vocoding windows of frames with their context
        (:func:`zoo.core.stream.stream`) and never needs this. An autoregressive model cannot be vocoded in
        windows, since each sample depends on every sample before it: it overrides this to return a
        :class:`~zoo.core.stream.StreamSession` that carries its state (the last samples, the position of
        its noise, drawn from ``seed``) from one stretch of frames to the next. ``sampling`` holds the
        architecture's options. The base class refuses with a ``ValueError``.
        """
        raise ValueError(f"{self.architecture or type(self).__name__} is autoregressive and does not implement "
                         "open_stream: each sample depends on every sample before it, so it cannot be vocoded "
                         "in windows (use vocode)")

    def prepare_for_inference(self) -> Vocoder:
        """Fold and precompute what inference needs (weight norm, inverses ...). Called by loaders."""
        self._leave_inference_mode_tensors()
        self.eval()
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> Vocoder:  # .to(), .float(), .bfloat16(), .cuda() ...
        super()._apply(fn, recurse)
        self._leave_inference_mode_tensors()
        return self

    def _leave_inference_mode_tensors(self) -> None:
        """Parameters and buffers made under ``torch.inference_mode`` (a model built, loaded or cast there) are
        inference tensors: they have no version counter, so nothing that caches a copy of the weights (the
        compiled kernels' packs, :func:`zoo.kernels.native.kept`; the flows' inverses) can tell whether they
        changed, and each such copy was made again on every call (8-15% of a bfloat16 WaveGlow or FloWaveNet
        call). Each is replaced by an ordinary tensor holding the same values (one copy, made here)."""
        tensors = [*self.parameters(), *self.buffers()]
        if not any(t.is_inference() for t in tensors):
            return
        with torch.inference_mode(False):
            for m in self.modules():
                for name, p in m._parameters.items():
                    if p is not None and p.is_inference():
                        m._parameters[name] = nn.Parameter(p.clone(), requires_grad=p.requires_grad)
                for name, b in m._buffers.items():
                    if b is not None and b.is_inference():
                        m._buffers[name] = b.clone()

    # ------------------------------------------------------------------ input checks
    def checked_mel(self, mel: Any) -> Tensor:
        """``mel`` as a batch ``[B, n_mels, frames]`` of this model's ``n_mels``, or a ``ValueError`` saying what
        is wrong (shape, channel count, empty, NaN/Inf)."""
        mel = as_float_tensor(mel, "mel")
        n_mels = self.mel_config.n_mels
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        if mel.dim() != 3:
            raise ValueError(
                f"mel must be [n_mels={n_mels}, frames] or [batch, n_mels={n_mels}, frames]; "
                f"got a tensor of shape {tuple(mel.shape)}"
            )
        if mel.shape[1] != n_mels:
            hint = ""
            if mel.shape[2] == n_mels:
                hint = " (it looks like [batch, frames, n_mels]: transpose the last two dimensions)"
            raise ValueError(
                f"mel has {mel.shape[1]} channels on dim 1 but this model expects n_mels={n_mels}"
                f"{hint}; got shape {tuple(mel.shape)}"
            )
        if mel.shape[0] == 0 or mel.shape[2] == 0:
            raise ValueError(f"mel is empty (shape {tuple(mel.shape)}); need at least one frame")
        if not all_finite(mel):
            raise ValueError("mel contains NaN or Inf values")
        return mel

    def _check_lengths(self, lengths: Any, mel: Tensor) -> Tensor:
        batch, _, frames = mel.shape
        if lengths is None:
            return torch.full((batch,), frames, dtype=torch.long)
        try:
            lengths_t = torch.as_tensor(lengths).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"lengths must be integers (frames per item), got {lengths!r}") from None
        if lengths_t.is_floating_point() or lengths_t.is_complex() or lengths_t.dtype == torch.bool:
            raise ValueError(f"lengths must be integers (frames per item), got dtype {lengths_t.dtype}")
        lengths_t = lengths_t.long().reshape(-1)
        if lengths_t.numel() != batch:
            raise ValueError(f"lengths has {lengths_t.numel()} entries but the mel batch has {batch} items")
        if (lengths_t < 1).any() or (lengths_t > frames).any():
            raise ValueError(f"lengths must lie in [1, {frames}] (frames of the padded mel), got {lengths_t.tolist()}")
        return lengths_t

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | os.PathLike[str], card: Any = None, *,
                        dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ ``README.md`` if ``card`` is given).

        The safetensors ``__metadata__`` repeats the architecture, config and mel config as JSON strings,
        so the weights file alone says what it is. ``card`` is a :class:`zoo.registry.cards.ModelCard` or its text.
        ``dtype`` stores floating-point tensors in that type (``torch.float16`` halves the file); loading
        casts them back to the model's dtype.
        """
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point type, got {dtype}")

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        mel_print, mel_ref = self.mel_config.fingerprint(), reference_hash(self.mel_config)
        config = {
            "architecture": self.architecture,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "mel_fingerprint": mel_print,
            "mel_reference_hash": mel_ref,
        }
        def stored(v: Tensor) -> Tensor:
            v = v.detach().to("cpu")
            return (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()

        state = {k: stored(v) for k, v in self.state_dict().items()}
        metadata = {
            "architecture": self.architecture,
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "mel_config": json.dumps(self.mel_config.to_dict(), sort_keys=True),
            "mel_fingerprint": mel_print,
            "mel_reference_hash": mel_ref,
        }
        atomic_write(directory / CONFIG_NAME, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
        write_safetensors(directory / WEIGHTS_NAME, state, metadata)  # canonical: same weights, same bytes
        if card is not None:
            text = card if isinstance(card, str) else card.to_markdown()
            atomic_write(directory / CARD_NAME, text.encode())
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Vocoder:
        """Load a folder written by :meth:`save_pretrained` into this class (architecture checked).

        Use :func:`zoo.load` to load any folder whatever its architecture.
        """
        directory = Path(directory)
        arch, config_dict = read_config(directory)
        if cls.architecture and arch != cls.architecture:
            raise ValueError(f"{directory} holds a {arch!r} model, not {cls.architecture!r}")
        model = cls(cls.config_class.from_dict(config_dict))
        model.load_weights(directory / WEIGHTS_NAME)
        model.prepare_for_inference()
        return model.to(device=device, dtype=dtype) if (device or dtype) else model

    def load_weights(self, path: str | os.PathLike[str]) -> None:
        """Load a safetensors file into this model, strictly (missing/unexpected keys and shapes named)."""
        try:
            state = load_file(str(path))
        except SafetensorError as exc:
            raise ValueError(f"{path} is not a readable safetensors file (damaged or truncated?): {exc}") from None
        self.load_state_dict_checked(state, source=str(path))

    def load_state_dict_checked(self, state: dict[str, Tensor], source: str = "state dict") -> None:
        own = self.state_dict()
        problem = key_mismatch({k: v.shape for k, v in state.items()}, {k: v.shape for k, v in own.items()})
        if problem:
            raise ValueError(f"{source} does not fit {type(self).__name__}({self.config}): {problem}")
        broken = sorted(k for k, v in state.items() if v.is_floating_point() and not all_finite(v))
        if broken:
            raise ValueError(f"{source} has NaN or Inf values in {broken[:8]}{' ...' if len(broken) > 8 else ''}")
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(state[k].to(v.dtype))

    # ------------------------------------------------------------------ training interface
    def loss(self, audio: Tensor, mel: Tensor) -> dict[str, Tensor]:
        """Training losses on a batch of audio segments ``[B, T]`` and their mels ``[B, n_mels, T/hop]``.

        Returns a dict with at least ``"loss"`` (the scalar to minimise). Likelihood models implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement a training loss")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        return f"architecture={self.architecture!r}"


KEYS_SHOWN = 6
"""How many keys a :func:`key_mismatch` message names per kind of mismatch (the rest are counted)."""


def _some(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - KEYS_SHOWN} more" if len(keys) > KEYS_SHOWN else ""
    return ", ".join(keys[:KEYS_SHOWN]) + more


def key_mismatch(got: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]],
                 model: str = "the model") -> str:
    """What keeps a state dict with shapes ``got`` from fitting ``model``'s, with shapes ``expected``, in the one
    format that model loading and the converters (``zoo.hub.converting``) share; ``""`` when it fits."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    bad = sorted(k for k in set(got) & set(expected) if tuple(got[k]) != tuple(expected[k]))
    parts = []
    if missing:
        parts.append(f"missing keys that {model} needs ({_some(missing)})")
    if unexpected:
        parts.append(f"unexpected keys that have no place in {model} ({_some(unexpected)})")
    if bad:
        shown = [f"{k} is {tuple(got[k])}, expected {tuple(expected[k])}" for k in bad]
        parts.append(f"shape mismatches ({_some(shown)})")
    return "; ".join(parts)


def read_config(directory: Path) -> tuple[str, dict[str, Any]]:
    """``(architecture, config dict)`` from a folder's ``config.json``, with clear errors."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a zoo model folder: {CONFIG_NAME} is missing")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or "architecture" not in data or "config" not in data:
        raise ValueError(f"{path} must hold 'architecture' and 'config'")
    return str(data["architecture"]), dict(data["config"])


#: :meth:`Vocoder.mel` refuses audio louder than this: it is not [-1, 1] audio (integer PCM values, most likely).
MAX_AUDIO_PEAK = 4.0


def sampling_scale(name: str, value: Any) -> float:
    """A sampling option that scales noise (``temperature``, ``sigma``) as a float, or a ``ValueError`` when
    it is not a finite number ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not (
            isinstance(value, Tensor) and value.numel() == 1):
        raise ValueError(f"{name} must be a number >= 0, got {type(value).__name__} {value!r}")
    scale = float(value)
    if not (math.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {scale}")
    return scale


def as_float_tensor(x: Any, what: str) -> Tensor:
    """``x`` (a tensor, a numpy array or anything ``torch.as_tensor`` takes) as a floating-point tensor, or a
    ``ValueError`` naming ``what`` and the type or dtype found."""
    if not isinstance(x, Tensor):
        try:
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(x)
            else:
                x = torch.as_tensor(x)
        except Exception as exc:  # noqa: BLE001 - turn anything unconvertible into a clear error
            raise ValueError(f"{what} must be a tensor or array, got {type(x).__name__}") from exc
    if not x.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def receptive_field_ms(samples: int, sample_rate: int) -> float:
    """Milliseconds spanned by ``samples`` at ``sample_rate``."""
    return 1000.0 * samples / sample_rate


__all__ = ["Vocoder", "VocoderConfig", "read_config", "sampling_scale", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME"]
