"""The mel front-end: one dataclass that states a mel convention completely, and the function computing it.

:class:`MelConfig` names every choice that changes the numbers (sample rate, STFT, padding rule, filterbank,
magnitude or power, log and normalisation); :func:`mel_spectrogram` computes the features with
``torch.stft`` and a torchaudio filterbank. Named presets reproduce published conventions
(:data:`PRESETS`); :func:`compress` / :func:`decompress` map between the linear mel and the stored features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
from typing import Any

import torch
import torchaudio.functional as AF
from torch import Tensor, nn

from zoo.core.fields import check_known_keys, field_type_problem

PADDINGS = ("hifigan", "center", "none")
PAD_MODES = ("reflect", "constant")
LOGS = ("ln", "log10", "db", "none")
NORMALIZATIONS = ("none", "minmax", "meanvar")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)
WINDOWS = ("hann",)


@dataclasses.dataclass(frozen=True)
class MelConfig:
    """A complete mel-feature convention.

    * STFT: ``n_fft``, ``win_length`` (``None`` = ``n_fft``), ``hop_length``, periodic Hann ``window``.
    * ``padding``: ``"hifigan"`` reflect-pads ``(n_fft - hop) // 2`` on both sides and does not centre
      (jik876), so ``T`` samples give ``T // hop`` frames; ``"center"`` pads ``n_fft // 2`` on both sides
      (``torch.stft(center=True)``; ``T // hop + 1`` frames); ``"none"`` pads nothing.
    * filterbank: ``n_mels`` bands from ``f_min`` to ``f_max`` (``None`` = Nyquist), ``mel_scale``
      (``"slaney"``/``"htk"``) and ``mel_norm`` (``"slaney"`` area normalisation or ``None``).
    * ``power``: 1 for magnitude, 2 for power; ``magnitude_eps`` is added under the square root
      (``sqrt(re^2 + im^2 + eps)``, jik876 uses 1e-9).
    * compression: ``log`` in ``"ln"``, ``"log10"``, ``"db"`` (``20 * log10``) or ``"none"``, after
      ``clamp(min=log_floor)``; ``"db"`` then subtracts ``ref_level_db``.
    * ``normalize``: ``"minmax"`` maps ``[min_level_db, 0]`` dB to ``[0, 1]`` and clips (r9y9);
      ``"meanvar"`` subtracts ``mean`` and divides by ``std`` per band.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int | None = None
    hop_length: int = 256
    window: str = "hann"
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    power: float = 1.0
    magnitude_eps: float = 0.0
    padding: str = "hifigan"
    pad_mode: str = "reflect"
    log: str = "ln"
    log_floor: float = 1e-5
    ref_level_db: float = 0.0
    normalize: str = "none"
    min_level_db: float = -100.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mean is not None and not isinstance(self.mean, tuple):
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        if self.std is not None and not isinstance(self.std, tuple):
            object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the field if the convention is inconsistent."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"MelConfig: {msg}")

        need(isinstance(self.sample_rate, int) and self.sample_rate > 0, f"sample_rate must be a positive int, "
             f"got {self.sample_rate!r}")
        need(self.n_fft > 0 and self.hop_length > 0, "n_fft and hop_length must be positive")
        need(self.win_length is None or 0 < self.win_length <= self.n_fft,
             f"win_length {self.win_length} must lie in [1, n_fft={self.n_fft}]")
        need(self.window in WINDOWS, f"window must be one of {WINDOWS}, got {self.window!r}")
        need(self.n_mels > 0, "n_mels must be positive")
        nyquist = self.sample_rate / 2
        need(0 <= self.f_min < (self.f_max if self.f_max is not None else nyquist),
             f"need 0 <= f_min < f_max, got f_min={self.f_min}, f_max={self.f_max}")
        need(self.f_max is None or self.f_max <= nyquist + 1e-9,
             f"f_max={self.f_max} exceeds the Nyquist frequency {nyquist} of sample_rate={self.sample_rate}")
        need(self.mel_scale in MEL_SCALES, f"mel_scale must be one of {MEL_SCALES}, got {self.mel_scale!r}")
        need(self.mel_norm in MEL_NORMS, f"mel_norm must be one of {MEL_NORMS}, got {self.mel_norm!r}")
        need(self.power > 0, f"power must be positive (1 magnitude, 2 power), got {self.power}")
        need(self.magnitude_eps >= 0, "magnitude_eps must be >= 0")
        need(self.padding in PADDINGS, f"padding must be one of {PADDINGS}, got {self.padding!r}")
        need(self.pad_mode in PAD_MODES, f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        need(self.log in LOGS, f"log must be one of {LOGS}, got {self.log!r}")
        need(self.log_floor > 0 or self.log == "none", "log_floor must be positive")
        need(self.normalize in NORMALIZATIONS, f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        need(self.normalize != "minmax" or (self.log == "db" and self.min_level_db < 0),
             "normalize='minmax' needs log='db' and a negative min_level_db")
        if self.normalize == "meanvar":
            need(self.mean is not None and self.std is not None, "normalize='meanvar' needs mean and std")
        for name in ("mean", "std"):
            vals = getattr(self, name)
            need(vals is None or len(vals) == self.n_mels, f"{name} has {len(vals or ())} values, n_mels={self.n_mels}")
        need(self.std is None or all(s > 0 for s in self.std), "std values must be positive")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for name in ("mean", "std"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"MelConfig.from_dict expects a dict, got {type(data).__name__}")
        check_known_keys(cls, data, "MelConfig: unknown keys")
        kwargs = dict(data)
        for f in dataclasses.fields(cls):
            if f.name not in kwargs:
                continue
            value = kwargs[f.name]
            if f.name in ("mean", "std"):
                ok = value is None or isinstance(value, (list, tuple)) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                problem = None if ok else "a list of numbers or null"
            else:
                problem = field_type_problem(value, f.default, str(f.type))
            if problem is not None:
                raise ValueError(f"MelConfig: {f.name} must be {problem}, got {value!r}")
        for name in ("mean", "std"):
            if kwargs.get(name) is not None:
                kwargs[name] = tuple(float(v) for v in kwargs[name])
        return cls(**kwargs)

    @classmethod
    def preset(cls, name: str) -> MelConfig:
        """A named published convention (see :data:`PRESETS`)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown mel preset {name!r}; known presets: {sorted(PRESETS)}") from None

    def replace(self, **changes: Any) -> MelConfig:
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        """A stable 16-hex-digit sha256 of the canonical JSON of every field."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def diff(self, other: MelConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (mine, theirs)}`` for every field that differs (``win_length=None`` equals ``n_fft``)."""
        mine, theirs = self._canonical(), other._canonical()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}

    def _canonical(self) -> dict[str, Any]:
        d = self.to_dict()
        d["win_length"] = self.win_length or self.n_fft
        d["f_max"] = float(self.f_max if self.f_max is not None else self.sample_rate / 2)
        return d

    # ------------------------------------------------------------------ geometry
    @property
    def win(self) -> int:
        return self.win_length or self.n_fft

    def padding_amounts(self) -> tuple[int, int]:
        """Samples padded (left, right) before framing."""
        if self.padding == "hifigan":
            p = (self.n_fft - self.hop_length) // 2
            return p, p
        if self.padding == "center":
            return self.n_fft // 2, self.n_fft // 2
        return 0, 0

    def num_frames(self, num_samples: int) -> int:
        """Frames this convention gives for a signal of ``num_samples`` samples."""
        left, right = self.padding_amounts()
        total = num_samples + left + right
        if total < self.n_fft:
            return 0
        return (total - self.n_fft) // self.hop_length + 1

    def frames_to_samples(self, frames: int) -> int:
        return frames * self.hop_length


# ---------------------------------------------------------------------- computation
_fb_cache: dict[tuple[Any, ...], Tensor] = {}
_fb_lock = threading.Lock()


def all_finite(x: Tensor) -> bool:
    """Whether ``x`` holds no NaN or Inf, checked through its sum (one scalar: ``torch.isfinite(x).all()``
    makes temporaries the size of ``x``, which on a model's weights can cost as much memory as the model);
    only a sum that is not finite (NaN / Inf present, or a sum that overflows) is checked element-wise."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def mel_filterbank(config: MelConfig, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``[n_fft // 2 + 1, n_mels]`` filterbank of ``config`` (torchaudio), cached per device/dtype."""
    key = (config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max, config.mel_scale,
           config.mel_norm, str(device), dtype)
    with _fb_lock:
        fb = _fb_cache.get(key)
        if fb is None:
            f_max = config.f_max if config.f_max is not None else config.sample_rate / 2
            fb = AF.melscale_fbanks(config.n_fft // 2 + 1, config.f_min, f_max, config.n_mels,
                                    config.sample_rate, config.mel_norm, config.mel_scale)
            fb = fb.to(device=device, dtype=dtype)
            _fb_cache[key] = fb
    return fb


def _check_audio(audio: Any) -> Tensor:
    if not isinstance(audio, Tensor):
        raise ValueError(f"audio must be a torch.Tensor, got {type(audio).__name__}")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be a floating-point tensor in [-1, 1], got dtype {audio.dtype}")
    if audio.dim() not in (1, 2):
        raise ValueError(f"audio must be [samples] or [batch, samples], got shape {tuple(audio.shape)}")
    if audio.dim() == 2 and audio.shape[1] <= 8 < audio.shape[0]:
        raise ValueError(f"audio of shape {tuple(audio.shape)} looks like [samples, channels] (as soundfile reads "
                         f"multi-channel files): pass mono [samples] (e.g. audio.mean(-1)) or [batch, samples]")
    if audio.numel() == 0:
        raise ValueError("audio is empty")
    if not all_finite(audio):
        raise ValueError("audio contains NaN or Inf values")
    return audio


def linear_mel(audio: Tensor, config: MelConfig) -> Tensor:
    """The mel of ``|STFT|^power`` before any log: ``[n_mels, frames]`` or ``[B, n_mels, frames]``."""
    audio = _check_audio(audio)
    squeeze = audio.dim() == 1
    x = audio[None] if squeeze else audio
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(compute)
    left, right = config.padding_amounts()
    if x.shape[-1] + left + right < config.n_fft:
        raise ValueError(f"audio of {x.shape[-1]} samples is too short for one frame "
                         f"(n_fft={config.n_fft}, padding={config.padding!r})")
    if left or right:
        if config.pad_mode == "reflect" and x.shape[-1] <= max(left, right):
            raise ValueError(f"audio of {x.shape[-1]} samples is too short for reflect padding of {max(left, right)}")
        x = torch.nn.functional.pad(x[:, None], (left, right), mode=config.pad_mode)[:, 0]
    window = torch.hann_window(config.win, device=x.device, dtype=compute)
    spec = torch.stft(x, config.n_fft, config.hop_length, config.win, window, center=False,
                      return_complex=True)
    mag2 = spec.real.pow(2) + spec.imag.pow(2)
    if config.power == 2.0 and config.magnitude_eps == 0.0:
        mag = mag2
    else:
        mag = torch.sqrt(mag2 + config.magnitude_eps)
        if config.power != 1.0:
            mag = mag.pow(config.power)
    fb = mel_filterbank(config, x.device, compute)
    mel = torch.matmul(fb.T, mag)
    return mel[0] if squeeze else mel


def _stats(config: MelConfig, like: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.tensor(config.mean, dtype=like.dtype, device=like.device)[:, None]
    std = torch.tensor(config.std, dtype=like.dtype, device=like.device)[:, None]
    return mean, std


def compress(linear: Tensor, config: MelConfig) -> Tensor:
    """Linear mel -> stored features: clamp, log, dB reference, normalisation."""
    x = linear
    if config.log != "none":
        x = torch.clamp(x, min=config.log_floor)
        if config.log == "ln":
            x = torch.log(x)
        elif config.log == "log10":
            x = torch.log10(x)
        else:
            x = 20.0 * torch.log10(x) - config.ref_level_db
    if config.normalize == "minmax":
        x = torch.clamp((x - config.min_level_db) / -config.min_level_db, 0.0, 1.0)
    elif config.normalize == "meanvar":
        mean, std = _stats(config, x)
        x = (x - mean) / std
    return x


def decompress(mel: Tensor, config: MelConfig) -> Tensor:
    """Stored features -> linear mel; the exact inverse of :func:`compress` away from clamps and clips."""
    x = mel
    if config.normalize == "minmax":
        x = x * -config.min_level_db + config.min_level_db
    elif config.normalize == "meanvar":
        mean, std = _stats(config, x)
        x = x * std + mean
    if config.log == "ln":
        x = torch.exp(x)
    elif config.log == "log10":
        x = torch.pow(10.0, x)
    elif config.log == "db":
        x = torch.pow(10.0, (x + config.ref_level_db) / 20.0)
    return x


def mel_spectrogram(audio: Tensor, config: MelConfig) -> Tensor:
    """Mel features of ``audio`` (``[T]`` or ``[B, T]``, floats in [-1, 1]) under ``config``.

    Returns ``[n_mels, frames]`` or ``[B, n_mels, frames]``, float32 (float64 for float64 input);
    half-precision input is computed in float32.
    """
    return compress(linear_mel(audio, config), config)


def reference_signal(sample_rate: int = 22050, seconds: float = 1.0) -> Tensor:
    """A fixed test signal (a chirp plus a deterministic pseudo-noise) for checking feature extractors."""
    n = int(round(sample_rate * seconds))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    chirp = 0.4 * torch.sin(2 * math.pi * (100.0 * t + 0.5 * (4000.0 - 100.0) / seconds * t * t))
    noise = 0.05 * torch.sin(t * 12345.678) * torch.cos(t * 9876.543 + 1.0)
    return (chirp + noise).float()


def reference_hash(config: MelConfig, decimals: int = 3) -> str:
    """sha256 (16 hex) of the features of :func:`reference_signal` rounded to ``decimals``.

    Anyone can compute the same features with their own extractor, round them the same way and compare.
    """
    feats = mel_spectrogram(reference_signal(config.sample_rate).double(), config)
    rounded = torch.round(feats * 10**decimals).to(torch.int64).numpy().tobytes()
    return hashlib.sha256(rounded).hexdigest()[:16]


class MelSpectrogram(nn.Module):
    """``nn.Module`` wrapper of :func:`mel_spectrogram` (follows ``.to(device)``)."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("_device_marker", torch.zeros(0), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:  # type: ignore[override]
        return mel_spectrogram(audio.to(self._device_marker.device), self.config)


# ---------------------------------------------------------------------- presets
PRESETS: dict[str, MelConfig] = {
    # jik876/hifi-gan meldataset.py: reflect pad (n_fft-hop)/2, center=False, sqrt(|X|^2 + 1e-9),
    # slaney mel 0-8000 Hz, ln(clamp(x, 1e-5)).
    "hifigan": MelConfig(magnitude_eps=1e-9),
    # NVIDIA tacotron2 layers.TacotronSTFT (WaveGlow's features): reflect pad n_fft/2 (centred),
    # magnitude, librosa slaney mel 0-8000 Hz, ln(clamp(x, 1e-5)).
    "tacotron2": MelConfig(padding="center"),
    # r9y9 wavenet_vocoder 2092a64 audio.py (the published LJSpeech checkpoint): magnitude STFT (lws in the
    # original; a centred reflect STFT here, an approximation at the frame edges), slaney mel 125-7600 Hz,
    # 20*log10(max(1e-5, x)) - 20, then clip((x + 100) / 100, 0, 1).
    "r9y9": MelConfig(f_min=125.0, f_max=7600.0, padding="center", log="db", log_floor=1e-5, ref_level_db=20.0,
                      normalize="minmax", min_level_db=-100.0),
    # ksw0306 FloWaveNet / ClariNet preprocessing.py: librosa power mel (center=True, reflect), 125-7600 Hz,
    # 20*log10(max(1e-4, S)) - 20, clip((S + 100) / 100, 0, 1).
    "flowavenet": MelConfig(f_min=125.0, f_max=7600.0, power=2.0, padding="center", log="db", log_floor=1e-4,
                            ref_level_db=20.0, normalize="minmax", min_level_db=-100.0),
    # kan-bayashi ParallelWaveGAN LJSpeech recipes: log10(max(1e-10, mel(|STFT|))), 80-7600 Hz, centred
    # reflect STFT; the recipes then mean/variance-normalise with corpus statistics (not part of this preset).
    "pwg_ljspeech": MelConfig(f_min=80.0, f_max=7600.0, padding="center", log="log10", log_floor=1e-10),
    # torchaudio.pipelines Tacotron 2 bundles (WaveRNN/Griffin-Lim vocoders): 22050 Hz, n_fft 1024, hop 256,
    # 80 mels 0-8000 Hz, slaney scale and norm, magnitude, centred, ln(clamp(x, 1e-5)).
    "torchaudio_tacotron2": MelConfig(padding="center"),
}
