"""MkDocs hook: the pages that are generated from the project itself, at build time, so they never go stale.

Markers a page may contain (each is replaced before the Markdown is rendered; an unknown model, object,
file or key fails the build):

* ``<!-- zoo:models -->``: the model list, from the cards the registry holds (``zoo.list_models()``,
  ``zoo.card()``): quality, speed, size, license, then every card's own text.
* ``<!-- zoo:no-weights -->``: the registered architectures that no card gives weights to, as a list.
* ``<!-- zoo:cli -->``: the command-line reference, from the real argparse parser (``zoo.cli.app.build_parser``).
* ``<!-- zoo:source module:qualname -->``: the source code of a function or class, as a code block.
* ``{{ data FILE KEY [FORMAT] }}``: one number from ``docs/data/FILE`` (JSON; ``KEY`` is a dotted path,
  ``FORMAT`` a Python format spec such as ``.2f`` or ``,.0f``), so prose quotes the measurement scripts'
  output rather than a copy of it.

After rendering, Sphinx roles that mkdocstrings leaves in docstrings (``:class:`X```) become plain code.

The functions are importable (``tests/test_docs.py`` checks the generated pages against the registry).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1]
DATA = DOCS / "data"

_MODELS = "<!-- zoo:models -->"
_CLI = "<!-- zoo:cli -->"
_NO_WEIGHTS = "<!-- zoo:no-weights -->"
_SOURCE = re.compile(r"<!-- zoo:source ([\w.]+):([\w.]+) -->")
_DATA = re.compile(r"\{\{\s*data\s+(\S+)\s+(\S+)(?:\s+(\S+))?\s*\}\}")
# Sphinx cross-reference roles in docstrings, as mkdocstrings renders them: ":class:<code>~zoo.x.Y</code>".
_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):<code>(~?)([^<]+)</code>")


# ---------------------------------------------------------------------- helpers
def _cell(value: Any) -> str:
    """A Markdown table cell: pipes and angle brackets escaped, newlines folded."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def data_value(file: str, key: str, fmt: str | None = None) -> str:
    """``docs/data/<file>`` at the dotted ``key``, formatted with ``fmt``."""
    path = DATA / file
    if not path.is_file():
        raise ValueError(f"{{{{ data {file} {key} }}}}: no file {path}")
    value: Any = json.loads(path.read_text())
    for part in key.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise ValueError(f"{{{{ data {file} {key} }}}}: no key {part!r}")
    return format(value, fmt) if fmt else str(value)


def source_block(module: str, qualname: str) -> str:
    """A fenced Python block with the source of ``module:qualname``, titled with its file."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    code = textwrap.dedent(inspect.getsource(obj)).rstrip()
    mod = importlib.import_module(module)
    file = Path(inspect.getfile(mod)).resolve()
    try:
        shown = file.relative_to(DOCS.parent)
    except ValueError:
        shown = Path(file.name)
    return f'```python title="{shown.as_posix()}: {qualname}"\n{code}\n```'


# ---------------------------------------------------------------------- the model list
def parameter_count(architecture: str, config: dict[str, Any]) -> int:
    """Parameters of a model built from a card's config (on the meta device: nothing is allocated)."""
    import torch

    from zoo.registry.plugins import get_registry

    cls = get_registry().architecture(architecture).cls
    cfg = cls.config_class.from_dict(config)
    try:
        with torch.device("meta"):
            model = cls(cfg)
    except (NotImplementedError, RuntimeError):  # an initialiser that needs real numbers (e.g. a QR)
        model = cls(cfg)
    return sum(p.numel() for p in model.parameters())


def model_rows() -> list[dict[str, Any]]:
    """One dict per pretrained model the registry knows, in ``zoo.list_models()`` order."""
    import zoo

    rows = []
    for name in zoo.list_models():
        card = zoo.card(name)
        quality = card.quality.get("eval-lj", {}) if isinstance(card.quality, dict) else {}
        params = parameter_count(card.architecture, card.model_config())
        rows.append({
            "name": name,
            "architecture": card.architecture,
            "default": card.default,
            "license": card.license,
            "stoi": quality.get("stoi"),
            "pesq_wb": quality.get("pesq_wb"),
            "dnsmos_p808": quality.get("dnsmos_p808"),
            "mr_stft": quality.get("mr_stft"),
            "log_mel_l1": quality.get("log_mel_l1"),
            "rtf": quality.get("rtf"),
            "parameters": params,
            "mel": card.mel,
            "sources": [s.describe() for s in card.sources],
            "body": card.body,
        })
    return rows


def _num(value: Any, fmt: str) -> str:
    return "not measured" if value is None else format(value, fmt)


def _demote(body: str, levels: int) -> str:
    """Card prose with its headings pushed ``levels`` deeper (the card's own title dropped)."""
    out, in_fence = [], False
    for line in body.strip().splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and re.match(r"^#\s", line):
            continue
        if not in_fence and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out).strip()


