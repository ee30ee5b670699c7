"""The compiled kernels' loader: shared libraries built at install, loaded with ``ctypes``, checked, dispatched.

``pip install`` (``setup.py``) compiles every kernel's C sources (``zoo/kernels/csrc/``, a plugin's
``csrc/``) into one shared library per kernel, each body once per ISA level (``generic`` portable C,
``avx2``, ``avx512``, ``avx512bf16``), and records the outcome beside it (``<library>.build.json``).
Nothing is compiled at inference time. :func:`kernel` loads a library once per process and before its
first call

* refuses, with :class:`KernelLoadError`, a library whose structs differ from their ``ctypes`` mirrors
  (the library exports a size/offset table of every struct Python mirrors), or that was built from other
  sources than the ones beside it (an in-place build whose C was edited since: rebuild with
  ``pip install -e .``);
* selects the ISA level: the best one compiled that this CPU runs (chosen by the library with
  ``__builtin_cpu_supports``), or with ``$ZOO_KERNEL_ISA`` (one of :data:`ISA_LEVELS`) the highest level
  up to that one that the library has (an error if this CPU cannot run it), or per call site
  :meth:`KernelLibrary.use` (the tests run every level this way).

Where the library was not built (no C compiler at install, or its build failed) or with
``ZOO_DISABLE_KERNEL=1``, :func:`kernel` returns ``None`` and the caller takes its pure-torch path;
:func:`status` says which and why (``zoo info --kernels``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")

#: The ISA levels a kernel body is compiled for, in the libraries' numbering (0 = portable C).
ISA_LEVELS = ("generic", "avx2", "avx512", "avx512bf16")
#: What each level needs of the CPU (as ``/proc/cpuinfo`` names it), for reports.
ISA_NEEDS = {"generic": "nothing", "avx2": "avx2, fma", "avx512": "avx2, fma, avx512f, avx512bw, avx512dq, avx512vl",
             "avx512bf16": "avx512 and avx512_bf16"}


class KernelLoadError(RuntimeError):
    """A kernel library exists but cannot be used as built (layout mismatch, stale build, load failure,
    or an ISA level asked for that it lacks or this CPU cannot run)."""


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """A kernel library: ``name`` (for reports), where it is (``directory()/stem.so``), the prefix of its
    exported ISA and layout functions, the ``ctypes`` structs Python passes it (each with a ``c_name``),
    ``configure(lib)``, which declares the functions' result and argument types and checks constants, and
    ``path(lib or None, reason, dtype)``: the path a model that uses the kernel for ``dtype`` operands takes
    (for ``zoo info --kernels`` and ``zoo bench``; which models use it, they declare themselves)."""

    name: str
    directory: Callable[[], Path]
    stem: str
    prefix: str
    structs: tuple[type[ctypes.Structure], ...] = ()
    configure: Callable[[ctypes.CDLL], None] | None = None
    path_of: Callable[[KernelLibrary | None, str, torch.dtype], str] | None = None

    @property
    def path(self) -> Path:
        return self.directory() / (self.stem + ".so")

    @property
    def record_path(self) -> Path:
        return self.directory() / (self.stem + ".build.json")


@dataclasses.dataclass
class KernelStatus:
    """Which path a kernel takes here and why (``state``: ``loaded``, ``disabled``, ``no-compiler``,
    ``build-failed``, ``not-built`` or ``error``)."""

    name: str
    state: str
    reason: str
    library: str
    isa: str | None = None
    compiled: list[str] = dataclasses.field(default_factory=list)
    cpu: list[str] = dataclasses.field(default_factory=list)
    build: dict[str, Any] | None = None

    @property
    def loaded(self) -> bool:
        return self.state == "loaded"

    def summary(self) -> str:
        """One line: the variant in use, or the fallback and its reason."""
        if self.loaded:
            return f"compiled, {self.isa} variant ({self.reason}; compiled: {', '.join(self.compiled)})"
        if self.state == "error":
            return f"unusable (the models that use it raise this error): {self.reason}"
        return f"pure-torch fallback: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("build")
        d["summary"] = self.summary()
        return d


class _Layout(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("field", ctypes.c_char_p), ("offset", ctypes.c_long),
                ("size", ctypes.c_long)]


def _levels(mask: int) -> list[str]:
    return [name for i, name in enumerate(ISA_LEVELS) if mask >> i & 1]


class KernelLibrary:
    """A loaded, checked kernel library: ``lib`` is the ``ctypes.CDLL``; :attr:`isa` the level in use."""

    def __init__(self, spec: KernelSpec, lib: ctypes.CDLL) -> None:
        self.spec, self.lib = spec, lib
        for suffix in ("isa_compiled", "isa_supported", "isa_active", "isa_select"):
            fn = getattr(lib, f"{spec.prefix}_{suffix}")
            fn.restype = ctypes.c_int
            if suffix == "isa_select":
                fn.argtypes = [ctypes.c_int]
        self.compiled = _levels(getattr(lib, f"{spec.prefix}_isa_compiled")())
        self.cpu = _levels(getattr(lib, f"{spec.prefix}_isa_supported")())
        self._select_lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lib, name)

    @property
    def isa(self) -> str:
        """The ISA level the library's calls run now."""
        return ISA_LEVELS[getattr(self.lib, f"{self.spec.prefix}_isa_active")()]

    def runnable(self) -> list[str]:
        """The levels compiled in and runnable on this CPU."""
        return [level for level in self.compiled if level in self.cpu]

    def select(self, level: str | None) -> str:
        """Run later calls on ``level`` (``None``: the best compiled level this CPU runs); returns the level.
        Raises :class:`KernelLoadError` for a level not compiled in or that this CPU cannot run."""
        if level is not None and level not in ISA_LEVELS:
            raise KernelLoadError(f"unknown ISA level {level!r}; expected one of {', '.join(ISA_LEVELS)}")
        with self._select_lock:
            got = getattr(self.lib, f"{self.spec.prefix}_isa_select")(-1 if level is None else ISA_LEVELS.index(level))
        if got < 0:
            where = ("was not compiled into " + str(self.spec.path) if level not in self.compiled
                     else f"needs {ISA_NEEDS[level]}, which this CPU lacks")
            raise KernelLoadError(f"the {self.spec.name} kernel cannot run ISA level {level!r}: it {where} "
                                  f"(compiled: {', '.join(self.compiled)}; this CPU runs: {', '.join(self.cpu)})")
        return ISA_LEVELS[got]

    @contextlib.contextmanager
    def use(self, level: str | None) -> Iterator[KernelLibrary]:
        """Run the calls inside the ``with`` block on ``level`` (a process-wide choice: not for concurrent use)."""
        before = self.isa
        self.select(level)
        try:
            yield self
        finally:
            self.select(before)


