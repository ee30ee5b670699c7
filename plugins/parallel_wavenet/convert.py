"""Converter ``clarinet``: ksw0306/ClariNet checkpoints -> zoo models.

* ``ckpt_teacher.pth`` (``wavenet.Wavenet``, Gaussian output) -> a ``wavenet`` model;
* ``ckpt_student.pth`` (``wavenet_iaf.Wavenet_Student``) -> a ``parallel_wavenet`` model. The reference
  student has no upsampler (it consumes the teacher's ``upsample(c)``), so the teacher's checkpoint is
  needed too: ``config={"teacher_checkpoint": path}``, or the one ``.pth`` beside the student whose
  state dict holds ``upsample_conv.*`` is used.

Checkpoints are ``{'state_dict', 'optimizer', 'global_step', 'global_epoch'}`` read with
``torch.load(weights_only=True)``; a ``module.`` prefix (DataParallel) is stripped and weight norm is
folded (``W = g v / ||v||``). Hyperparameters come from the tensor shapes, except the dilation cycle
(``num_layers``: ClariNet's layers per block, default 10, as in its README), which ``config`` may give.
``config["mel"]`` (a preset name or dict) overrides the default ``flowavenet`` features.

Key layout (reference name -> zoo name, inside a flow ``iafs.{k}.`` -> ``flows.{k}.``):
``front_conv.0.conv`` -> ``front``; ``res_blocks.{i}.filter_conv.conv`` ++ ``gate_conv.conv`` ->
``stack.layers.{i}.dilated`` (concatenated on the output axis: filter half first); every layer's
``filter_conv_c`` ++ ``gate_conv_c`` -> rows ``[i*2G, (i+1)*2G)`` of the fused ``stack.cond``;
``res_conv``/``skip_conv`` -> ``stack.layers.{i}.res``/``.skip``; ``final_conv.1.conv``/``.3.conv`` ->
``head1``/``head2``; ``upsample_conv.{0,2}`` -> the upsampler's two transposed convs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from zoo_plugins.parallel_wavenet.model import ParallelWaveNet, ParallelWaveNetConfig

from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.hub.converting import check_keys, load_converted, read_checkpoint, shapes
from zoo.hub.weightnorm import fold_state_dict

Shapes = dict[str, tuple[int, ...]]


# ---------------------------------------------------------------------- reference layouts
def _conv_keys(prefix: str, out_ch: int, in_ch: int, k: int, shapes: Shapes) -> None:
    shapes[f"{prefix}.bias"] = (out_ch,)
    shapes[f"{prefix}.weight_g"] = (out_ch, 1, 1)
    shapes[f"{prefix}.weight_v"] = (out_ch, in_ch, k)


def _wavenet_body_keys(prefix: str, hp: dict[str, int], layers: int, shapes: Shapes) -> None:
    r, g, s, k, cin, fk = (hp[n] for n in ("residual", "gate", "skip", "kernel", "cin", "front_kernel"))
    _conv_keys(f"{prefix}front_conv.0.conv", r, 1, fk, shapes)
    for i in range(layers):
        b = f"{prefix}res_blocks.{i}."
        _conv_keys(b + "filter_conv.conv", g, r, k, shapes)
        _conv_keys(b + "gate_conv.conv", g, r, k, shapes)
        _conv_keys(b + "res_conv", r, g, 1, shapes)
        _conv_keys(b + "skip_conv", s, g, 1, shapes)
        _conv_keys(b + "filter_conv_c", g, cin, 1, shapes)
        _conv_keys(b + "gate_conv_c", g, cin, 1, shapes)
    _conv_keys(f"{prefix}final_conv.1.conv", s, s, 1, shapes)
    _conv_keys(f"{prefix}final_conv.3.conv", hp["out"], s, 1, shapes)


def reference_teacher_keys(
    num_blocks: int,
    num_layers: int,
    residual_channels: int,
    gate_channels: int,
    skip_channels: int,
    kernel_size: int = 2,
    cin_channels: int = 80,
    upsample_scales: tuple[int, ...] = (16, 16),
    out_channels: int = 2,
    front_channels: int = 32,
) -> Shapes:
    """Key -> shape of ``wavenet.Wavenet(...)``'s state dict (ClariNet argument names)."""
    hp = {
        "residual": residual_channels,
        "gate": gate_channels,
        "skip": skip_channels,
        "kernel": kernel_size,
        "cin": cin_channels,
        "front_kernel": front_channels,
        "out": out_channels,
    }
    shapes: Shapes = {}
    _wavenet_body_keys("", hp, num_blocks * num_layers, shapes)
    for j, s in enumerate(upsample_scales):
        shapes[f"upsample_conv.{2 * j}.bias"] = (1,)
        shapes[f"upsample_conv.{2 * j}.weight_g"] = (1, 1, 1, 1)
        shapes[f"upsample_conv.{2 * j}.weight_v"] = (1, 1, 3, 2 * s)
    return shapes


