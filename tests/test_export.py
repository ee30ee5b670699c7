"""Export round trips: TorchScript and ONNX (onnxruntime) against PyTorch within 1e-4, on another
length and batch than the exported example (dynamic time axis)."""

from __future__ import annotations

import pytest
import torch
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig
from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig

from zoo.cli.app import main as cli_main
from zoo.runtime.export import export, export_module
from zoo.testing import make_mel_dependent


def _models():
    torch.manual_seed(0)
    yield "hifigan", HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16))
    # Untrained flows ignore the mel (zero-initialised end layers): give those layers values, so that an
    # export dropping the conditioning would differ.
    yield "waveglow", make_mel_dependent(WaveGlow(WaveGlowConfig.small(n_channels=8, n_layers=2, n_flows=4)))
    yield "flowavenet", make_mel_dependent(FloWaveNet(FloWaveNetConfig.small(filter_size=8)))
    yield "parallel_wavenet", make_mel_dependent(ParallelWaveNet(ParallelWaveNetConfig(
        flow_layers=(2, 2), residual_channels=4, gate_channels=8, skip_channels=4, front_kernel_size=4)))


def _noise_scale(model) -> float:
    cfg = model.config
    return {"waveglow": getattr(cfg, "infer_sigma", 1.0), "flowavenet": 0.8}.get(
        model.architecture, getattr(cfg, "infer_temperature", 1.0))


def _run(fmt: str, path, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The exported file run by its own runtime, independently of zoo.runtime.export."""
    if fmt == "torchscript":
        return torch.jit.load(str(path))(*inputs)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    return torch.from_numpy(sess.run(None, feeds)[0])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name,model", list(_models()), ids=[n for n, _ in _models()])
def test_export_round_trip(name, model, fmt, tmp_path):
    """The exported graph, run on a batch and length other than the exported example's, gives what
    ``vocode`` gives: the stochastic models fed the noise ``vocode`` draws (zoo.core.noise, seed 3) scaled by their
    default sigma / temperature; and it follows the mel (another mel gives other audio)."""
    from zoo.core.noise import noise_at, noise_blocks

    model = model.eval().prepare_for_inference()
    path = export(model, fmt, tmp_path / f"{name}.{'onnx' if fmt == 'onnx' else 'pt'}")
    g = torch.Generator().manual_seed(1)
    mel = torch.randn(2, 80, 11, generator=g) - 4.0
    with noise_at(3, 0):
        expected = model.vocode(mel)[0]
    inputs: tuple[torch.Tensor, ...] = (mel,)
    if name != "hifigan":
        channels = model.config.n_group if name == "waveglow" else 1
        z = noise_blocks(3, 2, channels, 0, 11 * model.hop_length // channels)
        inputs = (mel, _noise_scale(model) * z)
    got = _run(fmt, path, inputs)
    assert got.shape == expected.shape == (2, 11 * model.hop_length)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    other = _run(fmt, path, (torch.randn(2, 80, 11, generator=g) - 4.0, *inputs[1:]))
    assert (other - got).abs().max() > 1e-4 * got.abs().max(), "the exported model does not depend on the mel"


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


def test_a_third_party_stochastic_vocoder_exports_through_the_contract(tmp_path):
    """export knows no architecture by name: a plugin's own stochastic vocoder that states its
    ``noise_shape`` and ``synthesize_from_noise`` exports with the noise as the second input, and one that
    states an ``export_refusal`` is refused with its reason."""
    import dataclasses

    from zoo.core.config import VocoderConfig
    from zoo.core.mel import MelConfig
    from zoo.core.noise import position_noise
    from zoo.core.vocoder import Vocoder

    @dataclasses.dataclass
    class BuzzConfig(VocoderConfig):
        mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))

    class Buzz(Vocoder[BuzzConfig]):
        architecture = "buzz"
        deterministic = False

        def __init__(self) -> None:
            super().__init__(BuzzConfig())
            self.proj = torch.nn.Linear(80, 256)

        def noise_shape(self, batch: int, frames: int) -> tuple[int, ...]:
            return (batch, 2, frames * 128)

        def synthesize_from_noise(self, mel, z):
            envelope = self.proj(mel.transpose(1, 2)).reshape(mel.shape[0], -1)
            return envelope * z.transpose(1, 2).reshape(mel.shape[0], -1)

        def synthesize(self, mel, *, generator=None, **sampling):
            frames = mel.shape[-1]
            z = position_noise(generator, mel.shape[0], 2, frames * 128, frames, dtype=mel.dtype)
            return self.synthesize_from_noise(mel, z)

    voc = Buzz().eval()
    path = export(voc, "torchscript", tmp_path / "buzz.pt")
    mel, z = torch.randn(3, 80, 5), torch.randn(3, 2, 5 * 128)
    torch.testing.assert_close(torch.jit.load(str(path))(mel, z), voc.synthesize_from_noise(mel, z))

    class Refused(Buzz):
        export_refusal = "it needs a lookup table"

    with pytest.raises(ValueError, match="buzz is not exportable: it needs a lookup table"):
        export_module(Refused())
