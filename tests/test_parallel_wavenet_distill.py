"""Distillation: a tiny student learns from a tiny frozen teacher; the loop, the CLI and the checks."""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
from pathlib import Path

import pytest
import torch
from zoo_plugins.parallel_wavenet.distill import (
    DistillConfig,
    Distiller,
    distillation_losses,
    student_for_teacher,
)
from zoo_plugins.parallel_wavenet.losses import gaussian_kl_loss, monte_carlo_kl
from zoo_plugins.parallel_wavenet.teacher import TeacherAdapter

import zoo
from tests.conftest import shared_dir

torch.set_num_threads(1)

DATA = shared_dir() / "data" / "train-pm"
STUDENT = dict(
    flow_layers=(3, 3),
    dilation_cycle=3,
    front_kernel_size=8,
    residual_channels=8,
    gate_channels=16,
    skip_channels=8,
)


def tiny_teacher(distribution: str = "gaussian", seed: int = 0):
    """A small random ClariNet-layout WaveNet teacher (kernel 2, front conv 8, 2-D upsampler).

    Its network weights are doubled so that its next-sample distribution really depends on the past
    samples and the mel (at the default initialisation it is almost constant and trivially matched).
    """
    torch.manual_seed(seed)
    overrides = dict(
        layers=4,
        stacks=2,
        residual_channels=8,
        gate_channels=16,
        skip_channels=8,
        kernel_size=2,
        front_kernel_size=8,
        output_distribution=distribution,
    )
    if distribution == "mol":
        overrides["num_mixtures"] = 2
    teacher = teacher_factory(**overrides).eval()
    with torch.no_grad():
        for name, p in teacher.named_parameters():
            if not name.startswith("upsample"):
                p.mul_(2.0)
    return teacher