def reference_student_keys(
    num_blocks_student: tuple[int, ...],
    num_layers: int,
    front_channels: int = 32,
    residual_channels: int = 64,
    gate_channels: int = 128,
    skip_channels: int = 64,
    kernel_size: int = 3,
    cin_channels: int = 80,
) -> Shapes:
    """Key -> shape of ``wavenet_iaf.Wavenet_Student(...)``'s state dict (ClariNet argument names)."""
    hp = {
        "residual": residual_channels,
        "gate": gate_channels,
        "skip": skip_channels,
        "kernel": kernel_size,
        "cin": cin_channels,
        "front_kernel": front_channels,
        "out": 2,
    }
    shapes: Shapes = {}
    for k, blocks in enumerate(num_blocks_student):
        _wavenet_body_keys(f"iafs.{k}.", hp, blocks * num_layers, shapes)
    return shapes


def check_layout(state: dict[str, Tensor], expected: Shapes, what: str) -> None:
    """Raise ``ValueError`` naming missing and unexpected keys and shape mismatches (the shared converter
    format, ``zoo.hub.converting.key_mismatch``) when ``state`` is not the ClariNet layout ``expected``."""
    check_keys(shapes(state), expected, what, "the ClariNet layout")


# ---------------------------------------------------------------------- reading
def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """``state_dict`` of a ClariNet checkpoint (read safely), ``module.`` prefixes stripped, not folded."""
    return read_checkpoint(path, layout="ClariNet", fold=False)


