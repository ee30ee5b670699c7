"""Parity with ksw0306/ClariNet golden fixtures (teacher, student, KL and frame losses, converter).

Data-driven: the small configs come from ``reference.json`` and the fixtures from ``$ZOO_PARITY_DIR/clarinet``
(default ``<repo>/../shared/parity``), so the same tests pass on fixture sets made the same way.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from zoo_plugins.parallel_wavenet.convert import (
    convert_clarinet,
    convert_student,
    read_state_dict,
    reference_student_keys,
    reference_teacher_keys,
)
from zoo_plugins.parallel_wavenet.distill import DistillConfig, distillation_losses
from zoo_plugins.parallel_wavenet.losses import frame_loss, gaussian_kl_loss
from zoo_plugins.parallel_wavenet.teacher import TeacherAdapter

import zoo

torch.set_num_threads(1)
pytestmark = pytest.mark.parity

PARITY = Path(
    os.environ.get("ZOO_PARITY_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "parity")
)
FIXTURES = PARITY / "clarinet"
ATOL = RTOL = 1e-5


@lru_cache(maxsize=1)
def reference() -> dict:
    return json.loads((FIXTURES / "reference.json").read_text())


@lru_cache(maxsize=1)
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "io.safetensors"))


def teacher_hparams() -> dict:
    return reference()["small_config"]["teacher"]


def student_hparams() -> dict:
    return reference()["small_config"]["student"]


@lru_cache(maxsize=1)
def teacher():
    from zoo_plugins.parallel_wavenet.convert_teacher import convert_teacher

    hp = teacher_hparams()
    return convert_teacher(
        load_file(str(FIXTURES / "small_teacher.safetensors")), {"num_layers": hp["num_layers"]}
    )


@lru_cache(maxsize=1)
def student():
    return convert_student(
        load_file(str(FIXTURES / "small_student.safetensors")),
        load_file(str(FIXTURES / "small_teacher.safetensors")),
        {"num_layers": student_hparams()["num_layers"]},
    )


def close(name: str, got: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> None:
    want = io()[name]
    assert tuple(got.shape) == tuple(want.shape), f"{name}: shape {tuple(got.shape)} vs {tuple(want.shape)}"
    diff = (got.detach().float() - want).abs().max().item()
    assert torch.allclose(got.detach().float(), want, atol=atol, rtol=rtol), f"{name}: max abs diff {diff:g}"


def test_parity_clarinet_student_config_from_reference():
    hp, cfg = student_hparams(), student().config
    assert cfg.flow_layers == tuple(b * hp["num_layers"] for b in hp["num_blocks_student"])
    assert (cfg.residual_channels, cfg.gate_channels, cfg.skip_channels) == (
        hp["residual_channels"],
        2 * hp["gate_channels"],
        hp["skip_channels"],
    )
    assert (cfg.kernel_size, cfg.front_kernel_size, cfg.mel.n_mels) == (
        hp["kernel_size"],
        hp["front_channels"],
        hp["cin_channels"],
    )
    assert cfg.upsample_scales == tuple(teacher_hparams()["upsample_scales"])


@pytest.mark.parametrize("name", ["c_up"], ids=["parity-clarinet-c_up"])
def test_c_up(name):
    with torch.no_grad():
        close(name, student().upsample_mel(io()["c"]))
        close(name, TeacherAdapter(teacher()).upsample(io()["c"]))


@pytest.mark.parametrize(
    "name",
    ["student_x", "student_mu", "student_log_scale", "student_generate"],
    ids=lambda n: f"parity-parallel_wavenet-{n}",
)
def test_student_forward(name):
    with torch.no_grad():
        x, mu, logs = student().iaf(io()["z"], io()["c_up"])
    got = {"student_x": x, "student_mu": mu, "student_log_scale": logs, "student_generate": x}[name]
    close(name, got)


@pytest.mark.parametrize(
    "name",
    ["teacher_out", "teacher_nll", "teacher_loss", "teacher_out_on_student"],
    ids=lambda n: f"parity-clarinet-{n}",
)
def test_teacher(name):
    adapter = TeacherAdapter(teacher())
    with torch.no_grad():
        c_up = adapter.upsample(io()["c"])
        if name == "teacher_out_on_student":
            close(name, adapter.output(io()["student_x"], c_up))
            return
        out = adapter.output(io()["x"], c_up)
        if name == "teacher_out":
            close(name, out)
            return
        nll = adapter.nll(out[:, :, :-1], io()["x"][:, :, 1:])
    close(name, nll if name == "teacher_nll" else nll.mean())


KL_NAMES = {
    "kl_loss_total": "kl_total",
    "kl_loss": "kl",
    "kl_reg_loss": "kl_reg",
    "kl_elementwise": "kl_elementwise",
}


@pytest.mark.parametrize("name", [*KL_NAMES, "kl_pq_loss_total"], ids=lambda n: f"parity-clarinet-{n}")
def test_kl_on_fixture_tensors(name):
    t = io()
    kind = "pq" if name == "kl_pq_loss_total" else "qp"
    out = gaussian_kl_loss(t["student_mu"], t["student_log_scale"], t["teacher_out_on_student"], kind=kind)
    close(name, out["kl_total"] if kind == "pq" else out[KL_NAMES[name]])


def test_parity_clarinet_frame_loss_on_fixture_tensors():
    t = io()
    got = frame_loss(t["student_x"][:, :, 1:], t["x"][:, :, 1:])
    close("frame_loss", got, atol=0.0, rtol=1e-6)


@pytest.mark.parametrize(
    "kl_type", ["qp", "pq"], ids=["parity-clarinet-distill-qp", "parity-clarinet-distill-pq"]
)
def test_distillation_losses_end_to_end(kl_type):
    """Student on the recorded z, teacher on the student's sample: every loss term as the reference."""
    t = io()
    with torch.no_grad():
        out = distillation_losses(
            student(),
            TeacherAdapter(teacher()),
            t["x"],
            t["c"],
            t["z"],
            DistillConfig(kl="closed_form", kl_type=kl_type),
        )
    if kl_type == "qp":
        close("kl_loss_total", out["kl_total"])
        close("kl_loss", out["kl"])
        close("kl_reg_loss", out["kl_reg"])
        close("kl_elementwise", out["kl_elementwise"])
        close("frame_loss", out["frame"], atol=0.0, rtol=1e-6)
        close("student_loss_total", out["loss"], atol=0.0, rtol=1e-6)
    else:
        close("kl_pq_loss_total", out["kl_total"])
    close("teacher_out_on_student", out["teacher_out"])


