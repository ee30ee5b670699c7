"""``zoo train``: train any likelihood vocoder on a folder of wavs (also under torchrun)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import yaml

import zoo
from zoo.cli.common import CliError, subcommand
from zoo.core.vocoder import Vocoder
from zoo.registry.plugins import get_registry
from zoo.train.trainer import TrainConfig, Trainer, merge, parse_overrides, run_checkpoints, split_config, yaml_numbers


@subcommand
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture on a folder of wavs (torchrun for several processes)")
    p.add_argument("architecture")
    p.add_argument("--data", required=True, help="folder of wav files (resampled and silence-trimmed)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.csv, samples, final model")
    p.add_argument("--config", help="JSON/YAML file {model: {...}, train: {...}}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model or train setting (train.lr=1e-3, n_flows=4, mel=hifigan)")
    p.add_argument("--steps", type=int, help="train until this step (overrides train.steps)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--init", help="start from this model (name or folder) instead of random weights; --set may "
                   "then change only settings that keep its weights' shapes (dropout, train_input_noise, ...)")
    p.add_argument("--no-resume", action="store_true",
                   help="start from step 0 (refused if --out already holds checkpoints: choose another --out)")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    cls = get_registry().architecture(args.architecture).cls
    _check_trainable(cls, args.architecture)

    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError):
        raise CliError(f"unknown --device {args.device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda requested but CUDA is not available")
    data: dict = {}
    if args.config:
        text = Path(args.config).read_text()
        data = yaml_numbers(yaml.safe_load(text) or {})
        if not isinstance(data, dict):
            raise CliError(f"{args.config}: expected a mapping with 'model' and 'train'")
    # The file's settings, then --set's over them (each split into model and train settings first, and a
    # partial mel.* change applied to the mel it changes: the file's, else the architecture's default).
    file_model, file_train = split_config(cls.config_class, _expand_mel(data))
    set_model, set_train = split_config(cls.config_class, _expand_mel(parse_overrides(args.set)))
    model_cfg, train_cfg = merge(file_model, set_model), {**file_train, **set_train}
    if isinstance(model_cfg.get("mel"), dict):
        model_cfg["mel"] = merge(cls.config_class().mel.to_dict(), model_cfg["mel"])
    if args.steps is not None:
        train_cfg["steps"] = args.steps
    run = Path(args.out)
    saved = _saved_run(run, args.architecture)
    if saved is not None and args.no_resume:
        raise CliError(f"--out {run} already holds checkpoints of a run (up to {saved['checkpoint']}); --no-resume "
                       f"would mix a new run into it: choose another --out or remove that folder")
    if saved is not None:
        model_cfg, train_cfg = _resumed_settings(run, saved, model_cfg, train_cfg, args.init)
    if args.init:
        model = zoo.load(args.init)
        if model.architecture != args.architecture:
            raise CliError(f"--init {args.init} is a {model.architecture!r} model, not {args.architecture!r}")
        if model_cfg:
            model = _reconfigure(model, args.architecture, model_cfg, args.init)
    else:
        model = zoo.create(args.architecture, model_cfg or None)
    trainer = Trainer(model, args.data, run, TrainConfig.from_dict(train_cfg), device=args.device)
    if saved is not None and trainer.resume():
        print(f"resumed from step {trainer.step}")
    last = trainer.fit()
    if trainer.dist.is_main:
        print(f"done: step {trainer.step}, loss {last.get('loss', float('nan')):.4f}; model in {run / 'final'}")
    return 0


#: Train settings a resumed run may change: how long, and how often it logs, validates and saves.
RESUMABLE = {"steps", "log_every", "val_every", "ckpt_every", "keep_checkpoints", "sample_seconds"}


def _expand_mel(data: dict[str, Any]) -> dict[str, Any]:
    """Mel preset names (at the top, or under ``model``) as full dicts, so partial ``mel.*`` overrides
    change only their fields."""
    out = dict(data)
    if isinstance(out.get("mel"), str):
        out["mel"] = zoo.MelConfig.preset(out["mel"]).to_dict()
    if isinstance(out.get("model"), dict):
        out["model"] = _expand_mel(out["model"])
    return out


def _check_trainable(cls: Any, architecture: str) -> None:
    if cls.loss is Vocoder.loss:
        raise CliError(f"{architecture!r} has no training loss in this zoo (it ships trained weights, or has none); "
                       f"`zoo train` trains the likelihood vocoders")


def _saved_run(run: Path, architecture: str) -> dict[str, Any] | None:
    """The run.json of ``run`` (with ``checkpoint``: its newest checkpoint) if it holds checkpoints."""
    checkpoints = [p.name for p in run_checkpoints(run)]
    info = run / "run.json"
    if not checkpoints or not info.is_file():
        return None
    saved = json.loads(info.read_text())
    if saved.get("architecture") != architecture:
        raise CliError(f"--out {run} holds a {saved.get('architecture')!r} run, not {architecture!r}: choose "
                       f"another --out")
    return {**saved, "checkpoint": checkpoints[-1]}


def _resumed_settings(run: Path, saved: dict[str, Any], model_cfg: dict[str, Any], train_cfg: dict[str, Any],
                      init: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings a resumed run continues with: the saved ones, where the given ones may only change
    :data:`RESUMABLE` train settings; anything else is refused, naming the keys."""
    old_model, old_train = saved["model_config"], saved["train_config"]
    model = merge(old_model, model_cfg)
    changed = sorted(k for k in set(model) | set(old_model) if model.get(k) != old_model.get(k))
    train = {**old_train, **train_cfg}
    changed += sorted(f"train.{k}" for k in train if k not in RESUMABLE and train[k] != old_train.get(k))
    if changed and not init:
        raise CliError(f"--out {run} was trained with other settings ({', '.join(changed)} differ); resuming may "
                       f"change only {sorted(RESUMABLE)}: continue with its settings, or use another --out")
    return model, train


def _reconfigure(model: Any, architecture: str, overrides: dict, init: str) -> Any:
    """``--init`` with model settings (a mel preset already expanded): the same weights under a config
    changed only where the weights allow (training-only settings such as ``dropout`` or ``train_input_noise``);
    a setting that changes a weight's shape is refused."""
    current = model.config.to_dict()
    merged = merge(current, overrides)
    changed = sorted(k for k in merged if merged[k] != current.get(k))
    if not changed:
        return model
    if "mel" in changed:
        raise CliError(f"--init {init}: the model expects other mel features than the settings given; the mel "
                       "features are part of the model")
    new = zoo.create(architecture, merged)
    try:
        new.load_state_dict(model.state_dict())
    except RuntimeError as e:
        raise CliError(f"--init {init}: the settings {changed} change the model's weights, so its "
                       f"weights cannot start this run ({str(e).splitlines()[0]})") from None
    return new