def _count(state: dict[str, Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_body(state: dict[str, Tensor], prefix: str = "") -> dict[str, int]:
    """Channel widths and kernels of one ClariNet WaveNet body, read from its weight shapes."""
    try:
        front = state[f"{prefix}front_conv.0.conv.weight_v"]
        filt = state[f"{prefix}res_blocks.0.filter_conv.conv.weight_v"]
        skip = state[f"{prefix}res_blocks.0.skip_conv.weight_v"]
        cond = state[f"{prefix}res_blocks.0.filter_conv_c.weight_v"]
        out = state[f"{prefix}final_conv.3.conv.weight_v"]
    except KeyError as exc:
        raise ValueError(f"not a ClariNet WaveNet state dict: key {exc.args[0]!r} is missing") from None
    return {
        "residual": front.shape[0],
        "front_kernel": front.shape[-1],
        "gate": filt.shape[0],
        "kernel": filt.shape[-1],
        "skip": skip.shape[0],
        "cin": cond.shape[1],
        "out": out.shape[0],
        "layers": _count(state, rf"{re.escape(prefix)}res_blocks\.(\d+)\."),
    }


def upsample_scales(state: dict[str, Tensor]) -> tuple[int, ...]:
    """ClariNet's upsample scales from ``upsample_conv.{2j}.weight_v`` ``[1, 1, 3, 2 s]``."""
    convs = sorted(int(m.group(1)) for k in state if (m := re.match(r"upsample_conv\.(\d+)\.weight_v$", k)))
    return tuple(int(state[f"upsample_conv.{i}.weight_v"].shape[-1]) // 2 for i in convs)


def config_mel(config: dict[str, Any]) -> MelConfig:
    """The converter config's ``mel`` (a preset name or a dict; default ``flowavenet``)."""
    mel = config.get("mel", "flowavenet")
    return MelConfig.preset(mel) if isinstance(mel, str) else MelConfig.from_dict(dict(mel))


def config_num_layers(config: dict[str, Any]) -> int:
    """The converter config's ``num_layers``: ClariNet's layers per block, the dilation cycle (default 10)."""
    num_layers = int(config.get("num_layers", 10))
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return num_layers


# ---------------------------------------------------------------------- key mapping
def body_to_zoo(folded: dict[str, Tensor], prefix: str, layers: int) -> dict[str, Tensor]:
    """Map one folded ClariNet WaveNet body onto the zoo layout (front, stack, head1, head2)."""
    out = {
        "front.weight": folded[f"{prefix}front_conv.0.conv.weight"],
        "front.bias": folded[f"{prefix}front_conv.0.conv.bias"],
        "head1.weight": folded[f"{prefix}final_conv.1.conv.weight"],
        "head1.bias": folded[f"{prefix}final_conv.1.conv.bias"],
        "head2.weight": folded[f"{prefix}final_conv.3.conv.weight"],
        "head2.bias": folded[f"{prefix}final_conv.3.conv.bias"],
    }
    cond_w, cond_b = [], []
    for i in range(layers):
        b = f"{prefix}res_blocks.{i}."
        for part in ("weight", "bias"):
            out[f"stack.layers.{i}.dilated.{part}"] = torch.cat(
                [folded[b + f"filter_conv.conv.{part}"], folded[b + f"gate_conv.conv.{part}"]]
            )
            out[f"stack.layers.{i}.res.{part}"] = folded[b + f"res_conv.{part}"]
            out[f"stack.layers.{i}.skip.{part}"] = folded[b + f"skip_conv.{part}"]
        cond_w += [folded[b + "filter_conv_c.weight"], folded[b + "gate_conv_c.weight"]]
        cond_b += [folded[b + "filter_conv_c.bias"], folded[b + "gate_conv_c.bias"]]
    out["stack.cond.weight"] = torch.cat(cond_w)
    out["stack.cond.bias"] = torch.cat(cond_b)
    return out


def upsampler_to_zoo(folded: dict[str, Tensor]) -> dict[str, Tensor]:
    """ClariNet's ``upsample_conv.{2j}`` (ConvTranspose2d, then LeakyReLU at ``2j + 1``) -> ``convs.{j}``."""
    out = {}
    for key, value in folded.items():
        m = re.match(r"upsample_conv\.(\d+)\.(weight|bias)$", key)
        if m:
            out[f"convs.{int(m.group(1)) // 2}.{m.group(2)}"] = value
    return out


# ---------------------------------------------------------------------- converters
def student_config(
    state: dict[str, Tensor], teacher_state: dict[str, Tensor], config: dict[str, Any]
) -> ParallelWaveNetConfig:
    """The zoo config of a ClariNet student checkpoint (and its teacher's upsampler)."""
    n_flows = _count(state, r"iafs\.(\d+)\.")
    if n_flows == 0:
        raise ValueError("not a ClariNet student state dict: no 'iafs.<k>.' keys")
    bodies = [infer_body(state, f"iafs.{k}.") for k in range(n_flows)]
    hp = bodies[0]
    scales = upsample_scales(teacher_state)
    if not scales:
        raise ValueError("the teacher checkpoint has no 'upsample_conv.*' weights")
    mel = config_mel(config)
    if mel.n_mels != hp["cin"]:
        mel = MelConfig.from_dict({**mel.to_dict(), "n_mels": hp["cin"]})
    flow_layers = tuple(b["layers"] for b in bodies)
    num_layers = config_num_layers(config)
    freq_kernel = int(teacher_state["upsample_conv.0.weight_v"].shape[-2])
    cfg = ParallelWaveNetConfig(
        mel=mel,
        flow_layers=flow_layers,
        dilation_cycle=num_layers,
        front_kernel_size=hp["front_kernel"],
        residual_channels=hp["residual"],
        gate_channels=2 * hp["gate"],
        skip_channels=hp["skip"],
        kernel_size=hp["kernel"],
        upsample="transposed2d",
        upsample_scales=scales,
        upsample_freq_kernel=freq_kernel,
        upsample_time_kernel=None,
        upsample_activation="leaky_relu",
        upsample_negative_slope=0.4,
    )
    body = {
        "residual": hp["residual"],
        "gate": hp["gate"],
        "skip": hp["skip"],
        "kernel": hp["kernel"],
        "cin": hp["cin"],
        "front_kernel": hp["front_kernel"],
        "out": 2,
    }
    expected: Shapes = {}
    for k, n in enumerate(flow_layers):
        _wavenet_body_keys(f"iafs.{k}.", body, n, expected)
    check_layout(state, expected, "the student checkpoint")
    return cfg


def convert_student(
    state: dict[str, Tensor], teacher_state: dict[str, Tensor], config: dict[str, Any] | None = None
) -> ParallelWaveNet:
    """A ``parallel_wavenet`` model from ClariNet student and teacher state dicts."""
    config = dict(config or {})
    cfg = student_config(state, teacher_state, config)
    model = ParallelWaveNet(cfg)
    folded = fold_state_dict(state)
    folded_teacher = fold_state_dict(
        {k: v for k, v in teacher_state.items() if k.startswith("upsample_conv.")}
    )
    new: dict[str, Tensor] = {}
    for k, n in enumerate(cfg.flow_layers):
        for name, value in body_to_zoo(folded, f"iafs.{k}.", n).items():
            new[f"flows.{k}.{name}"] = value
    for name, value in upsampler_to_zoo(folded_teacher).items():
        new[f"upsample.{name}"] = value
    return load_converted(model, new, "converted ClariNet student")


def find_teacher_checkpoint(student_path: Path) -> Path:
    """The single ``.pth``/``.pt`` beside ``student_path`` whose state dict holds ``upsample_conv.*``."""
    found = []
    for p in sorted(student_path.parent.glob("*.pt*")):
        if p == student_path or p.suffix not in {".pth", ".pt"}:
            continue
        try:
            state = read_state_dict(p)
        except ValueError:
            continue
        if any(k.startswith("upsample_conv.") for k in state):
            found.append(p)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(p.name for p in found)})"
        raise ValueError(
            f"the ClariNet student needs its teacher's upsampler: found {what} teacher checkpoints beside "
            f"{student_path.name}; pass config={{'teacher_checkpoint': PATH}}"
        )
    return found[0]


def convert_clarinet(path: str | Path, config: dict[str, Any] | None = None) -> Vocoder:
    """``zoo convert --from clarinet``: teacher checkpoint -> ``wavenet``, student -> ``parallel_wavenet``."""
    path = Path(path)
    config = dict(config or {})
    state = read_state_dict(path)
    if any(k.startswith("iafs.") for k in state):
        teacher_path = config.pop("teacher_checkpoint", None)
        teacher_path = Path(teacher_path) if teacher_path else find_teacher_checkpoint(path)
        teacher_state = read_state_dict(teacher_path)
        if not any(k.startswith("upsample_conv.") for k in teacher_state):
            raise ValueError(f"{teacher_path}: not a ClariNet teacher checkpoint (no 'upsample_conv.*' keys)")
        return convert_student(state, teacher_state, config)
    if any(k.startswith("res_blocks.") for k in state):
        from zoo_plugins.parallel_wavenet.convert_teacher import convert_teacher

        return convert_teacher(state, config)
    raise ValueError(
        f"{path}: neither a ClariNet teacher ('res_blocks.*') nor a student ('iafs.*') checkpoint"
    )


__all__ = [
    "convert_clarinet",
    "convert_student",
    "read_state_dict",
    "reference_student_keys",
    "reference_teacher_keys",
    "check_layout",
    "infer_body",
    "body_to_zoo",
]
