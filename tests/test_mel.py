"""The mel front-end: every preset against an independent librosa/numpy computation, the frame-count
rule, serialisation, fingerprints, compress/decompress, and input checks."""

from __future__ import annotations

import librosa  # noqa: E402  (a test extra)
import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.core.mel import PRESETS, MelConfig, MelSpectrogram, compress, decompress, mel_spectrogram, reference_hash


@pytest.fixture(scope="module")
def clip(eval_dir) -> np.ndarray:
    audio, sr = sf.read(str(eval_dir / "LJ001-0001.wav"), dtype="float64", frames=22050 * 2)
    assert sr == 22050
    return audio


def _librosa_features(y: np.ndarray, c: MelConfig) -> np.ndarray:
    left, right = c.padding_amounts()
    padded = np.pad(y, (left, right), mode=c.pad_mode) if (left or right) else y
    spec = np.abs(librosa.stft(padded, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win, window="hann",
                               center=False))
    if c.magnitude_eps:
        spec = np.sqrt(spec**2 + c.magnitude_eps)
    spec = spec**c.power
    fb = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.f_min,
                             fmax=c.f_max if c.f_max is not None else c.sample_rate / 2,
                             htk=c.mel_scale == "htk", norm="slaney" if c.mel_norm else None)
    m = np.maximum(fb @ spec, c.log_floor)
    if c.log == "ln":
        m = np.log(m)
    elif c.log == "log10":
        m = np.log10(m)
    elif c.log == "db":
        m = 20 * np.log10(m) - c.ref_level_db
    if c.normalize == "minmax":
        m = np.clip((m - c.min_level_db) / -c.min_level_db, 0, 1)
    return m


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_match_librosa(name, clip):
    c = MelConfig.preset(name)
    ours = mel_spectrogram(torch.from_numpy(clip), c).numpy()
    ref = _librosa_features(clip, c)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4
    ours32 = mel_spectrogram(torch.from_numpy(clip).float(), c).numpy()
    assert np.abs(ours32 - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_frame_count_rule(name):
    c = MelConfig.preset(name)
    for n in (1024, 1025, 2000, 4096, 10_001):
        assert mel_spectrogram(torch.zeros(n) + 1e-3, c).shape == (c.n_mels, c.num_frames(n))
    if c.padding == "hifigan":
        assert c.num_frames(256 * 40) == 40
    if c.padding == "center":
        assert c.num_frames(256 * 40) == 41


def test_serialisation_fingerprint_and_diff():
    c = MelConfig.preset("r9y9")
    assert MelConfig.from_dict(c.to_dict()) == c
    assert c.fingerprint() == MelConfig.from_dict(c.to_dict()).fingerprint()
    assert c.fingerprint() != c.replace(f_max=8000.0).fingerprint()
    assert c.diff(c.replace(n_mels=64)) == {"n_mels": (80, 64)}
    assert MelConfig(win_length=None).diff(MelConfig(win_length=1024)) == {}
    with pytest.raises(ValueError, match=r"^MelConfig: unknown keys \['fmax'\]; known keys: \[.*'f_max'"):
        MelConfig.from_dict({**c.to_dict(), "fmax": 1})
    with pytest.raises(ValueError, match="unknown mel preset"):
        MelConfig.preset("nope")
    stats = MelConfig(normalize="meanvar", mean=[0.0] * 80, std=[1.0] * 80)
    assert MelConfig.from_dict(stats.to_dict()) == stats and isinstance(stats.mean, tuple)


@pytest.mark.parametrize("kwargs,match", [
    (dict(f_max=12000.0), "Nyquist"),
    (dict(win_length=2048), "win_length"),
    (dict(log="log2"), "log must be"),
    (dict(padding="same"), "padding"),
    (dict(normalize="meanvar"), "mean and std"),
    (dict(normalize="meanvar", mean=(0.0,), std=(1.0,)), "n_mels"),
    (dict(hop_length=0), "positive"),
])
def test_invalid_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MelConfig(**kwargs)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_compress_decompress_round_trip(name):
    c = MelConfig.preset(name)
    lin = torch.rand(80, 30, dtype=torch.float64) + 0.01  # inside the clamps
    torch.testing.assert_close(decompress(compress(lin, c), c), lin, atol=1e-9, rtol=1e-9)


def test_batch_equals_single_and_module():
    c = MelConfig.preset("hifigan")
    x = 0.1 * torch.randn(3, 5000, generator=torch.Generator().manual_seed(0))
    batch = mel_spectrogram(x, c)
    for i in range(3):
        torch.testing.assert_close(batch[i], mel_spectrogram(x[i], c))
    torch.testing.assert_close(MelSpectrogram(c)(x), batch)
    assert len(reference_hash(c)) == 16 and reference_hash(c) == reference_hash(MelConfig.preset("hifigan"))


@pytest.mark.parametrize("audio,match", [
    (torch.zeros(2, 3, 100), "samples"),
    (torch.zeros(100, dtype=torch.int16), "floating"),
    (torch.tensor([float("nan")] * 2000), "NaN"),
    (torch.zeros(10), "too short"),
    (torch.zeros(0), "empty"),
    (np.zeros(2000), "torch.Tensor"),
])
def test_bad_audio(audio, match):
    with pytest.raises(ValueError, match=match):
        mel_spectrogram(audio, MelConfig.preset("hifigan"))
