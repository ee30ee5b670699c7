"""One training loop for every likelihood vocoder (anything whose model implements ``Vocoder.loss``).

Runs on one process or under ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on CUDA). Rank 0
alone writes checkpoints, metrics and samples. A checkpoint is ``model.safetensors`` (+ ``config.json``)
plus ``trainer_state.pt`` (optimizer, scheduler, RNG states; loaded with ``weights_only=True``), and a
resumed run continues bit for bit where an uninterrupted one would be (same seed, CPU, deterministic).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from zoo.core.config import VocoderConfig, check_field_types
from zoo.core.fields import check_known_keys
from zoo.core.files import atomic_path, write_wav_atomic
from zoo.core.vocoder import Vocoder
from zoo.train.data import SegmentDataset, StepBatcher, list_audio
from zoo.train.tblog import copy_synthesis, open_logger


@dataclasses.dataclass
class TrainConfig:
    """Hyperparameters of the loop (the model's live in its own config)."""

    steps: int = 1000
    batch_size: int = 4
    segment_length: int = 8192
    lr: float = 1e-3
    lr_decay: float = 1.0  # multiplied into the learning rate every ``lr_decay_every`` steps
    lr_decay_every: int = 1000
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    seed: int = 1234
    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 200
    keep_checkpoints: int = 2
    val_files: int = 2
    trim_db: float = 40.0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on CUDA; bf16 also on CPU)
    deterministic: bool = False
    sample_seconds: float = 1.0  # length of the copy-synthesis sample written at validation

    def __post_init__(self) -> None:
        if self.precision not in {"fp32", "bf16", "fp16"}:
            raise ValueError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        check_field_types(self, "train setting")
        for name in ("steps", "batch_size", "segment_length", "lr_decay_every", "log_every", "val_every",
                     "ckpt_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"train setting {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.lr_decay > 0:
            raise ValueError(f"lr and lr_decay must be > 0, got {self.lr} and {self.lr_decay}")
        if self.val_files < 0:
            raise ValueError(f"train setting val_files must be >= 0, got {self.val_files}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Like ``TrainConfig(**data)``, with unknown keys named in a ``ValueError``."""
        check_known_keys(cls, data, "unknown train settings")
        return cls(**data)


def _split(files: list[Path], name: str, mel: Any, seg: int, trim_db: float, cache: Path) -> SegmentDataset:
    """The segment dataset of one split, an error naming the split and its files when none is usable."""
    try:
        return SegmentDataset(files, mel, seg, trim_db=trim_db, cache_dir=cache)
    except ValueError as exc:
        if "no usable utterances" not in str(exc):
            raise
        names = ", ".join(p.name for p in files[:4]) + (" ..." if len(files) > 4 else "")
        raise ValueError(f"the {name} files ({names}) hold no usable audio (each is shorter than one hop after "
                         f"trimming silence); the last val_files files of the folder are the validation "
                         f"split") from None


class _LossModule(nn.Module):
    """Makes ``model.loss`` the forward of a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: Vocoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: Tensor, mel: Tensor) -> dict[str, Tensor]:  # type: ignore[override]
        return self.model.loss(audio, mel)


@dataclasses.dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains ``model`` on a folder of wavs into ``run_dir``."""

    def __init__(self, model: Vocoder, data: str | Path, run_dir: str | Path, config: TrainConfig | None = None,
                 *, device: str = "cpu", progress: bool = True) -> None:
        self.cfg = config or TrainConfig()
        self.run_dir = Path(run_dir)
        self.dist = init_distributed(device)
        if device.startswith("cuda") and self.dist.world_size > 1:
            device = f"cuda:{self.dist.local_rank}"
        self.device = torch.device(device)
        if self.cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.cfg.seed + self.dist.rank)
        self.model = model.to(self.device).train()
        hop = model.hop_length
        seg = (self.cfg.segment_length // hop) * hop
        files = list_audio(data)
        n_val = min(self.cfg.val_files, max(len(files) - 1, 0))
        self.train_files, self.val_files = files[: len(files) - n_val], files[len(files) - n_val:]
        cache = self.run_dir / "cache" / "mels"
        if seg < hop:
            raise ValueError(f"train setting segment_length {self.cfg.segment_length} is shorter than the model's "
                             f"hop ({hop} samples)")
        self.train_set = _split(self.train_files, "training", model.mel_config, seg, self.cfg.trim_db, cache)
        self.val_set = (_split(self.val_files, "validation", model.mel_config, seg, self.cfg.trim_db, cache)
                        if self.val_files else None)
        self.batcher = StepBatcher(self.train_set, self.cfg.batch_size, self.cfg.seed, self.dist.rank,
                                   self.dist.world_size)
        self.loss_module: nn.Module = _LossModule(self.model)
        if self.dist.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=self.cfg.lr_decay_every,
                                                         gamma=self.cfg.lr_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cfg.precision == "fp16" and self.device.type == "cuda")
        self.step = 0
        self.progress = progress and self.dist.is_main
        self.tb: Any = None  # zoo.train.tblog.TrainLogger while fit() runs with the tensorboard extra installed

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def save_checkpoint(self) -> Path | None:
        if not self.dist.is_main:
            return None
        folder = self.ckpt_root / f"step_{self.step:08d}"
        tmp = folder.with_name(folder.name + ".tmp")
        self.model.save_pretrained(tmp)
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": _rng_state(), "train_config": dataclasses.asdict(self.cfg)}
        torch.save(state, tmp / "trainer_state.pt")
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        (self.ckpt_root / "latest").write_text(folder.name + "\n")
        self._prune()
        return folder

    def _prune(self) -> None:
        current = self.ckpt_root / f"step_{self.step:08d}"
        done = sorted(p for p in self.ckpt_root.glob("step_*") if not p.name.endswith(".tmp") and p != current)
        for old in done[: max(0, len(done) - (self.cfg.keep_checkpoints - 1))]:
            shutil.rmtree(old, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        """The complete checkpoint folders of the run, oldest first."""
        return run_checkpoints(self.run_dir)

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint ``checkpoints/latest`` names, or the newest complete one if that one is gone."""
        pointer = self.ckpt_root / "latest"
        if pointer.is_file():
            folder = self.ckpt_root / pointer.read_text().strip()
            if (folder / "trainer_state.pt").is_file():
                return folder
        done = self.checkpoints()
        return done[-1] if done else None

    def resume(self, folder: Path | None = None) -> bool:
        """Load the latest (or given) checkpoint; returns whether one was found."""
        folder = folder or self.latest_checkpoint()
        if folder is None:
            return False
        self.model.load_weights(folder / "model.safetensors")
        state = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])
        self._forget_metrics_after(self.step)
        return True

    def _forget_metrics_after(self, step: int) -> None:
        """Drop the rows of ``metrics.csv`` logged after ``step`` (by a run stopped before its next checkpoint),
        since they are logged again."""
        path = self.run_dir / "metrics.csv"
        if not self.dist.is_main or not path.is_file():
            return
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
        if len(kept) != len(rows):
            with atomic_path(path, ".tmp") as tmp, tmp.open("w", newline="") as f:
                csv.writer(f).writerows(kept)

    # ------------------------------------------------------------------ loop
    def _autocast(self) -> Any:
        if self.cfg.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self) -> dict[str, float]:
        audio, mel = self.batcher.batch(self.step)
        audio, mel = audio.to(self.device), mel.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            losses = self.loss_module(audio, mel)
        loss = losses["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower the learning rate")
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        self.model.eval()
        gen = torch.Generator().manual_seed(self.cfg.seed)
        totals: dict[str, float] = {}
        for i in range(len(self.val_set)):
            audio, mel = self.val_set.segment(i, gen)
            losses = self.model.loss(audio[None].to(self.device), mel[None].to(self.device))
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v) / len(self.val_set)
        self.model.train()
        return totals

    def write_sample(self) -> Path | None:
        """Copy-synthesis of the start of the first validation file into ``samples/``."""
        if not self.dist.is_main or self.val_set is None:
            return None
        utt = self.val_set.utterances[0]
        frames = max(1, int(self.cfg.sample_seconds * self.model.sample_rate) // self.model.hop_length)
        self.model.eval()
        try:
            audio = self.model.vocode(utt.mel[:, :frames], generator=torch.Generator().manual_seed(0))[0]
        finally:
            self.model.train()
        path = self.run_dir / "samples" / f"step_{self.step:08d}.wav"
        write_wav_atomic(path, audio.float().cpu().numpy(), self.model.sample_rate)
        return path

    def _log(self, row: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "split", "name", "value", "lr", "samples_per_s", "time"])
            for name, value in row["values"].items():
                writer.writerow([row["step"], row["split"], name, f"{value:.6g}", f"{row['lr']:.3g}",
                                 f"{row.get('sps', 0):.1f}", f"{time.time():.1f}"])
        if self.tb is not None:
            train = row["split"] == "train"
            self.tb.scalars(row["step"], row["split"], row["values"], lr=row["lr"] if train else None,
                            samples_per_s=row.get("sps") if train else None)

    def log_validation_clips(self) -> dict[str, float]:
        """TensorBoard: copy-synthesis of the start of every validation file (audio, spectrogram beside the
        original's, STOI/PESQ with the quality extra). Returns the quality numbers logged."""
        if self.tb is None or self.val_set is None:
            return {}

        hop = self.model.hop_length
        frames = max(1, int(self.cfg.sample_seconds * self.model.sample_rate) // hop)
        utts = self.val_set.utterances
        gens = copy_synthesis(self.model, [u.mel[:, :frames].to(self.device) for u in utts])
        out = self.tb.clips(self.step, self.model.sample_rate, gens, [u.audio[: frames * hop] for u in utts])
        self.tb.flush()
        return out

    def fit(self, steps: int | None = None) -> dict[str, float]:
        """Train until ``steps`` (default: the config's) and return the last training losses."""
        target = steps if steps is not None else self.cfg.steps
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.tb = open_logger(self.run_dir, quiet=not self.progress)
            (self.run_dir / "run.json").write_text(json.dumps({
                "architecture": self.model.architecture, "model_config": self.model.config.to_dict(),
                "train_config": dataclasses.asdict(self.cfg), "world_size": self.dist.world_size,
                "train_files": len(self.train_files), "val_files": [p.name for p in self.val_files]}, indent=2))
        bar = tqdm(total=target, initial=self.step, disable=not self.progress, dynamic_ncols=True, desc="train")
        last: dict[str, float] = {}
        t0, n0 = time.perf_counter(), 0
        while self.step < target:
            last = self.train_step()
            n0 += self.cfg.batch_size * self.train_set.segment_length * self.dist.world_size
            sps = n0 / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", samples_s=f"{sps:,.0f}")
            if self.step % self.cfg.log_every == 0 or self.step == target:
                self._log({"step": self.step, "split": "train", "values": last,
                           "lr": self.scheduler.get_last_lr()[0], "sps": sps})
            if self.step % self.cfg.val_every == 0 or self.step == target:
                val = self.validate()
                if val:
                    self._log({"step": self.step, "split": "val", "values": val,
                               "lr": self.scheduler.get_last_lr()[0]})
                    self.write_sample()
                    self.log_validation_clips()
            if self.step % self.cfg.ckpt_every == 0 or self.step == target:
                self.save_checkpoint()
        bar.close()
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.dist.is_main:
            self.model.save_pretrained(self.run_dir / "final")
        if self.dist.world_size > 1:
            dist.barrier()
        return last


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoint folders (``checkpoints/step_*`` with their trainer state) of a run folder,
    oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*")
                  if not p.name.endswith(".tmp") and (p / "trainer_state.pt").is_file())


def yaml_numbers(value: Any) -> Any:
    """``value`` with the strings YAML 1.1 leaves unparsed that are numbers (``1e-3``) as floats, recursively."""
    if isinstance(value, dict):
        return {k: yaml_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [yaml_numbers(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "b.c=[1,2]"]`` -> nested dict with YAML-parsed values."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml_numbers(yaml.safe_load(raw))
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def split_config(config_cls: type[VocoderConfig], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split flat overrides into (model config, train config) by field names; ``model.``/``train.`` prefixes win."""
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    data = dict(data)
    model_in, train_in = data.pop("model", {}) or {}, data.pop("train", {}) or {}
    for name, value in (("model", model_in), ("train", train_in)):
        if not isinstance(value, dict):
            raise ValueError(f"'{name}' must be a mapping of settings, got {value!r}")
    model: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in data.items():
        (train if key in train_fields else model)[key] = value
    return merge(model, model_in), merge(train, train_in)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