def teacher_factory(**overrides):
    from zoo.registry.plugins import get_registry

    cls = get_registry().architecture("wavenet").cls
    return cls(cls.config_class.clarinet(**overrides))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Three short utterances of the shared training set (the loader reads every file of the folder)."""
    folder = tmp_path_factory.mktemp("wavs")
    for wav in sorted(DATA.glob("*.wav"))[:3]:
        shutil.copy(wav, folder / wav.name)
    return folder


def _eval_kl(student, teacher, audio, mel, z) -> float:
    with torch.no_grad():
        return float(
            distillation_losses(student, teacher, audio, mel, z, DistillConfig(frame_weight=0.0))["kl"]
        )


def r9y9_head_teacher():
    """A small r9y9-HEAD-layout MoL teacher: stretch2d upsampler with cin_pad, r9y9 mel features."""
    from zoo.registry.plugins import get_registry

    cls = get_registry().architecture("wavenet").cls
    torch.manual_seed(0)
    return cls(
        cls.config_class.small(
            "mol", layers=4, stacks=2, residual_channels=8, gate_channels=16, skip_channels=8, num_mixtures=2
        )
    ).eval()


@pytest.mark.parametrize(
    "make", [tiny_teacher, r9y9_head_teacher], ids=["clarinet-teacher", "r9y9-head-teacher"]
)
def test_student_for_teacher_copies_mel_and_upsampler(make, tmp_path):
    teacher = make()
    student = student_for_teacher(teacher, **STUDENT)
    assert student.config.upsample == teacher.config.upsample
    assert student.mel_config == teacher.mel_config
    mel = torch.rand(1, teacher.mel_config.n_mels, 3)
    adapter = TeacherAdapter(teacher)
    with torch.no_grad():
        torch.testing.assert_close(student.upsample_mel(mel), adapter.upsample(mel), rtol=0, atol=0)
    assert not any(p.requires_grad for p in teacher.parameters()), "the teacher must be frozen"
    student.save_pretrained(tmp_path / "s")
    with torch.no_grad():
        torch.testing.assert_close(
            zoo.load(tmp_path / "s").upsample_mel(mel), adapter.upsample(mel), rtol=0, atol=0
        )


def test_distillation_lowers_the_kl(data_dir):
    """300 steps of closed-form (ClariNet) distillation cut the reverse KL on a held-out batch.

    The frame loss is off here: a random teacher does not model speech, so matching real audio's
    spectrum would fight the KL (the frame loss is checked against the reference elsewhere).
    """
    teacher = tiny_teacher()
    student = student_for_teacher(teacher, **STUDENT)
    cfg = DistillConfig(
        steps=300, batch_size=2, segment_length=2048, lr=2e-3, log_every=50, seed=0, frame_weight=0.0
    )
    distiller = Distiller(student, teacher, cfg)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    g = torch.Generator().manual_seed(123)
    hop = student.hop_length
    audio = 0.1 * torch.randn(2, 8 * hop, generator=g)
    mel = student.mel(audio)[..., :8]
    z = torch.randn(2, 1, 8 * hop, generator=g)
    adapter = TeacherAdapter(teacher)
    before = _eval_kl(student, adapter, audio, mel, z)
    first = distiller.distill_step(*_batch(data_dir, student, cfg))
    assert set(first) == {"loss", "kl_total", "kl", "kl_reg"}
    last = distiller.fit(data_dir, data_dir.parent / "out", verbose=False)
    after = _eval_kl(student, adapter, audio, mel, z)
    assert distiller.step == 300
    assert after < 0.25 * before, (before, after)
    assert last["kl"] < first["kl"]
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), f"teacher weight {k} changed"
    rows = list(csv.DictReader(open(data_dir.parent / "out" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [50, 100, 150, 200, 250, 300]
    assert {"loss", "kl_total", "kl", "kl_reg"} <= set(rows[0])
    reloaded = zoo.load(data_dir.parent / "out")
    assert reloaded.architecture == "parallel_wavenet" and reloaded.config == student.config


def test_distillation_resumes_exactly(data_dir, tmp_path):
    """N steps in one go equal N/2, a fresh process state resumed from the folder, then N/2 more."""
    teacher = tiny_teacher()
    cfg = DistillConfig(steps=6, batch_size=2, segment_length=2048, log_every=2, save_every=3, seed=0,
                        frame_weight=0.5)
    torch.manual_seed(1)
    straight = Distiller(student_for_teacher(teacher, **STUDENT), teacher, cfg)
    straight.fit(data_dir, tmp_path / "straight", verbose=False)
    torch.manual_seed(1)
    Distiller(student_for_teacher(teacher, **STUDENT), teacher, cfg).fit(
        data_dir, tmp_path / "split", steps=3, verbose=False)
    torch.manual_seed(2)  # the fresh student's initial weights are replaced by the saved ones
    resumed = Distiller(student_for_teacher(teacher, **STUDENT), teacher, cfg)
    resumed.fit(data_dir, tmp_path / "split", verbose=False)
    assert resumed.step == 6
    a, b = straight.student.state_dict(), resumed.student.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "split" / "metrics.csv"))]
    assert steps == [2, 3, 4, 6]
    other = Distiller(student_for_teacher(teacher, **{**STUDENT, "residual_channels": 4}), teacher, cfg)
    with pytest.raises(ValueError, match="other settings.*residual_channels"):
        other.fit(data_dir, tmp_path / "split", verbose=False)
    changed_lr = Distiller(student_for_teacher(teacher, **STUDENT), teacher, dataclasses.replace(cfg, lr=5e-4))
    with pytest.raises(ValueError, match=r"distilled with other settings \(lr=0.001\)"):
        changed_lr.fit(data_dir, tmp_path / "split", steps=8, verbose=False)
    longer = Distiller(student_for_teacher(teacher, **STUDENT), teacher, dataclasses.replace(cfg, steps=7,
                                                                                             save_every=1))
    longer.fit(data_dir, tmp_path / "split", verbose=False)  # steps and save_every may change
    assert longer.step == 7


def _batch(data_dir: Path, student, cfg: DistillConfig):
    from zoo.train.data import SegmentDataset, StepBatcher, list_audio

    ds = SegmentDataset(list_audio(data_dir), student.mel_config, cfg.segment_length)
    return StepBatcher(ds, cfg.batch_size, seed=99).batch(0)


def test_monte_carlo_kl_with_a_mixture_of_logistics_teacher(data_dir):
    """Parallel WaveNet's estimator (teacher MoL): runs, is picked automatically, and falls."""
    teacher = tiny_teacher("mol", seed=1)
    student = student_for_teacher(teacher, **STUDENT)
    cfg = DistillConfig(batch_size=2, segment_length=2048, lr=2e-3, mc_samples=2, frame_weight=0.0, seed=0)
    distiller = Distiller(student, teacher, cfg)
    assert distiller.kl_kind == "monte_carlo"
    audio, mel = _batch(data_dir, student, cfg)
    z = torch.randn(2, 1, audio.shape[-1], generator=torch.Generator().manual_seed(5))
    adapter = TeacherAdapter(teacher)
    with torch.no_grad():
        start = distillation_losses(
            student, adapter, audio, mel, z, cfg, generator=torch.Generator().manual_seed(0)
        )
    assert set(start) >= {"kl", "cross_entropy", "entropy"}
    for _ in range(60):
        out = distiller.distill_step(audio, mel)
        assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    with torch.no_grad():
        end = distillation_losses(
            student, adapter, audio, mel, z, cfg, generator=torch.Generator().manual_seed(0)
        )
    assert end["kl"] < start["kl"] - 0.1, (start["kl"], end["kl"])
    with pytest.raises(ValueError, match="Gaussian"):
        Distiller(student, teacher, DistillConfig(kl="closed_form"))


