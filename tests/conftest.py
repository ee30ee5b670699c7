"""Shared test set-up: isolated caches, the parity fixture folder, small helpers."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Never touch a user's real caches, and never the network: every test session sees fresh, private cache
# folders, whatever the developer's environment says (assigned, not setdefault). Compiled kernels go to a
# folder of this checkout (ignored by git), not the user's cache, and are kept between sessions: rebuilding
# them every run would cost more than the isolation is worth.
_TMP = Path(tempfile.mkdtemp(prefix="zoo-tests-"))
ISOLATED_ENV = {
    "ZOO_CACHE": str(_TMP / "zoo-cache"),
    "HF_HOME": str(_TMP / "hf-home"),
    "HF_HUB_CACHE": str(_TMP / "hf-home" / "hub"),
    # No Hub but the local test servers: tests of the Hub path point HF_ENDPOINT at tests/hubserver.py; any
    # other Hub access goes to a closed local port and fails at once. (HF_HUB_OFFLINE is not set here:
    # huggingface_hub reads it once, at import, so the Hub tests could not unset it again.)
    "HF_ENDPOINT": "http://127.0.0.1:9",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ZOO_KERNEL_CACHE": str(REPO / ".pytest_cache" / "zoo-kernels"),
    "TQDM_DISABLE": "1",
}
os.environ.update(ISOLATED_ENV)
for _name in ("HF_HUB_OFFLINE", "HF_TOKEN", "ZOO_LOCK"):
    os.environ.pop(_name, None)
# huggingface_hub reads HF_HUB_OFFLINE once, when its constants module is first imported (its package
# import is lazy): import it now, so that a test setting HF_HUB_OFFLINE cannot switch later tests offline.
import huggingface_hub.constants  # noqa: E402, F401


def _loopback_only(address: object) -> bool:
    """True for addresses tests may connect to: loopback hosts and Unix sockets."""
    if not isinstance(address, tuple):
        return True  # AF_UNIX path
    host = str(address[0])
    return host in ("localhost", "::1") or host.startswith("127.") or host == "0.0.0.0"


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Refuse connections to anything but loopback for the whole session: a test reaching the internet
    fails with a clear error instead of passing on a developer's machine and hanging in CI."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guard(address: object) -> None:
        if not _loopback_only(address):
            raise OSError(f"tests must not use the network (tried to connect to {address!r}); use "
                          "tests/hubserver.py with HF_ENDPOINT")

    def connect(self: socket.socket, address: object) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        guard(address)
        return real_connect_ex(self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]


def parity_dir() -> Path:
    """``$ZOO_PARITY_DIR`` or ``<repo>/../shared/parity``."""
    return Path(os.environ.get("ZOO_PARITY_DIR", REPO.parent / "shared" / "parity"))


def shared_dir() -> Path:
    """``$ZOO_SHARED_DIR`` or ``<repo>/../shared`` (the evaluation and training data live under it)."""
    return Path(os.environ.get("ZOO_SHARED_DIR", REPO.parent / "shared"))


def full_key_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` from a parity ``full_keys*.json`` file (a list of {name, shape, dtype} records)."""
    import json

    data = json.loads(path.read_text())
    records = next(v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict))
    return {r["name"]: tuple(r["shape"]) for r in records}


@pytest.fixture(scope="session")
def parity_root() -> Path:
    root = parity_dir()
    if not root.is_dir():
        pytest.fail(f"parity fixtures not found at {root}; set ZOO_PARITY_DIR")
    return root


def _data_folder(name: str, min_wavs: int) -> Path:
    folder = shared_dir() / "data" / name
    wavs = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if len(wavs) < min_wavs:
        pytest.fail(f"test data {folder} is missing or holds {len(wavs)} WAV files (need {min_wavs})")
    return folder


@pytest.fixture(scope="session")
def eval_dir() -> Path:
    """The LJSpeech evaluation clips (the test fails, never passes vacuously, when they are missing)."""
    return _data_folder("eval-lj", 3)


@pytest.fixture(scope="session")
def train_dir() -> Path:
    """The small training set (fails when missing)."""
    return _data_folder("train-pm", 2)


@pytest.fixture()
def hub_class() -> type:
    """The server class the ``hub`` fixture starts (a test module overrides this fixture for another one)."""
    from tests.hubserver import FakeHub

    return FakeHub


@pytest.fixture()
def hub(hub_class, tmp_path, monkeypatch):
    """The local Hub server (tests/hubserver.py) as ``HF_ENDPOINT``, with fresh Hub and zoo caches."""
    server = hub_class().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "zoo-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.stop()
