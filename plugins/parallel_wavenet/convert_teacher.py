"""ClariNet's Gaussian teacher (``wavenet.Wavenet``) -> a zoo ``wavenet`` model.

The teacher is a WaveNet plugin model: front conv (kernel 32, causal) + ReLU, ``num_blocks`` x
``num_layers`` gated layers with dilation ``kernel_size ** (i % num_layers)``, residual scale sqrt(0.5),
summed skips, head ReLU-1x1-ReLU-1x1 to ``[mean, log_std]`` (log_std clamped at -9 in the loss), and
the 2-D transposed-conv upsampler (``ConvTranspose2d(1, 1, (3, 2 s), (1, s), (1, s // 2))`` + LeakyReLU 0.4).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from zoo_plugins.parallel_wavenet.convert import (
    body_to_zoo,
    check_layout,
    config_mel,
    config_num_layers,
    infer_body,
    reference_teacher_keys,
    upsample_scales,
    upsampler_to_zoo,
)

from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.hub.converting import load_converted
from zoo.hub.weightnorm import fold_state_dict


def clarinet_teacher_config(
    layers: int,
    num_layers: int,
    residual: int,
    gate: int,
    skip: int,
    kernel: int = 2,
    front_kernel: int = 32,
    cin: int = 80,
    scales: tuple[int, ...] = (16, 16),
    mel: MelConfig | None = None,
) -> VocoderConfig:
    """The ``wavenet`` config of ClariNet's teacher (ClariNet widths: ``gate`` is each gated half)."""
    from zoo.registry.plugins import get_registry

    cls = get_registry().architecture("wavenet").cls
    mel = mel or MelConfig.preset("flowavenet")
    if mel.n_mels != cin:
        mel = mel.replace(n_mels=cin)
    return cls.config_class.clarinet(
        mel=mel,
        layers=layers,
        stacks=layers // num_layers,
        residual_channels=residual,
        gate_channels=2 * gate,
        skip_channels=skip,
        kernel_size=kernel,
        front_kernel_size=front_kernel,
        output_distribution="gaussian",
        upsample_scales=tuple(scales),
    )


def convert_teacher(state: dict[str, Tensor], config: dict[str, Any] | None = None) -> Vocoder:
    """A ``wavenet`` model (Gaussian output, ClariNet layout) from a ClariNet teacher state dict."""
    from zoo.registry.plugins import get_registry

    config = dict(config or {})
    hp = infer_body(state)
    num_layers = config_num_layers(config)
    if hp["layers"] % num_layers:
        raise ValueError(
            f"the teacher has {hp['layers']} layers, not whole blocks of num_layers={num_layers}; "
            f"pass config={{'num_layers': N}}"
        )
    if hp["out"] != 2:
        raise ValueError(
            f"the ClariNet teacher outputs [mean, log_std] (2 channels), this one has {hp['out']}"
        )
    scales = upsample_scales(state)
    check_layout(
        state,
        reference_teacher_keys(
            hp["layers"] // num_layers,
            num_layers,
            hp["residual"],
            hp["gate"],
            hp["skip"],
            hp["kernel"],
            hp["cin"],
            scales,
            hp["out"],
            hp["front_kernel"],
        ),
        "the teacher checkpoint",
    )
    cfg = clarinet_teacher_config(
        hp["layers"],
        num_layers,
        hp["residual"],
        hp["gate"],
        hp["skip"],
        hp["kernel"],
        hp["front_kernel"],
        hp["cin"],
        scales,
        config_mel(config),
    )
    model = get_registry().architecture("wavenet").cls(cfg)
    folded = fold_state_dict(state)
    new = body_to_zoo(folded, "", hp["layers"])
    for name, value in upsampler_to_zoo(folded).items():
        new[f"upsample.{name}"] = value
    return load_converted(model, new, "converted ClariNet teacher")


__all__ = ["convert_teacher"]
