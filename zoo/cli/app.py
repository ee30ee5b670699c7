"""The ``zoo`` command line: list, info, vocode, convert (more subcommands are added by other modules).

Errors a user can fix (a bad file, an unknown model, a mel that does not fit) are printed as one line
``zoo: error: ...`` with exit status 2; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import zoo
from zoo import __version__
from zoo.audio.adapt import adapt
from zoo.audio.denoiser import Denoiser
from zoo.cli import bench as cli_bench
from zoo.cli import compare as cli_compare
from zoo.cli import export as cli_export
from zoo.cli import hub as cli_hub
from zoo.cli import train as cli_train
from zoo.cli.common import AUDIO_EXT, MEL_EXT, CliError, progress, read_audio, read_mel, registered, subcommand
from zoo.core.files import umask_mode, write_wav_atomic
from zoo.core.mel import MelConfig
from zoo.core.vocoder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from zoo.hub.sources import ChecksumError, SourceUnavailable, availability, format_size
from zoo.kernels import native
from zoo.registry.plugins import PluginWarning, RegistryError, get_registry, kernel_paths, plugin_report

EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]

#: The command modules besides this one, in the order ``zoo --help`` lists their commands.
COMMAND_MODULES = (cli_hub, cli_train, cli_bench, cli_export, cli_compare)


# ---------------------------------------------------------------------- list / info
@subcommand
def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list pretrained models and architectures")
    p.add_argument("pattern", nargs="?", help="glob on model names, e.g. 'hifigan.*'")
    p.add_argument("-v", "--verbose", action="store_true", help="also show plugins and their failures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    reg = get_registry()
    models = zoo.list_models(args.pattern)
    status = {n: availability(reg.cards[n]) for n in models}  # shipped / cached / downloadable, and size
    if args.json:
        out = {
            "models": [{"name": n, "architecture": reg.cards[n].architecture, "default": reg.cards[n].default,
                        "license": reg.cards[n].license, "quality": reg.cards[n].quality,
                        "status": status[n][0], "size": status[n][1]} for n in models],
            "architectures": zoo.list_architectures(),
        }
        if args.verbose:
            out["plugins"] = plugin_report(reg)
        print(json.dumps(out, indent=2))
        return 0
    print("models:")
    for n in models:
        c = reg.cards[n]
        mr = _quality_value(c.quality)
        where = f"{status[n][0]}{'' if status[n][1] is None else ', ' + format_size(status[n][1])}"
        print(f"  {n:<28} {'(default) ' if c.default else '':<10} {c.license:<14} {where:<26} {mr}")
    print("architectures:")
    for a in zoo.list_architectures():
        arch = reg.architectures[a]
        print(f"  {a:<28} plugin {arch.plugin}")
    if args.verbose:
        print("plugins:")
        for row in plugin_report(reg):
            status = "FAILED: " + "; ".join(row["failures"]) if row["failures"] else "ok"
            print(f"  {row['plugin']:<20} {row['distribution']:<20} {status}")
        print("converters (zoo convert --from NAME):")
        for name, conv in sorted(reg.converters.items()):
            print(f"  {name:<28} {conv.description or ''} (plugin {conv.plugin})")
    elif reg.failures:
        print(f"({len(reg.failures)} plugin problem(s); see `zoo list --verbose`)")
    return 0


def _quality_value(quality: dict[str, Any]) -> str:
    for key, val in quality.items():
        if isinstance(val, dict) and "mr_stft" in val:
            extra = "".join(f"{label} {val[k]}, " for k, label in (("stoi", "STOI"), ("pesq_wb", "PESQ-wb"))
                            if k in val)
            return f"{extra}MR-STFT {val['mr_stft']} on {key}"
    return ""


@subcommand
def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show a model card or an architecture")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.add_argument("--kernels", action="store_true",
                   help="say which compiled kernels are in use on this machine (ISA variant) or why not")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.kernels:
        return _print_kernels(args.json)
    if args.name is None:
        raise CliError("zoo info needs a model or architecture name (or --kernels)")
    data = zoo.info(args.name)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    if "name" in data:
        print(zoo.card(args.name).to_markdown())
    else:
        for key, val in data.items():
            print(f"{key}: {json.dumps(val, default=str) if isinstance(val, (dict, list)) else val}")
    return 0


def _print_kernels(as_json: bool) -> int:
    """``zoo info --kernels``: each compiled kernel's state, and the path each model/dtype takes on CPU."""
    zoo.list_architectures()  # load the plugins: their kernels register with zoo.kernels.native
    kernels, paths = native.statuses(), kernel_paths()
    if as_json:
        models = [{"architecture": a, "dtype": d, "path": p} for (a, d), p in sorted(paths.items())]
        print(json.dumps({"kernels": [k.to_dict() for k in kernels], "models": models}, indent=2))
        return 0
    for k in kernels:
        print(f"{k.name}: {k.summary()}")
        print(f"  library: {k.library}")
        if k.cpu:
            print(f"  this CPU runs: {', '.join(k.cpu)}")
    print("models (CPU):")
    for (arch, dtype), path in sorted(paths.items()):
        print(f"  {arch} {dtype}: {path}")
    return 0


