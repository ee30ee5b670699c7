"""Working with TTS models: streaming equals one-shot with bounded windows, the mel contract checks and
adapters (exact round trips, the PWG convention case), and the generic denoiser."""

from __future__ import annotations

import pytest
import torch
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig

import zoo
from zoo.audio.adapt import adapt, check_mel
from zoo.audio.denoiser import Denoiser
from zoo.core.mel import MelConfig, mel_spectrogram
from zoo.core.stream import context_frames, stream, vocode_long


def _tiny() -> HiFiGAN:
    torch.manual_seed(0)
    return HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).eval()


def test_stream_equals_one_shot_real_hifigan(eval_dir):
    import soundfile as sf

    voc = zoo.load("hifigan")
    audio, _ = sf.read(str(eval_dir / "LJ001-0003.wav"), dtype="float32", frames=22050 * 3)
    mel = voc.mel(torch.from_numpy(audio))
    one_shot = voc.vocode(mel)[0]
    chunks = [mel[:, i: i + 23] for i in range(0, mel.shape[-1], 23)]
    streamed = torch.cat(list(voc.stream(chunks)))
    assert streamed.shape == one_shot.shape
    assert (streamed - one_shot).abs().max().item() < 1e-4


def test_context_is_measured_and_windows_stay_bounded(monkeypatch):
    voc = _tiny()
    ctx = context_frames(voc)
    assert 5 < ctx < 60
    # 60 s of mel frames: every window handed to the model is at most chunk + 2 * context frames long.
    frames = 60 * 22050 // 256
    mel = torch.randn(80, frames) - 4.0
    sizes: list[int] = []
    original = HiFiGAN.vocode

    def spy(self, m, *a, **k):
        sizes.append(m.shape[-1])
        return original(self, m, *a, **k)

    monkeypatch.setattr(HiFiGAN, "vocode", spy)
    out = vocode_long(voc, mel, chunk_frames=200)
    monkeypatch.setattr(HiFiGAN, "vocode", original)
    assert out.shape == (frames * 256,)
    assert max(sizes) <= 200 + 2 * ctx
    ref = voc.vocode(mel[:, :600])[0]
    assert (out[: 400 * 256] - ref[: 400 * 256]).abs().max().item() < 1e-5


def test_stream_refuses_autoregressive_models_without_a_session():
    """An autoregressive model that does not implement Vocoder.open_stream cannot be vocoded in windows: stream,
    vocode_long and context_frames refuse it with a one-line ValueError (WaveNet implements it)."""
    from zoo.core.vocoder import Vocoder

    class Recurrent(Vocoder):
        parallel = False

        def synthesize(self, mel, *, generator=None, **sampling):
            return torch.zeros(mel.shape[0], mel.shape[-1] * self.hop_length).cumsum(-1)

    voc = Recurrent()
    mel = torch.zeros(voc.mel_config.n_mels, 4)
    with pytest.raises(ValueError, match="autoregressive and does not implement open_stream"):
        list(stream(voc, [mel]))
    with pytest.raises(ValueError, match="autoregressive and does not implement open_stream"):
        vocode_long(voc, mel)
    with pytest.raises(ValueError, match="autoregressive"):
        context_frames(voc)


def test_check_mel_reports_pwg_differences():
    report = check_mel(zoo.load("hifigan"), "pwg_ljspeech")
    assert {"f_min", "f_max", "log", "log_floor", "padding"} <= set(report.differences)
    assert "f_max" in report.impossible and "f_min" in report.impossible
    assert "log" in report.exact
    assert not report.adaptable
    assert check_mel(MelConfig.preset("hifigan"), "hifigan").compatible


@pytest.mark.parametrize("target", [
    dict(log="log10"),
    dict(log="db", ref_level_db=20.0, normalize="minmax", min_level_db=-100.0, log_floor=1e-4),
    dict(normalize="meanvar", mean=tuple(float(i % 5) for i in range(80)), std=tuple(1.0 + i / 80 for i in range(80))),
], ids=["log10", "db-minmax", "meanvar"])
def test_exact_adapters_round_trip(target):
    src = MelConfig.preset("hifigan")
    dst = src.replace(**target)
    noise = torch.randn(22050, generator=torch.Generator().manual_seed(0))
    audio = 0.3 * torch.sin(torch.arange(22050) * 0.05) + 0.05 * noise
    mel_src = mel_spectrogram(audio, src)
    converted = adapt(mel_src, src, dst)
    torch.testing.assert_close(converted, mel_spectrogram(audio, dst), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(adapt(converted, dst, src), mel_src, atol=1e-4, rtol=1e-4)


def test_adapted_features_vocode_within_5_percent(eval_dir):
    """HiFi-GAN fed log10, [0, 1]-normalised dB features (differing only in log base and normalisation),
    adapted back: copy-synthesis MR-STFT stays within 5% of the native result."""
    from zoo.audio.metrics import mr_stft_distance
    from zoo.train.data import load_audio

    voc = zoo.load("hifigan")
    other = voc.mel_config.replace(log="db", ref_level_db=20.0, normalize="minmax", min_level_db=-100.0)
    native, adapted = [], []
    clips = sorted(eval_dir.glob("*.wav"))[:3]
    assert len(clips) == 3, f"need 3 evaluation clips in {eval_dir}"
    for path in clips:
        clip = load_audio(path, 22050)[: 22050 * 3]
        native.append(mr_stft_distance(voc.vocode(voc.mel(clip))[0], clip))
        foreign = mel_spectrogram(clip, other)
        adapted.append(mr_stft_distance(voc.vocode(adapt(foreign, other, voc.mel_config))[0], clip))
    n, a = sum(native) / 3, sum(adapted) / 3
    assert n > 0.1, f"the native copy-synthesis distance {n} is implausibly small"
    assert a <= 1.05 * n, (n, a)


def test_denoiser_removes_bias_and_is_identity_at_zero():
    voc = _tiny()
    den = Denoiser(voc)
    audio = voc.vocode(torch.zeros(80, 40))[0]  # the model's own bias response
    assert (den(audio, strength=0.0) - audio).abs().max().item() < 1e-4
    cleaned = den(audio, strength=1.0)
    assert cleaned.pow(2).mean() < 0.5 * audio.pow(2).mean()
    with pytest.raises(ValueError, match="strength"):
        den(audio, strength=-1.0)


def test_denoiser_measures_the_bias_with_the_models_own_sampling_options():
    """WaveGlow states ``denoiser_sampling = {"sigma": 0.0}`` (NVIDIA's denoiser): its bias is the response to a
    zero mel *without* noise, whatever the generator; an explicit option still overrides it."""
    from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig

    from zoo.audio.denoiser import silent_mel
    from zoo.testing import make_mel_dependent

    torch.manual_seed(0)
    voc = make_mel_dependent(WaveGlow(WaveGlowConfig.small(n_channels=8, n_layers=2, n_flows=4))).eval()
    assert voc.denoiser_sampling == {"sigma": 0.0}
    den = Denoiser(voc, frames=8)
    mel = silent_mel(voc, 8, "zeros")
    noiseless = voc.vocode(mel, sigma=0.0)[0].float()
    torch.testing.assert_close(den.bias_spec, den._stft(noiseless).abs()[..., :1])
    noisy = Denoiser(voc, frames=8, sigma=0.7)
    assert (noisy.bias_spec - den.bias_spec).abs().max() > 1e-3