_lock = threading.Lock()
_specs: dict[str, KernelSpec] = {}
_loaded: dict[str, KernelLibrary | None] = {}
_status: dict[str, KernelStatus] = {}
_errors: dict[str, KernelLoadError] = {}


def register(spec: KernelSpec) -> KernelSpec:
    """Make ``spec`` known to :func:`kernel` and :func:`statuses` (each kernel's binding module does this)."""
    _specs[spec.name] = spec
    return spec


def read_record(spec: KernelSpec) -> dict[str, Any] | None:
    """The build record written at install beside the library, or ``None`` when there is none."""
    try:
        return json.loads(spec.record_path.read_text())
    except (OSError, ValueError):
        return None


def _not_loaded(spec: KernelSpec, record: dict[str, Any] | None) -> KernelStatus:
    lib = str(spec.path)
    if os.environ.get("ZOO_DISABLE_KERNEL"):
        return KernelStatus(spec.name, "disabled", "disabled by ZOO_DISABLE_KERNEL", lib)
    if record is None:
        return KernelStatus(spec.name, "not-built", f"{lib} was never built (no build record: the package was not "
                            "installed with pip from its sources; run pip install -e .)", lib)
    state = {"no-compiler": "no-compiler", "failed": "build-failed"}.get(record.get("status", ""), "not-built")
    what = {"no-compiler": "not built at install", "build-failed": "its build failed at install"}.get(
        state, "the library is missing although its build record says it was built")
    return KernelStatus(spec.name, state, f"{what}: {record.get('reason') or record.get('status')}", lib,
                        build=record)