# ---------------------------------------------------------------------- vocode


@subcommand
def _add_vocode(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("vocode", help="turn wavs (copy-synthesis) or saved mels (.npy/.pt) into wav files")
    p.add_argument("inputs", nargs="+", help="wav files, mel files [n_mels, frames] (.npy/.pt) or folders")
    p.add_argument("-o", "--output", required=True, help="output .wav (one input) or folder")
    p.add_argument("-m", "--model", default="hifigan", help="model name, architecture, or folder (default: hifigan)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="default float32; bfloat16's quality cost per model is measured in docs/performance.md")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (stochastic models)")
    p.add_argument("--batch", type=int, default=8,
                   help="files sampled together in one loop by models that take padded batches (WaveNet reads "
                        "its weights once per step for all of them; each file gets what it gets alone with --seed)")
    p.add_argument("--offline", action="store_true", help="use only cached weights")
    p.add_argument("--mel-config", help="the convention of saved mels (a preset name or MelConfig JSON): they are "
                                        "adapted to the model's with zoo.adapt (refused if not bridgeable)")
    p.add_argument("--denoise", type=float, default=0.0, metavar="STRENGTH",
                   help="bias-removal denoiser strength (0 = off; WaveGlow's README suggests 0.1)")
    p.set_defaults(func=_cmd_vocode)


def _expand_inputs(items: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in AUDIO_EXT | MEL_EXT)
            if not found:
                raise CliError(f"{p}: folder holds no .wav/.flac/.npy/.pt files")
            paths.extend(found)
        elif not p.is_file():
            raise CliError(f"{p}: no such file")
        elif p.suffix.lower() not in AUDIO_EXT | MEL_EXT:
            raise CliError(f"{p}: unsupported input type {p.suffix!r}; expected a wav or a mel (.npy/.pt)")
        else:
            paths.append(p)
    return paths


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} {path} is not valid JSON: {exc}") from None


def _cmd_vocode(args: argparse.Namespace) -> int:
    inputs = _expand_inputs(args.inputs)
    out = Path(args.output)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        # Under torchrun every rank takes its share of the files (and its own GPU).
        if out.suffix.lower() == ".wav":
            raise CliError("under torchrun, -o must be a folder")
        inputs = inputs[rank::world]
        if args.device == "cuda":
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        if not inputs:
            return 0
    single_file = len(inputs) == 1 and out.suffix.lower() == ".wav"
    if not single_file and out.suffix.lower() == ".wav":
        raise CliError(f"{len(inputs)} inputs need an output folder, not the file {out}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError("--device cuda requested but CUDA is not available")
    voc = zoo.load(args.model, device=args.device, dtype=args.dtype, offline=args.offline or None)
    src_mel = None
    if args.mel_config:
        cfg_path = Path(args.mel_config)
        try:
            src_mel = (MelConfig.from_dict(_read_json(cfg_path, "--mel-config")) if cfg_path.is_file()
                       else MelConfig.preset(args.mel_config))
        except (ValueError, TypeError) as exc:
            raise CliError(f"--mel-config {args.mel_config}: {exc}") from None
    # Read and check every input, and where each output goes, before writing anything.
    jobs = []
    taken: dict[Path, Path] = {}
    sources = {p.resolve() for p in inputs}
    for path in inputs:
        try:
            if path.suffix.lower() in AUDIO_EXT:
                audio, sr = read_audio(path)
                mel = voc.mel(torch.from_numpy(audio), sample_rate=sr, resample=True)
            else:
                mel = read_mel(path)
                if src_mel is not None:
                    mel = adapt(mel.float(), src_mel, voc.mel_config)
                mel = voc.checked_mel(mel)
                if mel.shape[0] != 1:
                    raise ValueError(f"holds a batch of {mel.shape[0]} mels; save one mel [n_mels, frames] per "
                                     f"file (or [1, n_mels, frames])")
                mel = mel[0]
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from None
        target = out if single_file else out / (path.stem + ".wav")
        where = target.resolve()
        if where in sources:
            raise CliError(f"{path}: its output {target} would overwrite an input; choose another -o")
        if where in taken:
            raise CliError(f"{taken[where]} and {path} would both be written to {target}; vocode them into "
                           f"different folders")
        taken[where] = path
        jobs.append((path, mel, target))
    gen = torch.Generator(device=voc.device).manual_seed(args.seed)
    denoiser = None
    if args.denoise:
        denoiser = Denoiser(voc)
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    batched = _batched_audio(voc, jobs, args.batch, args.seed) if voc.padded_batches and len(jobs) > 1 else {}
    for path, mel, target in progress(jobs, desc="vocoding", unit="file", disable=len(jobs) < 2 or None):
        try:
            audio = batched.pop(path) if path in batched else voc.vocode(mel, generator=gen)[0]
        except ValueError as exc:
            raise CliError(f"{path}: {exc}") from None
        if denoiser is not None:
            audio = denoiser(audio.float().cpu(), strength=args.denoise)
        write_wav_atomic(target, audio.float().cpu().numpy(), voc.sample_rate)
        print(f"{target}  ({audio.shape[-1] / voc.sample_rate:.2f} s)", file=sys.stderr)
    return 0


def _batched_audio(voc: Any, jobs: list[tuple[Path, torch.Tensor, Path]], batch: int, seed: int) -> dict[Path, Any]:
    """Audio of every job, ``batch`` files at a time as one padded batch (longest first, so that batch mates
    have similar lengths); each batch is sampled with a generator seeded ``seed``, so that each file gets what
    vocoding it alone with that seed gives."""
    order = sorted(jobs, key=lambda job: -job[1].shape[-1])
    found: dict[Path, Any] = {}
    for i in range(0, len(order), batch):
        group = order[i: i + batch]
        lengths = [mel.shape[-1] for _, mel, _ in group]
        padded = torch.zeros(len(group), group[0][1].shape[0], max(lengths))
        for j, (_, mel, _) in enumerate(group):
            padded[j, :, : lengths[j]] = mel
        try:
            audio, audio_lengths = voc.vocode(padded, lengths=lengths,
                                              generator=torch.Generator(device=voc.device).manual_seed(seed))
        except ValueError as exc:
            raise CliError(f"{', '.join(str(path) for path, _, _ in group)}: {exc}") from None
        for j, (path, _, _) in enumerate(group):
            found[path] = audio[j, : int(audio_lengths[j])]
    return found


# ---------------------------------------------------------------------- convert
@subcommand
def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an original checkpoint into a zoo model folder")
    p.add_argument("--from", dest="source", required=True, help="converter name (listed by `zoo list --verbose`)")
    p.add_argument("checkpoint")
    p.add_argument("out_dir")
    p.add_argument("--config", help="JSON file with architecture hyperparameters, if the checkpoint lacks them")
    p.set_defaults(func=_cmd_convert)


def _check_convert_target(out: Path, ckpt: Path) -> None:
    """Refuse an output that converting would destroy: a file, the current folder or one holding the
    checkpoint, or a folder with anything but a zoo model in it (which the new model replaces)."""
    where = out.resolve()
    if out.exists() and not out.is_dir():
        raise CliError(f"{out} exists and is not a folder; give a folder to write the model to")
    if where == Path.cwd().resolve() or where in ckpt.resolve().parents:
        raise CliError(f"{out} holds the checkpoint (or is the current folder); write the model to a new folder")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME))
        if other:
            raise CliError(f"{out} already holds files that are not a zoo model ({', '.join(other[:5])}); "
                           f"write the model to a new or empty folder")


