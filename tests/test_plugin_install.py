"""A real third-party plugin distribution, built and installed with pip, seen by a fresh interpreter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.plugin_package import EXAMPLE, env_with_site, install_example_plugin


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """``pip install --no-deps --no-build-isolation`` of examples/plugin into a private target folder."""
    target = install_example_plugin(tmp_path_factory.mktemp("plugin"))
    assert list(target.glob("zoo_noise-*.dist-info")), "no dist-info: the entry point would be invisible"
    return target


def _run(code: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_with_site(site, **env),
                          timeout=300)


def test_installed_plugin_is_listed_and_loadable(installed_plugin):
    code = (
        "import json, torch, zoo\n"
        "voc = zoo.load('noise')\n"
        "audio = voc(voc.mel(torch.randn(22050) * 0.1), generator=torch.Generator().manual_seed(0))\n"
        "print(json.dumps({'archs': zoo.list_architectures(), 'models': zoo.list_models(),"
        " 'gain': float(voc.gain), 'n': audio.shape[-1], 'card': zoo.info('noise.demo')['license']}))\n"
    )
    proc = _run(code, installed_plugin)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "noise" in out["archs"] and "griffinlim" in out["archs"]
    assert "noise.demo" in out["models"]
    assert out["gain"] == 0.5 and out["n"] == 86 * 256 and out["card"] == "mit"


def test_installed_plugin_passes_the_conformance_kit(installed_plugin):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(installed_plugin)},
        cwd=installed_plugin,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_blocked_plugin_disappears(installed_plugin):
    proc = _run("import zoo; print('noise' in zoo.list_architectures())", installed_plugin,
                ZOO_DISABLE_PLUGINS="noise")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_broken_plugin_is_reported_not_fatal(installed_plugin, tmp_path):
    """A plugin whose import fails shows up in `zoo list --verbose`; the rest keeps working."""
    broken = tmp_path / "site"
    shutil.copytree(installed_plugin, broken)
    (broken / "zoo_noise" / "__init__.py").write_text("raise ImportError('missing native library')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "list", "--verbose"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(broken)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "griffinlim" in proc.stdout
    assert "noise" in proc.stdout and "FAILED" in proc.stdout and "missing native library" in proc.stdout
    # One clear line, without Python's "file:line: PluginWarning" header and the zoo's source line under it.
    assert proc.stderr == ("zoo: warning: zoo plugin 'noise' failed to load: ImportError: missing native library "
                           "(details: `zoo list -v`)\n")
    # Loading its model points at the failed plugin instead of "unknown model".
    proc = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "info", "noise.demo"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(broken)},
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        "zoo: error: model 'noise.demo' is not available: zoo plugin 'noise' (zoo-noise), which would provide it, "
        "has a problem: failed to load: ImportError: missing native library (see `zoo list -v`)")


def test_stale_sha256_pin_is_named_once(installed_plugin, tmp_path):
    """An author who regenerated the weights but kept the card's old sha256 is told so, the source named once."""
    site = tmp_path / "site"
    shutil.copytree(installed_plugin, site)
    card = site / "zoo_noise" / "noise.demo.md"
    old = "f134b388f56100ff2844607df663b63808671e554ef028c430d3029b3996068e"
    card.write_text(card.read_text().replace(old, "ab" * 32))
    proc = _run("import zoo; zoo.load('noise')", site)
    assert proc.returncode == 1
    message = proc.stderr.split("SourceUnavailable: ", 1)[1]
    assert message.count("zoo_noise/noise_demo.safetensors") == 2, message  # the source once, then the file path
    assert message.count("package zoo-noise:zoo_noise/noise_demo.safetensors") == 1, message
    assert f"sha256 mismatch: the card pins {'ab' * 32} but the file" in message and old in message
    assert "the card's sha256 is stale: pin the new one" in message
