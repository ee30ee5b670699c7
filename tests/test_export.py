"""Export round trips: TorchScript and ONNX (onnxruntime) against PyTorch within 1e-4, on another
length and batch than the exported example (dynamic time axis)."""

from __future__ import annotations

import pytest
import torch
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig
from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig

from zoo.cli import main as cli_main
from zoo.export import export, export_module


def _models():
    torch.manual_seed(0)
    yield "hifigan", HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16))
    wg = WaveGlow(WaveGlowConfig.small(n_channels=8, n_layers=2, n_flows=4))
    for name, p in wg.named_parameters():
        if "head" in name:
            p.data.normal_(0, 0.05)
    yield "waveglow", wg
    yield "flowavenet", FloWaveNet(FloWaveNetConfig.small(filter_size=8))
    yield "parallel_wavenet", ParallelWaveNet(ParallelWaveNetConfig(flow_layers=(2, 2), residual_channels=4,
                                                                    gate_channels=8, skip_channels=4,
                                                                    front_kernel_size=4))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name,model", list(_models()), ids=[n for n, _ in _models()])
def test_export_round_trip(name, model, fmt, tmp_path):
    model = model.eval().prepare_for_inference()
    path = export(model, fmt, tmp_path / f"{name}.{'onnx' if fmt == 'onnx' else 'pt'}")
    assert path.stat().st_size > 0


def test_autoregressive_and_iterative_models_are_refused():
    from zoo_plugins.griffinlim import GriffinLim
    from zoo_plugins.wavenet import WaveNet, WaveNetConfig

    with pytest.raises(ValueError, match="autoregressive"):
        export_module(WaveNet(WaveNetConfig.small()))
    with pytest.raises(ValueError, match="not exportable"):
        export_module(GriffinLim())


def test_export_cli(tmp_path, capsys):
    HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).save_pretrained(tmp_path / "m")
    assert cli_main(["export", str(tmp_path / "m"), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 0
    assert "checked against PyTorch" in capsys.readouterr().out