def _check_sources(spec: KernelSpec, record: dict[str, Any]) -> None:
    """Refuse an in-place library built from other sources than the ones beside it."""
    root = spec.directory() / record.get("root", ".")
    for rel, digest in record.get("sources", {}).items():
        src = root / rel
        if src.is_file() and hashlib.sha256(src.read_bytes()).hexdigest() != digest:
            raise KernelLoadError(f"{spec.path} was built from another version of {src.resolve()}; rebuild the "
                                  "kernels (pip install -e .)")


def _check_layout(spec: KernelSpec, lib: ctypes.CDLL) -> None:
    """Compare the library's struct size/offset table with the ``ctypes`` mirrors; raise on any difference."""
    fn = getattr(lib, f"{spec.prefix}_layout")
    fn.restype = ctypes.POINTER(_Layout)
    table = fn()
    c_side: dict[str, dict[str, tuple[int, int]]] = {}
    i = 0
    while table[i].type is not None:
        e = table[i]
        c_side.setdefault(e.type.decode(), {})[e.field.decode()] = (e.offset, e.size)
        i += 1
    problems = []
    for struct in spec.structs:
        c_name = struct.c_name  # type: ignore[attr-defined]
        c = c_side.pop(c_name, None)
        if c is None:
            problems.append(f"struct {c_name} is not in the library's layout table")
            continue
        py = {"": (0, ctypes.sizeof(struct))}
        for name, *_ in struct._fields_:
            field = getattr(struct, name)
            py[name] = (field.offset, field.size)
        for name in sorted(set(c) | set(py)):
            if c.get(name) != py.get(name):
                what = f"{c_name}.{name}" if name else f"sizeof({c_name})"
                problems.append(f"{what}: C (offset, size) {c.get(name)}, Python {py.get(name)}")
    problems += [f"struct {name} in the library has no Python mirror" for name in c_side]
    if problems:
        raise KernelLoadError(f"{spec.path} does not match its Python bindings: " + "; ".join(problems) +
                              " (rebuild the kernels with pip install -e ., or fix the ctypes mirror)")


def _load(spec: KernelSpec) -> KernelLibrary | None:
    record = read_record(spec)
    if os.environ.get("ZOO_DISABLE_KERNEL") or not spec.path.exists():
        _status[spec.name] = _not_loaded(spec, record)
        return None
    if record is not None:
        _check_sources(spec, record)
    try:
        cdll = ctypes.CDLL(str(spec.path))
    except OSError as exc:
        raise KernelLoadError(f"{spec.path} was built but does not load: {exc}") from exc
    _check_layout(spec, cdll)
    if spec.configure is not None:
        spec.configure(cdll)
    lib = KernelLibrary(spec, cdll)
    forced = os.environ.get("ZOO_KERNEL_ISA")
    how = "the best level this CPU runs"
    if forced:
        if forced not in ISA_LEVELS:
            raise KernelLoadError(f"ZOO_KERNEL_ISA={forced!r} is not an ISA level; expected one of "
                                  f"{', '.join(ISA_LEVELS)}")
        # the highest level up to the one asked for that the library has (the WaveNet loop has no avx512bf16)
        level = [lv for lv in lib.compiled if ISA_LEVELS.index(lv) <= ISA_LEVELS.index(forced)][-1]
        lib.select(level)
        how = f"ZOO_KERNEL_ISA={forced}"
    _status[spec.name] = KernelStatus(spec.name, "loaded", how, str(spec.path), lib.isa, lib.compiled, lib.cpu,
                                      record)
    return lib


