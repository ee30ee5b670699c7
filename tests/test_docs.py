"""The documentation site: ``mkdocs build --strict`` passes, the generated pages match the registry and the
CLI, the plugin guide shows the real example package, and every example on the pages that promise it runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

import zoo
from tests.helpers.doc_examples import InProcess, Subprocess, blocks
from tests.helpers.plugin_package import EXAMPLE, env_with_site, install_example_plugin

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# Pages whose every command and code block runs here (the plugin guide has its own test: it installs).
RUN_IN_PROCESS = ["index.md", "quickstart.md", "guides/tts.md", "guides/model-cards.md"]


def _hooks():
    spec = importlib.util.spec_from_file_location("zoo_docs_hooks", DOCS / "hooks" / "zoo_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _workdir(tmp_path: Path) -> Path:
    """A fresh folder holding a copy of the repository's examples/, like a reader's clone."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "examples", work / "examples",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    return work


def _tool_env(**extra: str) -> dict[str, str]:
    """This interpreter's bin folder first on PATH (``zoo``, ``python``), no pytest cache, no bytecode."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "PYTEST_ADDOPTS": "-p no:cacheprovider", "PYTHONDONTWRITEBYTECODE": "1",
            **extra}


# ---------------------------------------------------------------------- the site builds
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=_tool_env(NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out


def test_mkdocs_build_strict_renders_every_page(site):
    for page in ["index", "quickstart/index", "guides/tts/index", "guides/plugins/index", "guides/model-cards/index",
                 "models/index", "theory/likelihood/index", "theory/wavenet/index", "theory/flows/index",
                 "theory/flowavenet_vs_waveglow/index", "theory/parallel_wavenet/index", "theory/gan/index",
                 "reference/cli/index", "reference/api/index", "performance/index", "changelog/index"]:
        assert (site / f"{page}.html").is_file(), f"{page}.html was not built"
    models = (site / "models" / "index.html").read_text()
    for name in zoo.list_models():
        assert name in models
    assert "copy_synthesis.png" in models and (site / "figures" / "copy_synthesis.png").is_file()
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "zoo vocode" in cli and "--mel-config" in cli
    api = (site / "reference" / "api" / "index.html").read_text()
    for name in ["zoo.load", "zoo.create", "zoo.list_models", "zoo.info", "zoo.card", "zoo.check_mel", "zoo.adapt",
                 "zoo.Vocoder", "zoo.VocoderConfig", "zoo.MelConfig", "zoo_register_architectures",
                 "check_vocoder"]:
        assert name in api, f"{name} missing from the API reference"
    assert "A ready, pretrained vocoder in eval mode" in api  # zoo.load's docstring, rendered
    assert ":class:<code>" not in api and "<code>MelMismatchError</code>" in api  # Sphinx roles made plain code
    plugins = (site / "guides" / "plugins" / "index.html").read_text()
    assert "zoo_register_model_cards" in plugins and "f134b388f56100ff" in plugins  # hook source, the card's sha


def test_every_theory_page_has_its_figure_and_measurement_script(site):
    for page in sorted((DOCS / "theory").glob("*.md")):
        text = page.read_text()
        figures = re.findall(r"\]\((\.\./figures/[\w.-]+\.png)\)", text)
        scripts = set(re.findall(r"docs/scripts/[\w]+\.py", text))
        assert figures or page.stem == "flowavenet_vs_waveglow", f"{page.name}: no figure"
        assert scripts, f"{page.name}: names no measurement script"
        for fig in figures:
            assert (page.parent / fig).resolve().is_file(), f"{page.name}: {fig} missing"
        for script in scripts:
            assert (REPO / script).is_file(), f"{page.name}: {script} missing"


# ---------------------------------------------------------------------- generated pages
def test_model_list_is_the_registry():
    hooks = _hooks()
    table = hooks.models_markdown()
    rows = [ln for ln in table.splitlines() if ln.startswith("| [`")]
    assert [re.search(r"`([^`]+)`", r).group(1) for r in rows] == zoo.list_models()
    for row, name in zip(rows, zoo.list_models(), strict=True):
        card = zoo.card(name)
        assert card.license in row
        quality = card.quality.get("eval-lj", {})
        if "mr_stft" in quality:
            assert f"{quality['mr_stft']:.3f}" in row
        assert f"### {name}" in table
    with_cards = {zoo.card(n).architecture for n in zoo.list_models()}
    bare = hooks.no_weights_markdown()
    for arch in zoo.list_architectures():
        assert (f"- `{arch}`" in bare) == (arch not in with_cards), arch


def test_cli_reference_is_the_parser():
    from zoo.cli.app import build_parser

    text = _hooks().cli_markdown()
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert subs
    for name, sub in subs.items():
        assert f"## zoo {name}\n" in text
        section = text.split(f"## zoo {name}\n", 1)[1].split("\n## zoo ", 1)[0]
        for action in sub._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"`{opt}" in section, f"zoo {name}: {opt} missing from the CLI reference"


def test_data_placeholders_and_sources_resolve():
    hooks = _hooks()
    assert hooks.expand("{{ data flowavenet_vs_waveglow.json waveglow.parameters ,d }}") == "2,818,588"
    with pytest.raises(ValueError, match="no key"):
        hooks.expand("{{ data flowavenet_vs_waveglow.json waveglow.nope }}")
    code = hooks.expand("<!-- zoo:source zoo.registry.hookspecs:zoo_register_architectures -->")
    assert code.startswith('```python title="zoo/registry/hookspecs.py: zoo_register_architectures"')
    assert "def zoo_register_architectures(register" in code


# ---------------------------------------------------------------------- examples run
def _editable_install_is_active(args: list[str]) -> None:
    """The quick start's ``pip install -e .`` is what CI runs before the tests (.ci/run): check its result."""
    assert args in (["-e", "."], ["-e", ".[test]"]), f"unexpected install command in the docs: pip install {args}"
    assert Path(zoo.__file__).resolve().is_relative_to(REPO), "zoo is not imported from this checkout"
    assert shutil.which("zoo", path=_tool_env()["PATH"]), "the zoo command is not installed"


