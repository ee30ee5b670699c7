"""Export parallel vocoders to TorchScript or ONNX, with a dynamic time axis, verified against PyTorch.

Weights are already plain (weight norm is folded when a zoo model is built or converted), so export
never meets the weight-norm hooks that break tracing. Stochastic models export their deterministic core
with the noise as an explicit second input (``z`` scaled by the caller's sigma/temperature):

``audio = f(mel)`` for a deterministic model (:meth:`~zoo.core.vocoder.Vocoder.synthesize`), and
``audio = f(mel, z)`` for a stochastic one, with ``z`` of the shape its
:meth:`~zoo.core.vocoder.Vocoder.noise_shape` states (WaveGlow: ``[B, n_group, frames * hop / n_group]``;
FloWaveNet and the Parallel WaveNet student: ``[B, 1, frames * hop]``) through its
:meth:`~zoo.core.vocoder.Vocoder.synthesize_from_noise`. The architectures say this themselves; this module
knows none by name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from zoo.core.vocoder import Vocoder


class _Deterministic(nn.Module):
    def __init__(self, voc: Vocoder) -> None:
        super().__init__()
        self.voc = voc

    def forward(self, mel: Tensor) -> Tensor:  # type: ignore[override]
        return self.voc.synthesize(mel)


class _WithNoise(nn.Module):
    def __init__(self, voc: Vocoder) -> None:
        super().__init__()
        self.voc = voc

    def forward(self, mel: Tensor, z: Tensor) -> Tensor:  # type: ignore[override]
        return self.voc.synthesize_from_noise(mel, z)


def example_inputs(voc: Vocoder, batch: int = 1, frames: int = 8) -> tuple[Tensor, ...]:
    """Inputs of the exported graph for ``frames`` mel frames (noise included for stochastic models)."""
    mel = torch.randn(batch, voc.mel_config.n_mels, frames, dtype=voc.dtype)
    shape = voc.noise_shape(batch, frames)
    return (mel,) if shape is None else (mel, torch.randn(*shape, dtype=voc.dtype))


def export_module(voc: Vocoder) -> nn.Module:
    """The module that gets exported for ``voc`` (raises ``ValueError`` for autoregressive models and for
    architectures that state an :attr:`~zoo.core.vocoder.Vocoder.export_refusal`)."""
    name = voc.architecture or type(voc).__name__
    if not voc.parallel:
        raise ValueError(f"{name} is autoregressive; only parallel vocoders can be exported")
    if voc.export_refusal is not None:
        raise ValueError(f"{name} is not exportable: {voc.export_refusal}")
    if voc.deterministic:
        return _Deterministic(voc).eval()
    if voc.noise_shape(1, 1) is None:
        raise ValueError(f"no export recipe for the stochastic architecture {name!r}: it states no noise_shape")
    return _WithNoise(voc).eval()


def export(voc: Vocoder, fmt: str, path: str | Path) -> Path:
    """Write ``voc`` as TorchScript (``.pt``) or ONNX (``.onnx``) and check it reproduces PyTorch (1e-4)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    voc = voc.eval()
    module = export_module(voc)
    example = example_inputs(voc)
    names = ["mel", "z"][: len(example)]
    if fmt == "torchscript":
        with torch.no_grad():
            scripted = torch.jit.trace(module, example, check_trace=False)
        scripted.save(str(path))
    elif fmt == "onnx":
        axes = {"mel": {0: "batch", 2: "frames"}, "audio": {0: "batch", 1: "samples"}}
        if len(example) == 2:
            axes["z"] = {0: "batch", 2: "steps"}
        with torch.no_grad():
            torch.onnx.export(module, example, str(path), input_names=names, output_names=["audio"],
                              dynamic_axes=axes, dynamo=False, opset_version=17)
    else:
        raise ValueError(f"format must be 'torchscript' or 'onnx', got {fmt!r}")
    verify_export(voc, fmt, path)
    return path


def run_exported(fmt: str, path: str | Path, inputs: tuple[Tensor, ...]) -> Tensor:
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path))(*inputs)
    import onnxruntime as ort  # optional (not a dependency of the zoo): only ONNX verification runs it

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs, strict=True)}
    return torch.from_numpy(sess.run(None, feeds)[0])


def verify_export(voc: Vocoder, fmt: str, path: str | Path, atol: float = 1e-4) -> float:
    """Max |exported - PyTorch| on an input of another length and batch than the one exported."""
    inputs = example_inputs(voc, batch=2, frames=13)
    with torch.no_grad():
        expected = export_module(voc)(*inputs)
    got = run_exported(fmt, path, inputs)
    diff = float((got - expected).abs().max())
    if got.shape != expected.shape or diff > atol:
        raise RuntimeError(f"exported {fmt} model differs from PyTorch: shape {tuple(got.shape)} vs "
                           f"{tuple(expected.shape)}, max diff {diff:g}")
    return diff