def kernel(name: str) -> KernelLibrary | None:
    """The kernel library ``name``, loaded and checked once per process; ``None`` when it was not built
    (no compiler at install, a failed build) or ``ZOO_DISABLE_KERNEL`` is set. Raises
    :class:`KernelLoadError` when it exists but cannot be used."""
    with _lock:
        if name in _errors:
            raise _errors[name]
        if name not in _loaded:
            spec = _specs[name]
            try:
                _loaded[name] = _load(spec)
            except KernelLoadError as exc:
                _errors[name] = exc
                _status[name] = KernelStatus(name, "error", str(exc), str(spec.path), build=read_record(spec),
)
                raise
        return _loaded[name]


def status(name: str) -> KernelStatus:
    """Which path the kernel ``name`` takes here and why (loads it first; never raises for a bad library)."""
    with contextlib.suppress(KernelLoadError):
        lib = kernel(name)
        if lib is not None:  # the level in use now (a test or ZOO_KERNEL_ISA may have changed it)
            _status[name].isa = lib.isa
    return _status[name]


def statuses() -> list[KernelStatus]:
    """:func:`status` of every registered kernel (:mod:`zoo.kernels.tapconv` and the plugins' kernels register
    when imported: load the plugins first, e.g. ``zoo.list_architectures()``)."""
    return [status(name) for name in sorted(_specs)]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (the dtype names of the reports)."""
    return str(dtype).replace("torch.", "")


def kernel_path(uses: Mapping[str, Sequence[torch.dtype]], dtype: torch.dtype) -> str:
    """The path CPU inference in ``dtype`` takes for a model that uses the kernels ``uses`` (kernel name -> the
    operand dtypes it has a compiled form for; ``Vocoder.compiled_kernels``), and why."""
    out = []
    for name in sorted(uses):
        if dtype not in uses[name]:
            continue
        if name not in _specs:
            out.append(f"{name}: not registered (its plugin did not load)")
            continue
        spec, st = _specs[name], status(name)
        if st.state == "error":
            out.append(f"{name}: error: {st.reason}")
        elif spec.path_of is not None:
            out.append(f"{name}: " + spec.path_of(_loaded.get(name), st.reason, dtype))
    return "; ".join(out) or "torch only (no compiled kernel for this model and dtype)"


def model_paths(architectures: Mapping[str, Mapping[str, Sequence[torch.dtype]]]) -> dict[tuple[str, str], str]:
    """For each ``(architecture, dtype)`` with a compiled form (``architectures``: name -> its
    ``compiled_kernels``), the path its CPU inference takes here and why; any other runs on torch alone."""
    return {(arch, dtype_name(dt)): kernel_path(uses, dt) for arch, uses in sorted(architectures.items())
            for dt in sorted({d for dts in uses.values() for d in dts}, key=dtype_name)}


_KEPT: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[list[weakref.ref[torch.Tensor]], list[Any], Any]]] = \
    weakref.WeakKeyDictionary()


def kept(owner: Any, key: Hashable, sources: Sequence[torch.Tensor | None], make: Callable[[], T]) -> T:
    """``make()`` (a kernel's packed copy of weights), kept per ``owner`` (a module, held weakly) and ``key``
    until one of ``sources`` (the tensors it is made of) changes: another tensor object (``.to()``,
    ``load_state_dict(assign=True)``; weak references, so a freed one never matches), an in-place change (its
    version counter moved: an optimizer step, ``load_state_dict``), or another dtype or shape. A view (e.g.
    ``conv.weight[..., 0]``, made afresh on every call) is known by the tensor it views and where in it it
    looks, so the same view of the same weights matches. Tensors made under ``torch.inference_mode`` keep no
    version counter: then ``make()`` runs on every call."""
    params = [p for p in sources if p is not None]
    if any(p.is_inference() for p in params):
        return make()
    table = _KEPT.setdefault(owner, {})
    bases = [p if p._base is None else p._base for p in params]  # a view's version counter is its base's
    stamp = [(p._version, p.dtype, p.shape, p.stride(), p.storage_offset()) for p in params]
    hit = table.get(key)
    if (hit is not None and hit[1] == stamp and len(hit[0]) == len(bases)
            and all(ref() is b for ref, b in zip(hit[0], bases, strict=True))):
        return hit[2]
    value = make()
    table[key] = ([weakref.ref(b) for b in bases], stamp, value)
    return value


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
