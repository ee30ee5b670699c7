"""Every public entry point under ``torch.inference_mode()``, ``torch.no_grad()`` and grad mode, on every
architecture (one parametrized matrix), and streaming of the stochastic models: streamed chunks equal
one-shot vocoding with the same seed, because the noise is drawn by position (zoo.core.noise)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.griffinlim import GriffinLim, GriffinLimConfig
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig
from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig
from zoo_plugins.wavenet import WaveNet, WaveNetConfig

import zoo
from zoo.audio.denoiser import Denoiser
from zoo.core.stream import context_window, measure_context, stream, vocode_long
from zoo.core.vocoder import Vocoder
from zoo.runtime.export import export
from zoo.testing import make_mel_dependent

ARCHS = ["griffinlim", "hifigan", "waveglow", "flowavenet", "parallel_wavenet", "wavenet"]
STOCHASTIC = ["waveglow", "flowavenet", "parallel_wavenet"]
MODES: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "grad": torch.enable_grad,
}
ENTRY_POINTS = ["vocode", "__call__", "stream", "vocode_long", "mel", "denoise", "export", "check_mel", "adapt"]


@functools.cache
def model(arch: str) -> Vocoder:
    """A tiny model of ``arch`` whose output depends on the mel (end layers not left at zero)."""
    torch.manual_seed(0)
    voc: Vocoder = {
        "griffinlim": lambda: GriffinLim(GriffinLimConfig(n_iter=2)),
        "hifigan": lambda: HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)),
        "waveglow": lambda: WaveGlow(WaveGlowConfig.small(n_channels=8, n_layers=2, n_flows=2)),
        "flowavenet": lambda: FloWaveNet(FloWaveNetConfig.small(filter_size=8, n_block=2, n_flow=1)),
        "parallel_wavenet": lambda: ParallelWaveNet(ParallelWaveNetConfig(
            flow_layers=(2, 2), residual_channels=4, gate_channels=8, skip_channels=4, front_kernel_size=4)),
        "wavenet": lambda: WaveNet(WaveNetConfig.small("gaussian", layers=2, stacks=1, residual_channels=4,
                                                       gate_channels=8, skip_channels=4)),
    }[arch]()
    return make_mel_dependent(voc).eval().prepare_for_inference()


def mel_of(voc: Vocoder, frames: int, seed: int = 0) -> torch.Tensor:
    n = frames * voc.hop_length
    t = torch.arange(n) / voc.sample_rate
    noise = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return voc.mel(0.3 * torch.sin(2 * torch.pi * 180 * t * (1 + t)) + 0.02 * noise)[:, :frames]


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def run_entry(entry: str, voc: Vocoder, tmp: Path) -> object:
    mel = mel_of(voc, 9)
    if entry == "vocode":
        return voc.vocode(mel, generator=gen())[0]
    if entry == "__call__":
        return voc(mel[None], generator=gen())[0]
    if entry == "stream":
        return torch.cat(list(voc.stream([mel[:, :4], mel[:, 4:5], mel[:, 5:]], generator=gen())))
    if entry == "vocode_long":
        return vocode_long(voc, mel, chunk_frames=4, generator=gen())
    if entry == "mel":
        return voc.mel(0.1 * torch.sin(torch.arange(3 * voc.hop_length) * 0.05), sample_rate=voc.sample_rate)
    if entry == "denoise":
        audio = voc.vocode(mel, generator=gen())[0]
        return Denoiser(voc, frames=8)(audio, strength=0.5)
    if entry == "export":
        path = export(voc, "torchscript", tmp / f"{voc.architecture}.pt")
        return torch.jit.load(str(path))(mel[None], *_noise_input(voc, mel))
    if entry == "check_mel":
        return zoo.check_mel(voc, "pwg_ljspeech").differences
    if entry == "adapt":
        m = voc.mel_config
        dst = m.replace(ref_level_db=m.ref_level_db + 5.0) if m.log == "db" else m.replace(log="log10")
        return zoo.adapt(zoo.adapt(mel, voc.mel_config, dst), dst, voc.mel_config)
    raise AssertionError(entry)


def _noise_input(voc: Vocoder, mel: torch.Tensor) -> tuple[torch.Tensor, ...]:
    samples = mel.shape[-1] * voc.hop_length
    if voc.architecture == "waveglow":
        g = voc.config.n_group  # type: ignore[attr-defined]
        return (torch.randn(1, g, samples // g, generator=gen()),)
    if voc.architecture in STOCHASTIC:
        return (torch.randn(1, 1, samples, generator=gen()),)
    return ()


def _refused(arch: str, entry: str) -> str | None:
    """The clear error an entry point gives by design on an architecture (None: it must work)."""
    if arch == "wavenet" and entry == "export":
        return "autoregressive"
    if arch == "griffinlim" and entry == "export":
        return "not exportable"
    return None


@functools.cache
def reference(arch: str, entry: str, tmp: Path) -> object:
    with torch.no_grad():
        return run_entry(entry, model(arch), tmp)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("arch", ARCHS)
def test_entry_point_under_autograd_mode(arch, mode, entry, tmp_path_factory):
    """The entry point runs in the mode and gives what it gives under no_grad (or its documented refusal)."""
    voc = model(arch)
    tmp = tmp_path_factory.mktemp(f"{arch}-{mode}-{entry}")
    refusal = _refused(arch, entry)
    with MODES[mode]():
        if refusal is not None:
            with pytest.raises(ValueError, match=refusal):
                run_entry(entry, voc, tmp)
            return
        out = run_entry(entry, voc, tmp)
    expected = reference(arch, entry, tmp_path_factory.getbasetemp())
    if isinstance(out, torch.Tensor):
        assert isinstance(expected, torch.Tensor) and out.shape == expected.shape
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    else:
        assert out == expected


@pytest.mark.parametrize("arch", ["griffinlim", "hifigan", *STOCHASTIC, "wavenet"])
def test_stream_equals_one_shot_with_the_same_seed(arch):
    """Chunks of awkward sizes, streamed inside inference_mode, equal one-shot vocoding with the same seed;
    another seed gives other audio (so the equality is not that of a model ignoring its noise). WaveNet streams
    by carrying its sampling state from chunk to chunk (Vocoder.open_stream)."""
    voc = model(arch)
    mel = mel_of(voc, 24, seed=3)
    sizes = [1, 7, 3, 11, 2]
    chunks, i = [], 0
    for s in sizes:
        chunks.append(mel[:, i: i + s])
        i += s
    assert i == mel.shape[-1]
    with torch.inference_mode():
        streamed = torch.cat(list(stream(voc, chunks, generator=torch.Generator().manual_seed(11))))
    one_shot = voc.vocode(mel, generator=torch.Generator().manual_seed(11))[0]
    assert streamed.shape == one_shot.shape
    torch.testing.assert_close(streamed, one_shot, atol=1e-4, rtol=1e-4)
    if arch in STOCHASTIC or arch == "wavenet":
        other = voc.vocode(mel, generator=torch.Generator().manual_seed(12))[0]
        assert (other - one_shot).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["hifigan", *STOCHASTIC])
def test_context_from_geometry_covers_the_measured_one(arch):
    """Each model's ``context_frames()`` (from its layer geometry) covers the receptive field measured by
    perturbing one frame, under inference_mode; and too little context breaks the stream's equality."""
    voc = model(arch)
    with torch.inference_mode():
        left, right = measure_context(voc, probe_frames=16)
    own_left, own_right = context_window(voc)
    assert left <= own_left and right <= own_right, ((left, right), (own_left, own_right))
    assert max(left, right) >= 2, "the measurement should see a receptive field wider than one frame"
    mel = mel_of(voc, 24, seed=4)
    chunks = [mel[:, i: i + 8] for i in range(0, 24, 8)]
    one_shot = voc.vocode(mel, generator=torch.Generator().manual_seed(1))[0]
    short = torch.cat(list(stream(voc, chunks, context=(0, 0), generator=torch.Generator().manual_seed(1))))
    assert (short - one_shot).abs().max() > 1e-4


def test_noise_depends_only_on_seed_and_position():
    from zoo.core.noise import BLOCK, noise_blocks

    whole = noise_blocks(5, 2, 3, 0, 2 * BLOCK + 100)
    for start, length in [(0, 1), (BLOCK - 3, 9), (BLOCK, BLOCK), (2 * BLOCK + 50, 50), (17, 0)]:
        assert torch.equal(noise_blocks(5, 2, 3, start, length), whole[..., start: start + length])
    assert not torch.equal(noise_blocks(6, 2, 3, 0, 64), whole[..., :64])
    assert abs(float(whole.mean())) < 0.05 and abs(float(whole.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="positions"):
        noise_blocks(5, 1, 1, -1, 4)

