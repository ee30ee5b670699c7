"""Small C kernels compiled on first use and loaded with ``ctypes`` (the fast paths' shared build step).

A kernel is one C source string. :func:`build` compiles it with the system C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``; ``-O3 -march=native`` plus the kernel's flags and
``$ZOO_KERNEL_CFLAGS``) into a per-user cache (``$ZOO_KERNEL_CACHE`` or ``~/.cache/vocoder-zoo/kernels``),
keyed by the source, the flags and this CPU's model and flags, and loads it. Without a compiler, when the
build fails, or with ``ZOO_DISABLE_KERNEL=1``, it returns ``None`` and the caller takes its pure-torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

BASE_FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-shared", "-fPIC", "-pthread")

_lock = threading.Lock()
_built: dict[str, ctypes.CDLL | None] = {}


def cache_dir() -> Path:
    """Where compiled kernels are kept (``$ZOO_KERNEL_CACHE`` or ``~/.cache/vocoder-zoo/kernels``)."""
    root = os.environ.get("ZOO_KERNEL_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "vocoder-zoo" / "kernels"


def _cpu_tag() -> str:
    tag = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags")):
                    tag += line
    except OSError:
        pass
    return tag


def _flags(extra: tuple[str, ...]) -> list[str]:
    return [*BASE_FLAGS, *extra, *os.environ.get("ZOO_KERNEL_CFLAGS", "").split()]


def _compile(name: str, source: str, flags: list[str], path: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        out = Path(tmp) / path.name
        subprocess.run([cc, *flags, str(src), "-o", str(out), "-lm", "-lpthread"], check=True, capture_output=True,
                       timeout=180)
        os.replace(out, path)


def build(name: str, source: str, flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The kernel ``name`` compiled from ``source`` (once per process, cached on disk); ``None`` when it
    cannot be built or ``ZOO_DISABLE_KERNEL`` is set."""
    if os.environ.get("ZOO_DISABLE_KERNEL"):
        return None
    all_flags = _flags(flags)
    key = f"{name}_" + hashlib.sha256("\0".join([source, *all_flags, _cpu_tag()]).encode()).hexdigest()[:16]
    with _lock:
        if key in _built:
            return _built[key]
        path = cache_dir() / f"{key}.so"
        lib: ctypes.CDLL | None
        try:
            if not path.exists():
                _compile(name, source, all_flags, path)
            lib = ctypes.CDLL(str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError):
            lib = None
        _built[key] = lib
        return lib


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    """A tensor's data pointer for a kernel argument (``NULL`` for ``None``); it must be contiguous."""
    if t is None:
        return ctypes.c_void_p(0)
    if not t.is_contiguous():
        raise ValueError("kernel arguments must be contiguous")
    return ctypes.c_void_p(t.data_ptr())


HUGE_PAGE = 2 << 20


def huge_page_copies(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Contiguous CPU copies of ``tensors`` laid out in one anonymous mapping advised for transparent huge
    pages (``madvise(MADV_HUGEPAGE)``, 2 MiB aligned, each copy 64-byte aligned), for weights that a kernel
    streams from memory on every step: with 4 KiB pages, reading tens of MB per step misses the TLB on every
    page. The copies hold the same values; where the mapping or the advice is unavailable (not Linux, THP
    disabled, ``ZOO_NO_HUGE_PAGES=1``) they are ordinary ``contiguous()`` clones."""
    if os.environ.get("ZOO_NO_HUGE_PAGES") or not hasattr(mmap, "MADV_HUGEPAGE") \
            or any(t.device.type != "cpu" for t in tensors):
        return [t.detach().contiguous().clone() for t in tensors]
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.numel() * t.element_size() // 64) * 64
    length = -(-(total + HUGE_PAGE) // HUGE_PAGE) * HUGE_PAGE
    try:
        region = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except (OSError, ValueError):
        return [t.detach().contiguous().clone() for t in tensors]
    buf = torch.frombuffer(region, dtype=torch.uint8)  # keeps the mapping alive while any view lives
    start = (-buf.data_ptr()) % HUGE_PAGE
    try:
        region.madvise(mmap.MADV_HUGEPAGE, start, length - start - (length - start) % HUGE_PAGE)
    except OSError:
        pass  # THP unavailable: ordinary pages, same values
    out = []
    for t, off in zip(tensors, offsets, strict=True):
        n = t.numel() * t.element_size()
        view = buf[start + off:start + off + n].view(t.dtype).view(t.shape)
        view.copy_(t)
        out.append(view)
    return out