# ---------------------------------------------------------------------- converter
def _full_keys() -> dict:
    return json.loads((FIXTURES / "full_keys.json").read_text())


@pytest.mark.parametrize(
    "part",
    ["teacher", "student"],
    ids=["parity-clarinet-full_keys-teacher", "parity-parallel_wavenet-full_keys-student"],
)
def test_reference_layout_matches_full_keys(part):
    """The converter's expected ClariNet layout at the published size equals full_keys.json."""
    entry = _full_keys()[part]
    cfg = dict(entry["config"])
    if part == "teacher":
        cfg.pop("out_channels", None)
        expected = reference_teacher_keys(**cfg)
    else:
        cfg.pop("causal", None)
        cfg["num_blocks_student"] = tuple(cfg["num_blocks_student"])
        expected = reference_student_keys(**cfg)
    got = {k["name"]: tuple(k["shape"]) for k in entry["keys"]}
    assert expected == got
    assert len(got) == entry["num_tensors"]


def test_parity_clarinet_published_student_size():
    """The default config is ClariNet's published student (its weights, weight norm folded)."""
    from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig

    entry = _full_keys()["student"]
    folded = sum(math.prod(k["shape"]) for k in entry["keys"] if not k["name"].endswith("weight_g"))
    model = ParallelWaveNet(ParallelWaveNetConfig())
    own = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("upsample."))
    assert own == folded
    assert model.config.flow_layers == tuple(
        b * entry["config"]["num_layers"] for b in entry["config"]["num_blocks_student"]
    )