@pytest.mark.parametrize("page", RUN_IN_PROCESS)
def test_page_examples_run(page, tmp_path):
    from zoo.registry.plugins import get_registry

    get_registry(reload=True)
    work = _workdir(tmp_path)
    markdown = (DOCS / page).read_text()
    assert any(b.lang == "python" for b in blocks(markdown)), f"{page} has no Python example"
    steps = InProcess(work, _editable_install_is_active).run_page(markdown, page)
    outputs = "\n".join(s.output for s in steps)
    if page == "quickstart.md":
        clip = sf.info(str(work / "examples" / "LJ001-0001.wav"))
        for wav, frames in (("out.wav", clip.frames), ("copy.wav", 3 * 22050)):
            info = sf.info(str(work / wav))
            assert info.samplerate == 22050 and abs(info.frames - frames) < 256, wav
        assert all(name in outputs for name in zoo.list_models())
        assert (work / "my-hifigan" / "model.safetensors").is_file()
    if page == "guides/tts.md":
        for wav in ("tts.wav", "tts_cli.wav", "offline.wav"):
            assert sf.info(str(work / wav)).frames > 22050, wav
        assert "the features differ" in outputs and "padding" in outputs
        assert "LockError" in outputs


def test_plugin_guide_shows_the_whole_example_package():
    """The guide is plain Markdown (no includes, no HTML comments): each file of the package is written out,
    and must equal the file."""
    text = (DOCS / "guides" / "plugins.md").read_text()
    assert "--8<--" not in text and "<!--" not in text
    listed = {b.listing: b.body for b in blocks(text) if b.listing}
    files = {p.relative_to(REPO).as_posix() for p in EXAMPLE.rglob("*")
             if p.is_file() and p.suffix in {".py", ".toml", ".md"} and "__pycache__" not in p.parts
             and "build" not in p.parts and not any(q.endswith(".egg-info") for q in p.parts)}
    assert files and set(listed) == files, f"shown {sorted(listed)}, package has {sorted(files)}"
    for path, body in listed.items():
        assert body == (REPO / path).read_text(), f"the plugin guide's copy of {path} differs from the file"


def test_plugin_guide_names_every_hook_and_its_type():
    from zoo.registry import hookspecs

    text = (DOCS / "guides" / "plugins.md").read_text()
    hooks = [n for n in vars(hookspecs) if n.startswith("zoo_register_")]
    assert len(hooks) == 4
    for name in hooks:
        hint = getattr(hookspecs, name).__annotations__["register"]
        assert f"| `{name}` |" in text and f"`{hint}` |" in text, name


def test_plugin_guide_examples_run(tmp_path):
    """The guide's commands and code, in a fresh shell and interpreter: install, list, load, test, convert."""
    work = _workdir(tmp_path)
    env = _tool_env()
    runner = Subprocess(work, lambda args: None, env)

    def pip(args: list[str]) -> None:
        assert args == ["./examples/plugin"], f"unexpected install command in the plugin guide: pip install {args}"
        site_dir = install_example_plugin(tmp_path / "pip", package=work / "examples" / "plugin")
        runner.env = env_with_site(site_dir, **{k: v for k, v in env.items() if k != "PYTHONPATH"})

    runner.pip = pip
    steps = runner.run_page((DOCS / "guides" / "plugins.md").read_text(), "guides/plugins.md")
    kinds = [s.kind for s in steps]
    assert kinds.index("pip") < kinds.index("shell"), "the guide must install before it runs commands"
    outputs = {s.source: s.output for s in steps}
    assert "noise.demo" in outputs["zoo list -v"] and "zoo-noise" in outputs["zoo list -v"]
    assert "sha256: f134b388" in outputs["zoo info noise.demo"]
    assert re.search(r"\b2 passed\b", outputs["python -m pytest examples/plugin/tests"])
    python_out = "\n".join(s.output for s in steps if s.kind == "python")
    assert "noise 0.5" in python_out and "torch.Size([22016])" in python_out
