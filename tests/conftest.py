"""Shared test set-up: isolated caches, the parity fixture folder, small helpers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Never touch a user's real caches, and never the network: every test sees fresh, private cache folders.
_TMP = Path(tempfile.mkdtemp(prefix="zoo-tests-"))
os.environ.setdefault("ZOO_CACHE", str(_TMP / "zoo-cache"))
os.environ.setdefault("HF_HOME", str(_TMP / "hf-home"))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# huggingface_hub reads HF_HUB_OFFLINE once, when its constants module is first imported (its package
# import is lazy): import it now, so that a test setting HF_HUB_OFFLINE cannot switch later tests offline.
import huggingface_hub.constants  # noqa: E402, F401


def parity_dir() -> Path:
    """``$ZOO_PARITY_DIR`` or ``<repo>/../shared/parity``."""
    return Path(os.environ.get("ZOO_PARITY_DIR", REPO.parent / "shared" / "parity"))


def shared_dir() -> Path:
    return REPO.parent / "shared"


@pytest.fixture(scope="session")
def parity_root() -> Path:
    root = parity_dir()
    if not root.is_dir():
        pytest.fail(f"parity fixtures not found at {root}; set ZOO_PARITY_DIR")
    return root


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    return shared_dir() / "data" / "eval-lj"


@pytest.fixture(scope="session")
def train_dir() -> Path:
    return shared_dir() / "data" / "train-pm"


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """The local Hub server (tests/hubserver.py) as ``HF_ENDPOINT``, with fresh Hub and zoo caches."""
    from tests.hubserver import FakeHub

    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()
