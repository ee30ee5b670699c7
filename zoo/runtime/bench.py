"""Speed and memory measurement of vocoders: real-time factor, samples/s, peak memory.

RTF is compute seconds per second of audio produced (vocoding only; features excluded), the median of
repeated runs after warm-up. Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA and, on CPU, the
peak resident set size above the pre-run baseline, sampled from ``/proc/self/statm`` by a thread.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import statistics
import threading
import time
from typing import Any

import torch
import torchaudio
from torch import Tensor

from zoo.core.vocoder import Vocoder
from zoo.kernels import native


@dataclasses.dataclass
class BenchResult:
    model: str
    device: str
    dtype: str
    batch: int
    seconds: float
    rtf: float
    samples_per_s: float
    peak_mem_mb: float
    runs: int
    threads: int
    #: The compiled kernel path this model/dtype took (ISA variant) or the torch fallback and why.
    kernels: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _RssSampler:
    """Samples this process's RSS every few milliseconds; ``peak`` is the maximum seen (bytes)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = self.baseline = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource  # Unix only: imported where /proc is missing

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def machine_info() -> dict[str, Any]:
    """The machine and library versions a benchmark ran on (recorded in every JSON result)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and "cpu" not in info:
                    info["cpu"] = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    # the vector extensions the compiled kernels and torch pick their code by ("AMD EPYC" alone
                    # names CPUs with and without AVX-512)
                    flags = set(line.split(":", 1)[1].split())
                    info["simd"] = [f for f in SIMD_FLAGS if f in flags]
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info["torchaudio"] = torchaudio.__version__
    info["vocoder_zoo"] = importlib.metadata.version("vocoder-zoo")  # the installed package's version

    info["kernels"] = {k.name: k.summary() for k in native.statuses()}
    info["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_mel(model: Vocoder, seconds: float, batch: int = 1, seed: int = 0) -> Tensor:
    """Features of ``seconds`` of a noisy harmonic signal, so the network sees its trained value range."""
    m = model.mel_config
    frames = max(1, int(round(seconds * m.sample_rate / m.hop_length)))
    g = torch.Generator().manual_seed(seed)
    n = frames * m.hop_length
    t = torch.arange(n) / m.sample_rate
    audio = 0.3 * torch.sin(2 * torch.pi * 150 * t * (1 + 0.3 * torch.sin(2 * torch.pi * 0.5 * t)))
    audio = audio + 0.01 * torch.randn(n, generator=g)
    mel = model.mel(audio.float())[..., :frames].unsqueeze(0).expand(batch, -1, -1).contiguous()
    return mel.to(model.device)


def bench_model(model: Vocoder, *, name: str, seconds: float = 5.0, batch: int = 1, runs: int = 3,
                warmup: int = 1, seed: int = 0, warmup_seconds: float | None = None, **sampling: Any) -> BenchResult:
    """Time ``model.vocode`` on a mel of ``seconds`` of audio (a real-looking, fixed random mel).

    ``warmup`` untimed calls come first, on the same mel or, with ``warmup_seconds``, on a shorter one
    (enough to build caches and compiled kernels without doubling the cost of long inputs).
    """
    device = model.device
    m = model.mel_config
    mel = bench_mel(model, seconds, batch, seed)
    frames = mel.shape[-1]
    gen = torch.Generator(device=device).manual_seed(seed)
    warm = mel if warmup_seconds is None else bench_mel(model, warmup_seconds, batch, seed)
    for _ in range(warmup):
        model.vocode(warm, generator=gen, **sampling)
    _sync(device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with _RssSampler() as rss:
        for _ in range(runs):
            _sync(device)
            t0 = time.perf_counter()
            model.vocode(mel, generator=gen, **sampling)
            _sync(device)
            times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = (rss.peak - rss.baseline) / 2**20
    elapsed = statistics.median(times)
    audio_seconds = batch * frames * m.hop_length / m.sample_rate
    return BenchResult(
        model=name, device=str(device), dtype=native.dtype_name(model.dtype), batch=batch,
        seconds=frames * m.hop_length / m.sample_rate, rtf=elapsed / audio_seconds,
        samples_per_s=batch * frames * m.hop_length / elapsed, peak_mem_mb=peak, runs=runs,
        threads=torch.get_num_threads(), kernels=_kernel_path(model),
    )


def _kernel_path(model: Vocoder) -> str:
    """:func:`zoo.kernels.native.kernel_path` of a CPU model; on other devices no compiled kernel runs."""
    if model.device.type != "cpu":
        return f"no compiled kernel on {model.device.type}"
    return native.kernel_path(model.compiled_kernels, model.dtype)


def plot_sweep(results: list[dict[str, Any]], path: str) -> None:
    """Time and peak memory against utterance length, one line per model/dtype (needs matplotlib)."""
    import matplotlib  # optional (not a dependency of the zoo): only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({(r["model"], r["dtype"], r["batch"]) for r in results})
    for key in keys:
        rows = sorted((r for r in results if (r["model"], r["dtype"], r["batch"]) == key), key=lambda r: r["seconds"])
        xs = [r["seconds"] for r in rows]
        label = f"{key[0]} {key[1]} b{key[2]}"
        ax_t.plot(xs, [r["rtf"] * r["seconds"] * r["batch"] for r in rows], marker="o", label=label)
        ax_m.plot(xs, [r["peak_mem_mb"] for r in rows], marker="o", label=label)
    ax_t.set(xlabel="utterance length (s)", ylabel="compute time (s)", title="time")
    ax_m.set(xlabel="utterance length (s)", ylabel="peak memory above baseline (MiB)", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
    ax_t.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