def test_distill_rejects_bad_teachers_and_settings():
    teacher = tiny_teacher()
    with pytest.raises(ValueError, match="wavenet"):
        TeacherAdapter(student_for_teacher(teacher, **STUDENT))
    mulaw = teacher_factory(
        layers=2,
        stacks=1,
        residual_channels=4,
        gate_channels=8,
        skip_channels=4,
        front_kernel_size=4,
        output_distribution="mulaw",
    )
    with pytest.raises(ValueError, match="continuous"):
        TeacherAdapter(mulaw)
    with pytest.raises(ValueError, match="kl_type"):
        DistillConfig(kl_type="pp")
    with pytest.raises(ValueError, match="segment_length"):
        DistillConfig(segment_length=256)
    with pytest.raises(ValueError, match="multi-resolution"):
        DistillConfig(segment_length=1024, mr_stft_weight=1.0)
    other = student_for_teacher(teacher, **STUDENT)
    other.config = other.config.replace(mel=other.mel_config.__class__.preset("hifigan"))
    with pytest.raises(ValueError, match="mel"):
        Distiller(other, teacher, DistillConfig())


def test_cli_distill(data_dir, tmp_path):
    from zoo.cli.app import main

    teacher = tiny_teacher()
    teacher.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "student"
    argv = [
        "distill",
        "--teacher",
        str(tmp_path / "teacher"),
        "--out",
        str(out),
        "--data",
        str(data_dir),
        "--steps",
        "4",
        "--quiet",
        "--set",
        "flow_layers=[2,2]",
        "--set",
        "dilation_cycle=2",
        "--set",
        "residual_channels=4",
        "--set",
        "gate_channels=8",
        "--set",
        "skip_channels=4",
        "--set",
        "front_kernel_size=4",
        "--set",
        "batch_size=1",
        "--set",
        "segment_length=2304",
        "--set",
        "log_every=2",
        "--set",
        "kl_type=pq",
        "--set",
        "mr_stft_weight=0.5",
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["step"] for r in rows] == ["2", "4"] and "mr_stft" in rows[0]
    student = zoo.load(out)
    assert student.architecture == "parallel_wavenet" and student.config.flow_layers == (2, 2)
    assert main(argv[:-2] + ["--set", "no_such_setting=1"]) == 2


def test_closed_form_kl_equals_monte_carlo_on_real_models():
    """On a real student/teacher pair the closed-form KL equals the MC estimate within 3 standard errors."""
    teacher = tiny_teacher()
    student = student_for_teacher(teacher, **STUDENT).eval()
    adapter = TeacherAdapter(teacher)
    g = torch.Generator().manual_seed(7)
    mel = torch.rand(2, teacher.mel_config.n_mels, 4, generator=g)
    z = torch.randn(2, 1, 4 * teacher.hop_length, generator=g)
    with torch.no_grad():
        c_up = student.upsample_mel(mel)
        x, mu, logs = student.iaf(z, c_up)
        y_hat = adapter.output(x, c_up)
        assert y_hat[:, 1].min() > -6 and logs.min() > -6, "the clamp must not act in this comparison"
        closed = gaussian_kl_loss(mu, logs, y_hat, reg_weight=0.0)["kl"]
        n = 1000
        mc = monte_carlo_kl(mu, logs, y_hat, adapter.nll, n_samples=n, generator=g)
    per_draw = mc["cross_entropy_elementwise"].mean(dim=(1, 2)) - mc["entropy"]
    stderr = per_draw.std().item() / math.sqrt(n)
    assert abs(mc["kl"].item() - closed.item()) < 3 * stderr, (mc["kl"].item(), closed.item(), stderr)
    assert stderr < 0.05 * closed.item()
