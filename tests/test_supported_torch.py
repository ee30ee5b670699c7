"""The torch/torchaudio range pyproject.toml declares, checked against the pair this environment runs.

``.ci/run`` runs the full suite on the newest pair and the core tests on the lowest, with ``ZOO_EXPECT_TORCH``
naming the lowest release (``X.Y``): there this test checks that the venv really has that pair, so a CI run
that silently resolved a newer torch does not pass as a test of the floor.
"""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO


def declared_torch() -> dict[str, Requirement]:
    """The torch and torchaudio requirements of pyproject.toml's ``[project] dependencies``."""
    text = Path(REPO / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert deps, "no [project] dependencies in pyproject.toml"
    reqs = [Requirement(s) for s in re.findall(r'^\s*"([^"]+)"', deps.group(1), re.M)]
    return {r.name: r for r in reqs if r.name in ("torch", "torchaudio")}


def _release(name: str) -> Version:
    return Version(Version(version(name)).base_version)  # 2.11.0+cu130 -> 2.11.0


def test_installed_pair_is_in_the_declared_range():
    declared = declared_torch()
    assert set(declared) == {"torch", "torchaudio"}
    for name, req in declared.items():
        assert req.specifier.contains(_release(name), prereleases=True), f"{name} {version(name)} is not {req}"
    # torchaudio X.Y.Z is built for torch X.Y.Z; the minor release must match.
    torch_v, audio_v = _release("torch"), _release("torchaudio")
    assert (torch_v.major, torch_v.minor) == (audio_v.major, audio_v.minor), (str(torch_v), str(audio_v))
    expect = os.environ.get("ZOO_EXPECT_TORCH")  # .ci/run's lowest-torch run
    if expect:
        floor = min(s.version for s in declared["torch"].specifier if s.operator == ">=")
        assert expect == floor, f".ci/run installs torch {expect}.* but pyproject's floor is {floor}"
        assert f"{torch_v.major}.{torch_v.minor}" == expect, f"torch {torch_v} in the lowest-torch venv, not {expect}.*"


def test_a_mismatched_pair_is_refused_by_name(monkeypatch):
    """pip can put torchaudio 2.11.0 (no torch pin) beside torch 2.4, which fails inside torchaudio's loader
    (``undefined symbol``); importing zoo names the pair to install instead."""
    import zoo.versions

    zoo.versions.check_torch_pair()  # this environment's pair passes
    installed = {"torch": "2.4.1", "torchaudio": "2.11.0"}
    monkeypatch.setattr(zoo.versions, "version", installed.__getitem__)
    with pytest.raises(ImportError, match=r"torchaudio 2\.11\.0 does not match torch 2\.4\.1.*torchaudio==2\.4\.\*"):
        zoo.versions.check_torch_pair()
    installed["torch"] = "2.11.0+cu130"
    zoo.versions.check_torch_pair()  # local version labels and patch releases do not matter