def models_markdown() -> str:
    """The model table and one section per card."""
    from zoo.core.mel import PRESETS

    rows = model_rows()
    lines = [
        "| model | architecture | STOI | PESQ-wb | DNSMOS P.808 | eval-lj MR-STFT | log-mel L1 | RTF (CPU) "
        "| parameters | float32 size | license |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = f"[`{r['name']}`](#{r['name'].replace('.', '')})" + (" (default)" if r["default"] else "")
        size = f"{r['parameters'] * 4 / 2**20:.1f} MiB" if r["parameters"] else "no weights"
        lines.append(f"| {name} | {r['architecture']} | {_num(r['stoi'], '.3f')} | {_num(r['pesq_wb'], '.2f')} "
                     f"| {_num(r['dnsmos_p808'], '.2f')} | {_num(r['mr_stft'], '.3f')} "
                     f"| {_num(r['log_mel_l1'], '.3f')} "
                     f"| {_num(r['rtf'], '.2f')} | {r['parameters']:,} | {size} | {_cell(r['license'])} |")
    lines.append("")
    for r in rows:
        preset = next((k for k, v in PRESETS.items() if v == r["mel"]), None)
        mel = f"the `{preset}` preset" if preset else f"a custom `MelConfig` (fingerprint `{r['mel'].fingerprint()}`)"
        src = "; ".join(f"`{s}`" for s in r["sources"]) or "none (no weights)"
        lines += [
            f"### {r['name']}",
            "",
            f"Architecture `{r['architecture']}`, license {r['license']}, mel features: {mel} "
            f"({r['mel'].sample_rate} Hz, hop {r['mel'].hop_length}, {r['mel'].n_mels} bands). Weights: {src}.",
            "",
            _demote(r["body"], 2),
            "",
        ]
    return "\n".join(lines)


def no_weights_markdown() -> str:
    """One bullet per architecture without any pretrained model card (or a sentence saying there is none)."""
    import zoo
    from zoo.registry.plugins import get_registry

    reg = get_registry()
    bare = [a for a in zoo.list_architectures() if not any(c.architecture == a for c in reg.cards.values())]
    if not bare:
        return "Every registered architecture has at least one pretrained model."
    lines = []
    for a in bare:
        doc = (reg.architecture(a).cls.__doc__ or "").strip().splitlines()
        lines.append(f"- `{a}`" + (f": {_cell(doc[0])}" if doc else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------- the CLI reference
def _subparsers(parser: argparse.ArgumentParser) -> tuple[dict[str, argparse.ArgumentParser], dict[str, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return dict(action.choices), helps
    return {}, {}


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | meaning | default |", "|---|---|---|"]
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if a.option_strings:
            metavar = "" if a.nargs == 0 else " " + (a.metavar or a.dest.upper())
            name = ", ".join(f"`{o}{metavar}`" for o in a.option_strings)
        else:
            name = f"`{a.metavar or a.dest}`" + ("..." if a.nargs in ("+", "*") else "")
            if a.nargs in ("?", "*"):
                name += " (optional)"
        text = a.help or ""
        if a.choices:
            text += f" (one of {', '.join(f'`{c}`' for c in a.choices)})"
        if a.required and a.option_strings:
            text += " **required**"
        shown = a.option_strings and a.default is not None and a.default is not False and a.nargs != 0
        default = f"`{a.default}`" if shown and a.default != argparse.SUPPRESS else ""
        rows.append(f"| {name} | {_cell(text)} | {_cell(default)} |")
    return rows


def cli_markdown() -> str:
    """Every ``zoo`` subcommand: what it does, its usage line and its arguments."""
    from zoo.cli.app import build_parser

    parser = build_parser()
    subs, helps = _subparsers(parser)
    lines = ["Commands: " + ", ".join(f"[`zoo {n}`](#zoo-{n})" for n in subs) + ".", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    for name, sub in subs.items():
        what = helps.get(name, "")
        lines += [f"## zoo {name}", "", _cell(what[:1].upper() + what[1:]) + ".", "",
                  "```text", sub.format_usage().strip(), "```", ""]
        lines += _argument_rows(sub) + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------- the hook
def expand(markdown: str) -> str:
    """Replace every marker of ``markdown`` (see the module docstring)."""
    if _MODELS in markdown:
        markdown = markdown.replace(_MODELS, models_markdown())
    if _NO_WEIGHTS in markdown:
        markdown = markdown.replace(_NO_WEIGHTS, no_weights_markdown())
    if _CLI in markdown:
        markdown = markdown.replace(_CLI, cli_markdown())
    markdown = _SOURCE.sub(lambda m: source_block(m.group(1), m.group(2)), markdown)
    return _DATA.sub(lambda m: data_value(m.group(1), m.group(2), m.group(3)), markdown)


def strip_roles(html: str) -> str:
    """Sphinx roles left in rendered docstrings become plain code (``~`` keeps the last name only)."""
    return _ROLE.sub(lambda m: f"<code>{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}</code>", html)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return strip_roles(html)
