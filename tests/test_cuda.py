"""The GPU sampling contract: every architecture runs with ``device="cuda"`` and a ``dtype``, and agrees with
its CPU float32 result on the same noise. Skipped cleanly where no CUDA device is available."""

from __future__ import annotations

import pytest
import torch
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig
from zoo_plugins.wavenet import WaveNet, WaveNetConfig

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _randomise(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 5e-2)])
def test_flows_on_cuda_match_cpu(dtype, tol):
    wg = _randomise(WaveGlow(WaveGlowConfig.small()))
    fw = _randomise(FloWaveNet(FloWaveNetConfig.small()))
    pw = _randomise(ParallelWaveNet(ParallelWaveNetConfig(flow_layers=(3, 3), residual_channels=8, gate_channels=16,
                                                          skip_channels=8)))
    mel = torch.rand(2, 80, 4)
    with torch.no_grad():
        z_wg = torch.randn(2, 8, 4 * wg.hop_length // 8)
        z = torch.randn(2, 1, 4 * fw.hop_length)
        cpu = [wg.reverse(z_wg, mel), fw.reverse(z, fw.upsample(mel)), pw.iaf(z, pw.upsample_mel(mel))[0]]
        for m in (wg, fw, pw):
            m.to("cuda", dtype)
        dev = [t.to("cuda", dtype) for t in (mel, z_wg, z)]
        gpu = [wg.reverse(dev[1], dev[0]), fw.reverse(dev[2], fw.upsample(dev[0])),
               pw.iaf(dev[2], pw.upsample_mel(dev[0]))[0]]
    for a, b in zip(cpu, gpu, strict=True):
        assert b.device.type == "cuda" and b.dtype == dtype
        torch.testing.assert_close(b.float().cpu(), a, atol=tol, rtol=tol)


def test_wavenet_samples_on_cuda_with_a_cuda_generator():
    model = _randomise(WaveNet(WaveNetConfig.small("mol")), 0.1).to("cuda")
    mel = torch.rand(1, 80, 2, device="cuda")
    a = model.vocode(mel, generator=torch.Generator("cuda").manual_seed(0))[0]
    b = model.vocode(mel, generator=torch.Generator("cuda").manual_seed(0))[0]
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert a.shape == (1, 2 * model.hop_length) and torch.isfinite(a).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_vocode_any_input_device_and_dtype(dtype):
    model = _randomise(WaveGlow(WaveGlowConfig.small())).to("cuda", getattr(torch, dtype))
    audio, lengths = model.vocode(torch.rand(2, 80, 3), [3, 2], generator=torch.Generator("cuda").manual_seed(0))
    assert audio.device.type == "cuda" and audio.dtype == model.audio_dtype == torch.float32  # at least float32
    assert lengths.tolist() == [3 * model.hop_length, 2 * model.hop_length]
    assert torch.isfinite(audio.float()).all()
