"""Installing ``examples/plugin`` (the third-party plugin package) the way a user would, without touching the
environment that runs the tests: ``pip install`` into a private target folder, then put it on PYTHONPATH.

Used by ``tests/test_plugin_install.py`` and by the plugin guide's examples in ``tests/test_docs.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugin"


def install_example_plugin(workdir: Path, package: Path = EXAMPLE) -> Path:
    """``pip install --no-deps --no-build-isolation --no-index --target`` of ``package``; returns the target.

    The package is copied into ``workdir`` first, so that pip's build folders never land in the repository.
    """
    src = workdir / "src" / package.name
    shutil.copytree(package, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    target = workdir / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(target.glob("*.dist-info")), "no dist-info: the entry point would be invisible"
    return target


def env_with_site(site: Path, **extra: str) -> dict[str, str]:
    """The current environment with ``site`` first on PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