def test_parity_clarinet_small_fixtures_have_the_reference_layout():
    t = teacher_hparams()
    assert {
        k: tuple(v.shape) for k, v in load_file(str(FIXTURES / "small_teacher.safetensors")).items()
    } == reference_teacher_keys(
        t["num_blocks"],
        t["num_layers"],
        t["residual_channels"],
        t["gate_channels"],
        t["skip_channels"],
        t["kernel_size"],
        t["cin_channels"],
        tuple(t["upsample_scales"]),
    )


def test_parity_clarinet_convert_checkpoints_reproduce_fixtures(tmp_path):
    """``zoo.convert('clarinet', ...)`` on ckpt_teacher.pth / ckpt_student.pth gives both models."""
    t = io()
    teacher_model = zoo.convert(
        "clarinet",
        FIXTURES / "ckpt_teacher.pth",
        tmp_path / "teacher",
        config={"num_layers": teacher_hparams()["num_layers"]},
    )
    assert teacher_model.architecture == "wavenet"
    student_model = zoo.convert(
        "clarinet",
        FIXTURES / "ckpt_student.pth",
        tmp_path / "student",
        config={
            "teacher_checkpoint": str(FIXTURES / "ckpt_teacher.pth"),
            "num_layers": student_hparams()["num_layers"],
        },
    )
    assert student_model.architecture == "parallel_wavenet"
    for model in (student_model, zoo.load(tmp_path / "student")):
        with torch.no_grad():
            x, mu, logs = model.iaf(t["z"], model.upsample_mel(t["c"]))
        close("student_x", x)
        close("student_log_scale", logs)
    for model in (teacher_model, zoo.load(tmp_path / "teacher")):
        adapter = TeacherAdapter(model)
        with torch.no_grad():
            close("teacher_out", adapter.output(t["x"], adapter.upsample(t["c"])))


def test_parity_clarinet_convert_detects_the_teacher_beside_the_student(tmp_path):
    import shutil

    for name in ("ckpt_teacher.pth", "ckpt_student.pth"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    model = convert_clarinet(tmp_path / "ckpt_student.pth", {"num_layers": student_hparams()["num_layers"]})
    with torch.no_grad():
        close("student_x", model.iaf(io()["z"], model.upsample_mel(io()["c"]))[0])
    (tmp_path / "ckpt_teacher.pth").unlink()
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        convert_clarinet(tmp_path / "ckpt_student.pth")


def test_parity_clarinet_convert_strips_module_prefix(tmp_path):
    ckpt = torch.load(FIXTURES / "ckpt_student.pth", weights_only=True)
    ckpt["state_dict"] = {f"module.{k}": v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "student_dp.pth")
    assert all(k.startswith("iafs.") for k in read_state_dict(tmp_path / "student_dp.pth"))
    model = convert_clarinet(
        tmp_path / "student_dp.pth",
        {"teacher_checkpoint": FIXTURES / "ckpt_teacher.pth", "num_layers": student_hparams()["num_layers"]},
    )
    with torch.no_grad():
        close("student_mu", model.iaf(io()["z"], io()["c_up"])[1])


def test_parity_clarinet_convert_rejects_bad_checkpoints(tmp_path):
    state = read_state_dict(FIXTURES / "ckpt_student.pth")
    broken = {k: v for k, v in state.items() if "res_blocks.1.skip_conv" not in k}
    torch.save({"state_dict": broken}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="missing"):
        convert_clarinet(tmp_path / "broken.pth", {"teacher_checkpoint": FIXTURES / "ckpt_teacher.pth"})
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither"):
        convert_clarinet(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="readable"):
        convert_clarinet(tmp_path / "junk.pth")


def test_parity_clarinet_cli_convert(tmp_path):
    from zoo.cli.app import main

    config = tmp_path / "cfg.json"
    config.write_text(
        json.dumps(
            {
                "teacher_checkpoint": str(FIXTURES / "ckpt_teacher.pth"),
                "num_layers": student_hparams()["num_layers"],
            }
        )
    )
    assert (
        main(
            [
                "convert",
                "--from",
                "clarinet",
                str(FIXTURES / "ckpt_student.pth"),
                str(tmp_path / "s"),
                "--config",
                str(config),
            ]
        )
        == 0
    )
    model = zoo.load(tmp_path / "s")
    with torch.no_grad():
        close("student_x", model.iaf(io()["z"], model.upsample_mel(io()["c"]))[0])