def _cmd_convert(args: argparse.Namespace) -> int:
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise CliError(f"{ckpt}: no such file")
    config = _read_json(Path(args.config), "--config") if args.config else None
    if config is not None and not isinstance(config, dict):
        raise CliError(f"--config {args.config} must hold a JSON object of hyperparameters, got "
                       f"{type(config).__name__}")
    out = Path(args.out_dir)
    _check_convert_target(out, ckpt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".zoo-convert-", dir=out.parent))
    try:
        model = zoo.convert(args.source, ckpt, tmp, config=config)
        if out.exists():
            shutil.rmtree(out)
        umask_mode(tmp)
        shutil.move(str(tmp), str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out} ({model.architecture}, {model.num_parameters():,} parameters)")
    return 0


# ---------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="vocoder-zoo: neural vocoders behind one registry")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (__name__, *(m.__name__ for m in COMMAND_MODULES)):
        for add in registered(module):
            add(sub)
    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction) -> None:
    """The commands plugins contribute through the ``zoo_register_commands`` hook (``zoo distill``)."""
    reg = get_registry()
    for name, entry in sorted(reg.commands.items()):
        if name in sub.choices:
            reg.report(entry.plugin, "register", f"command {name!r} is one of the zoo's own commands; dropped")
            continue
        p = sub.add_parser(name, help=f"{entry.command.help} (plugin {entry.plugin})")
        entry.command.add_arguments(p)
        p.set_defaults(func=entry.command.run)


def _one_line_plugin_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints plugin problems as one ``zoo: warning: ...`` line (no source
    line) and hands other warnings to ``show``."""
    def showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        if issubclass(category, PluginWarning):
            print(f"zoo: warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def _version() -> str:
    return f"vocoder-zoo {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_plugin_warnings(warnings.showwarning)
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`zoo info ... | head`): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush stays quiet
        return 0
    except (CliError, RegistryError, ChecksumError, SourceUnavailable, OSError, ValueError) as exc:
        msg = str(exc).strip()
        print(f"zoo: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("zoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
