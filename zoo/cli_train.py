"""``zoo train``: train any likelihood vocoder on a folder of wavs (also under torchrun)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zoo.cli import CliError, subcommand


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
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints already in --out")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    import zoo
    from zoo.registry import get_registry
    from zoo.train import TrainConfig, Trainer, merge, parse_overrides, split_config

    cls = get_registry().architecture(args.architecture).cls
    data: dict = {}
    if args.config:
        text = Path(args.config).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise CliError(f"{args.config}: expected a mapping with 'model' and 'train'")
    data = merge(data, parse_overrides(args.set))
    model_cfg, train_cfg = split_config(cls.config_class, data)
    if args.steps is not None:
        train_cfg["steps"] = args.steps
    if isinstance(model_cfg.get("mel"), str):
        model_cfg["mel"] = zoo.MelConfig.preset(model_cfg["mel"]).to_dict()
    run = Path(args.out)
    if args.init:
        model = zoo.load(args.init)
        if model.architecture != args.architecture:
            raise CliError(f"--init {args.init} is a {model.architecture!r} model, not {args.architecture!r}")
        if model_cfg:
            model = _reconfigure(model, args.architecture, model_cfg, args.init)
    else:
        existing = run / "run.json"
        if existing.is_file() and not args.no_resume and not model_cfg:
            model_cfg = {k: v for k, v in json.loads(existing.read_text())["model_config"].items()}
        model = zoo.create(args.architecture, model_cfg or None)
    trainer = Trainer(model, args.data, run, TrainConfig(**train_cfg), device=args.device)
    if not args.no_resume and trainer.resume():
        print(f"resumed from step {trainer.step}")
    last = trainer.fit()
    if trainer.dist.is_main:
        print(f"done: step {trainer.step}, loss {last.get('loss', float('nan')):.4f}; model in {run / 'final'}")
    return 0


def _reconfigure(model: Any, architecture: str, overrides: dict, init: str) -> Any:
    """``--init`` with model settings (a mel preset already expanded): the same weights under a config
    changed only where the weights allow (training-only settings such as ``dropout`` or ``train_input_noise``);
    a setting that changes a weight's shape is refused."""
    import zoo
    from zoo.train import merge

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
