"""Probability density distillation of a WaveNet teacher into the IAF student.

One step (ClariNet ``train_student.py``; Parallel WaveNet for a mixture-of-logistics teacher):

1. ``c_up = upsample(mel)`` (the student's copy of the teacher's upsampler), ``z ~ N(0, 1)``;
2. ``x, mu_s, logs_s = student.iaf(z, c_up)``;
3. the frozen teacher is run teacher-forced on the student's sample: ``y_hat = teacher(x, c_up)``;
4. KL: closed form between Gaussians (teacher ``gaussian``; reverse ``qp`` by default, ``pq`` as an
   option, log-stds clamped at -6, ``+ 4 (logs_s - logs_t)^2``), or the Monte Carlo estimate
   ``H(P_S, P_T) - H(P_S)`` (any teacher with a likelihood, e.g. ``mol``);
5. plus the frame (STFT magnitude MSE) loss against the real audio and, optionally, a
   multi-resolution STFT loss.

:func:`distillation_losses` computes every term for given ``z`` (the parity tests replay the
reference's); :class:`Distiller` runs the optimisation on a folder of wavs and writes the student.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from zoo_plugins.parallel_wavenet.losses import (
    MultiResolutionSTFTLoss,
    frame_loss,
    gaussian_kl_loss,
    monte_carlo_kl,
)
from zoo_plugins.parallel_wavenet.model import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.parallel_wavenet.teacher import TeacherAdapter

from zoo.core.config import check_field_types
from zoo.core.vocoder import Vocoder, read_config

STATE_FILE = "distill_state.pt"
#: Distillation settings that a resumed run may change (the others must equal the saved run's).
RESUMABLE_CHANGES = frozenset({"steps", "save_every", "log_every"})


@dataclasses.dataclass
class DistillConfig:
    """Settings of the distillation loop (the student's hyperparameters live in its own config).

    ``kl``: ``"auto"`` (closed form for a Gaussian teacher, Monte Carlo otherwise), ``"closed_form"``
    or ``"monte_carlo"``. ``kl_type``: ``"qp"`` (reverse KL, ClariNet's default) or ``"pq"``.
    ``frame_weight`` scales ClariNet's STFT frame loss (``frame_n_fft``/``frame_hop``, rectangular
    window); ``mr_stft_weight`` the optional multi-resolution STFT loss (0 = off). Every ``save_every``
    steps (0 = only at the end) the student and ``distill_state.pt`` (step, optimizer, random generator)
    are written to the output folder; a later run on that folder continues from there.
    """

    steps: int = 1000
    batch_size: int = 4
    segment_length: int = 8192
    lr: float = 1e-3
    lr_decay: float = 0.5
    lr_decay_every: int = 200_000
    grad_clip: float | None = 10.0
    kl: str = "auto"
    kl_type: str = "qp"
    log_std_min: float = -6.0
    reg_weight: float = 4.0
    mc_samples: int = 4
    frame_weight: float = 1.0
    frame_n_fft: int = 1024
    frame_hop: int = 256
    mr_stft_weight: float = 0.0
    train_upsampler: bool = False
    seed: int = 1234
    log_every: int = 10
    save_every: int = 250
    trim_db: float = 40.0

    def __post_init__(self) -> None:
        check_field_types(self, "distill setting")
        if not self.lr > 0 or not self.lr_decay > 0 or self.lr_decay_every < 1:
            raise ValueError(f"lr and lr_decay must be > 0 and lr_decay_every >= 1, got {self.lr}, {self.lr_decay}, "
                             f"{self.lr_decay_every}")
        if self.kl not in {"auto", "closed_form", "monte_carlo"}:
            raise ValueError(f"kl must be 'auto', 'closed_form' or 'monte_carlo', got {self.kl!r}")
        if self.kl_type not in {"qp", "pq"}:
            raise ValueError(f"kl_type must be 'qp' or 'pq', got {self.kl_type!r}")
        if self.steps < 1 or self.batch_size < 1 or self.mc_samples < 1 or self.log_every < 1:
            raise ValueError("steps, batch_size, mc_samples and log_every must be >= 1")
        if self.save_every < 0:
            raise ValueError(f"save_every must be >= 0, got {self.save_every}")
        if self.segment_length - 1 <= self.frame_n_fft // 2 and self.frame_weight > 0:
            raise ValueError(
                f"segment_length {self.segment_length} is too short for the frame loss "
                f"(n_fft {self.frame_n_fft}); raise it or set frame_weight=0"
            )
        longest = max(n_fft for n_fft, _, _ in MultiResolutionSTFTLoss.DEFAULT_RESOLUTIONS)
        if self.segment_length - 1 <= longest // 2 and self.mr_stft_weight > 0:
            raise ValueError(
                f"segment_length {self.segment_length} is too short for the multi-resolution STFT "
                f"loss (n_fft up to {longest}); raise it or set mr_stft_weight=0"
            )


def resolve_kl(kl: str, teacher: TeacherAdapter) -> str:
    """The KL estimator for this teacher: ``"closed_form"`` needs a single-Gaussian teacher."""
    if kl == "auto":
        return "closed_form" if teacher.is_gaussian else "monte_carlo"
    if kl == "closed_form" and not teacher.is_gaussian:
        raise ValueError(
            f"the closed-form KL needs a single-Gaussian teacher; this teacher's output is "
            f"{teacher.distribution_name!r} (use kl='monte_carlo')"
        )
    return kl


def distillation_losses(
    student: ParallelWaveNet,
    teacher: TeacherAdapter,
    audio: Tensor,
    mel: Tensor,
    z: Tensor,
    config: DistillConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    mr_stft: MultiResolutionSTFTLoss | None = None,
) -> dict[str, Tensor]:
    """Every loss term of one distillation step for noise ``z`` ``[B, 1, T]``.

    ``audio`` ``[B, T]`` or ``[B, 1, T]`` is the real audio of ``mel`` ``[B, n_mels, T / hop]``.
    Returns ``loss`` (what is minimised) and its terms: ``kl_total``, ``kl``, ``kl_reg`` (closed form),
    or ``kl``, ``cross_entropy``, ``entropy`` (Monte Carlo), ``frame`` and ``mr_stft`` when enabled, plus
    the student's ``x``, ``mu``, ``log_scale`` and the teacher's output ``teacher_out`` (not detached).
    """
    cfg = config or DistillConfig()
    audio = audio if audio.dim() == 3 else audio.unsqueeze(1)
    if audio.shape[-1] != z.shape[-1]:
        raise ValueError(f"audio has {audio.shape[-1]} samples but z has {z.shape[-1]}")
    c_up = student.upsample_mel(mel)
    x, mu_s, logs_s = student.iaf(z, c_up)
    y_hat = teacher.output(x, c_up)
    out: dict[str, Tensor] = {"x": x, "mu": mu_s, "log_scale": logs_s, "teacher_out": y_hat}
    kind = resolve_kl(cfg.kl, teacher)
    if kind == "closed_form":
        kl = gaussian_kl_loss(
            mu_s, logs_s, y_hat, kind=cfg.kl_type, log_std_min=cfg.log_std_min, reg_weight=cfg.reg_weight
        )
        out.update(kl)
        loss = kl["kl_total"]
    else:
        mc = monte_carlo_kl(
            mu_s, logs_s, y_hat, teacher.nll, x=x, n_samples=cfg.mc_samples, generator=generator
        )
        out.update({k: v for k, v in mc.items() if k != "cross_entropy_elementwise"})
        loss = mc["kl"]
    if cfg.frame_weight > 0:
        out["frame"] = frame_loss(x[:, :, 1:], audio[:, :, 1:], cfg.frame_n_fft, cfg.frame_hop)
        loss = loss + cfg.frame_weight * out["frame"]
    if cfg.mr_stft_weight > 0:
        sc, mag = (mr_stft or MultiResolutionSTFTLoss())(x[:, :, 1:], audio[:, :, 1:])
        out["mr_stft"] = sc + mag
        loss = loss + cfg.mr_stft_weight * out["mr_stft"]
    out["loss"] = loss
    return out


LOGGED = ("loss", "kl_total", "kl", "kl_reg", "cross_entropy", "entropy", "frame", "mr_stft")


class Distiller:
    """Distil ``teacher`` (a WaveNet plugin model) into ``student``; the teacher stays frozen."""

    def __init__(
        self,
        student: ParallelWaveNet,
        teacher: Vocoder,
        config: DistillConfig | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config or DistillConfig()
        self.device = torch.device(device)
        self.teacher = TeacherAdapter(teacher.to(self.device))
        self.teacher.check_compatible(student)
        self.student = student.to(self.device).train()
        self.kl_kind = resolve_kl(self.config.kl, self.teacher)
        params = [
            p
            for n, p in self.student.named_parameters()
            if self.config.train_upsampler or not n.startswith("upsample.")
        ]
        if not self.config.train_upsampler:
            self.student.upsample.requires_grad_(False)
        self.optimizer = torch.optim.Adam(params, lr=self.config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.mr_stft = MultiResolutionSTFTLoss() if self.config.mr_stft_weight > 0 else None
        self.step = 0

    def distill_step(self, audio: Tensor, mel: Tensor) -> dict[str, float]:
        """One optimisation step on a batch; returns the logged loss terms as floats."""
        cfg = self.config
        audio = audio.to(self.device, self.student.dtype)
        mel = mel.to(self.device, self.student.dtype)
        z = torch.randn(
            audio.shape[0],
            1,
            audio.shape[-1],
            generator=self.generator,
            device=self.device,
            dtype=self.student.dtype,
        )
        self.student.train()
        losses = distillation_losses(
            self.student, self.teacher, audio, mel, z, cfg, generator=self.generator, mr_stft=self.mr_stft
        )
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        if cfg.lr_decay != 1.0 and self.step % cfg.lr_decay_every == 0:
            for group in self.optimizer.param_groups:
                group["lr"] *= cfg.lr_decay
        return {k: float(losses[k].detach()) for k in LOGGED if k in losses}

    def save(self, out: str | Path) -> None:
        """Write the student (``save_pretrained``) and ``distill_state.pt`` to ``out`` (state last, atomically)."""
        out = Path(out)
        self.student.save_pretrained(out)
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "generator": self.generator.get_state(), "config": dataclasses.asdict(self.config)}
        tmp = out / f"{STATE_FILE}.tmp"
        torch.save(state, tmp)
        tmp.replace(out / STATE_FILE)

    def resume(self, out: str | Path) -> bool:
        """Continue from the student and state saved in ``out`` (False when there is none).

        Refuses a folder whose student has another configuration than this one's, or that was distilled with
        other settings (only ``steps``, ``save_every`` and ``log_every`` may change between runs).
        """
        out = Path(out)
        if not (out / STATE_FILE).is_file():
            return False
        _, saved = read_config(out)
        current = json.loads(self.student.config.to_json())
        if saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ValueError(f"{out} holds a student with other settings ({', '.join(changed)}); "
                             "use another --out or the same settings")
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        ours = dataclasses.asdict(self.config)
        theirs = state.get("config", {})
        differ = sorted(k for k in ours if k not in RESUMABLE_CHANGES and k in theirs and theirs[k] != ours[k])
        if differ:
            saved = ", ".join(f"{k}={theirs[k]!r}" for k in differ)
            raise ValueError(f"{out} was distilled with other settings ({saved}); continue it with those, or use "
                             "another --out")
        self.student.load_weights(out / "model.safetensors")
        self.student.to(self.device).train()
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        return True

    def fit(
        self, data: str | Path, out: str | Path, steps: int | None = None, *, verbose: bool = True
    ) -> dict[str, float]:
        """Distil on random segments of the wavs in ``data``; log to ``out/metrics.csv``; save the student.

        The student is written to ``out`` with ``save_pretrained`` (every ``save_every`` steps and at the
        end); a folder that already holds a saved state is continued from its step. Returns the last
        logged loss terms.
        """
        from zoo.train.data import SegmentDataset, StepBatcher, list_audio

        cfg = self.config
        steps = steps or cfg.steps
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder")
        if out.is_dir() and not (out / STATE_FILE).is_file() and any(out.iterdir()):
            # Only an empty folder or one this distillation saved (with its state) is written into: never
            # a model folder (the teacher's own, say) or anything else.
            raise ValueError(f"--out {out} already holds files and no distillation state ({STATE_FILE}); "
                             f"use an empty or new folder")
        out.mkdir(parents=True, exist_ok=True)
        dataset = SegmentDataset(
            list_audio(data), self.student.mel_config, cfg.segment_length, trim_db=cfg.trim_db
        )
        batcher = StepBatcher(dataset, cfg.batch_size, cfg.seed)
        last: dict[str, float] = {}
        start = time.perf_counter()
        resumed = self.resume(out)
        if resumed and verbose:
            print(f"continuing from step {self.step} saved in {out}", file=sys.stderr)
        from zoo.train.tblog import open_logger

        tb = open_logger(out, quiet=not verbose)  # TensorBoard event files beside metrics.csv (optional extra)
        first_step = self.step
        with open(out / "metrics.csv", "a" if resumed else "w", newline="") as fh:
            writer: csv.DictWriter | None = None
            header_written = resumed and fh.tell() > 0
            while self.step < steps:
                audio, mel = batcher.batch(self.step)
                last = self.distill_step(audio, mel)
                if not all(math.isfinite(v) for v in last.values()):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: {last}")
                if self.step % cfg.log_every == 0 or self.step == steps:
                    row = {"step": self.step, **last, "seconds": round(time.perf_counter() - start, 3)}
                    if tb is not None:
                        sps = (self.step - first_step) * cfg.batch_size * cfg.segment_length / max(row["seconds"], 1e-9)
                        tb.scalars(self.step, "train", last, lr=self.optimizer.param_groups[0]["lr"],
                                   samples_per_s=sps)
                    if writer is None:
                        writer = csv.DictWriter(fh, fieldnames=list(row))
                        if not header_written:
                            writer.writeheader()
                    writer.writerow(row)
                    fh.flush()
                    if verbose:
                        terms = "  ".join(f"{k} {v:.4f}" for k, v in last.items())
                        print(f"step {self.step}: {terms}", file=sys.stderr)
                if cfg.save_every and self.step % cfg.save_every == 0 and self.step < steps:
                    self.save(out)
                    self._log_clips(tb, dataset)
        self.student.eval()
        self.save(out)
        self._log_clips(tb, dataset)
        if tb is not None:
            tb.close()
        return last

    def _log_clips(self, tb: Any, dataset: Any, n: int = 2, seconds: float = 1.0) -> None:
        """TensorBoard at each save: the student's copy-synthesis of the first second of the first ``n``
        files (distillation has no held-out split), spectrograms beside the originals', STOI/PESQ with the
        quality extra."""
        if tb is None:
            return
        from zoo.train.tblog import copy_synthesis

        hop = self.student.hop_length
        frames = max(1, int(seconds * self.student.sample_rate) // hop)
        utts = dataset.utterances[:n]
        gens = copy_synthesis(self.student, [u.mel[:, :frames].to(self.device, self.student.dtype) for u in utts])
        tb.clips(self.step, self.student.sample_rate, gens, [u.audio[: frames * hop] for u in utts])
        tb.flush()


def student_for_teacher(teacher: Vocoder, **overrides: Any) -> ParallelWaveNet:
    """A fresh student whose mel config and upsampler copy (weights included) are the teacher's."""
    adapter = TeacherAdapter(teacher)
    cfg = ParallelWaveNetConfig(mel=teacher.mel_config, **adapter.upsampler_config())
    if overrides:
        cfg = cfg.replace(**overrides)
    student = ParallelWaveNet(cfg)
    adapter.copy_upsampler_into(student)
    return student


__all__ = ["DistillConfig", "Distiller", "distillation_losses", "resolve_kl", "student_for_teacher"]
