"""Compiled time-major convolutions on CPU: float32, and bfloat16 operands with float32 sums.

Buffers are time-major, as in :mod:`zoo.kernels.timemajor`: activations ``[rows, C_in]``, outputs
``[rows, C_out]`` float32. :func:`conv_taps` is a dilated conv whose taps all sum in registers (tiles of
up to 6 rows x 64 columns) before one float32 store, or add for a residual update, so its output is read
and written once whatever the number of taps (torch's per-tap products write it once per tap);
:func:`winograd3` is a 3-tap conv through Winograd F(4, 3), its transforms in float32 on blocks of 48
tiles that stay in cache, its six products on the same tiles. Every function splits its work among
``threads`` threads (default ``torch.get_num_threads()``), in blocks of rows, and in groups of columns too
where the rows are few; the threads are torch's own OpenMP team where torch runs on OpenMP
(:func:`thread_pool`; each takes a contiguous run, as torch's loops do), so the convs scale with threads
as torch's kernels around them do and no extra threads compete with torch's for the cores, else a
persistent pool of the kernel's own (whose threads claim blocks one at a time). Each output is summed by
one thread in the same order, so the results are the same bits whatever the number of threads. The C is
``zoo/kernels/csrc/tapconv.c``, built at install for every ISA level and dispatched on this CPU's features
(:mod:`zoo.kernels.native`); where it was not
built (:func:`available` is false) the models keep their pure-torch convs.

*float32* operands (weights :func:`pack`'d as :func:`zoo.kernels.timemajor.tap_weights`' ``[k, C_in, C_out]``)
are tiled with FMAs in the ``avx2`` (8-wide vectors, tiles up to 6 rows x 16 columns) and ``avx512`` /
``avx512bf16`` variants (16-wide, up to 6 x 64) (:func:`native_f32`); where only the plain C ``generic``
variant runs, the float32 fast paths keep using torch's products, which plain C would not beat.

*bfloat16* operands: rounding a conv's inputs and weights to bfloat16 costs a vocoder almost nothing;
rounding its *outputs* does: HiFi-GAN V1 run all in bfloat16 (``model.bfloat16()``, or autocast) loses
1.9% of its multi-resolution STFT distance on LJSpeech, while bfloat16 operands with float32 sums and a
float32 residual stream lose none. torch on CPU has no bfloat16 x bfloat16 -> float32 product; this one
uses ``vdpbf16ps`` in the ``avx512bf16`` variant (:func:`native_bf16`: about twice the float32 rate), plain C
in the others (slower, the same sums up to float32 rounding). Weights are :func:`pack`'d as
``[k, ceil(C_in / 2), C_out, 2]`` (pairs of inputs side by side, the layout ``vdpbf16ps`` reads);
:func:`leaky_relu` makes the next conv's bfloat16 input from a float32 buffer.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch
from torch import Tensor

from zoo.kernels import backend, native


class _Prod(ctypes.Structure):
    c_name = "prod_t"
    _fields_ = [("rows", ctypes.c_long), ("cin", ctypes.c_int), ("cout", ctypes.c_int), ("taps", ctypes.c_int),
                ("dil", ctypes.c_long), ("src", ctypes.c_void_p), ("lds", ctypes.c_long), ("w", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("accumulate", ctypes.c_int), ("f32", ctypes.c_int), ("src2", ctypes.c_void_p),
                ("lds2", ctypes.c_long), ("w2", ctypes.c_void_p), ("cin2", ctypes.c_int),
                ("gate", ctypes.c_void_p), ("ldg", ctypes.c_long), ("keep", ctypes.c_void_p), ("ldk", ctypes.c_long),
                ("gate_doubled", ctypes.c_int)]


class _Leaky(ctypes.Structure):
    c_name = "leaky_t"
    _fields_ = [("x", ctypes.c_void_p), ("ldx", ctypes.c_long), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("cols", ctypes.c_int), ("slope", ctypes.c_float)]


class _Gate(ctypes.Structure):
    c_name = "gate_t"
    _fields_ = [("h", ctypes.c_void_p), ("ldh", ctypes.c_long), ("out", ctypes.c_void_p), ("ldo", ctypes.c_long),
                ("half", ctypes.c_int), ("doubled", ctypes.c_int), ("keep", ctypes.c_int)]


def _configure(lib: ctypes.CDLL) -> None:
    lib.zoo_bf16_native.restype = ctypes.c_int
    lib.zoo_tapconv_use_openmp.argtypes = [ctypes.c_void_p] * 3
    lib.zoo_tapconv_use_openmp.restype = None
    lib.zoo_tapconv_pool_mode.restype = ctypes.c_int
    lib.zoo_tapconv_pool_workers.restype = ctypes.c_int
    lib.zoo_tapconv_use_openmp(*(_NO_OPENMP if os.environ.get("ZOO_KERNEL_POOL") == "pthreads" else _torch_openmp()))
    lib.zoo_f32_native.restype = ctypes.c_int
    job = ctypes.POINTER(_Prod)
    lib.zoo_tap_conv.argtypes = [job, ctypes.c_int]
    lib.zoo_tap_winograd3.argtypes = [job, ctypes.c_int]
    lib.zoo_bf16_leaky_relu.argtypes = [ctypes.POINTER(_Leaky), ctypes.c_long, ctypes.c_int]
    lib.zoo_bf16_gate.argtypes = [ctypes.POINTER(_Gate), ctypes.c_long, ctypes.c_int]
    for fn in (lib.zoo_tap_conv, lib.zoo_tap_winograd3, lib.zoo_bf16_leaky_relu, lib.zoo_bf16_gate):
        fn.restype = None


def _path(lib: native.KernelLibrary | None, reason: str, dtype: torch.dtype) -> str:
    """Which convs a schedule with a compiled ``dtype`` form runs here (``zoo info --kernels``, ``zoo bench``)."""
    chosen = backend.choose(dtype, lib, reason)  # the choice the models make (conv_backend)
    if not chosen.compiled or lib is None:
        return chosen.describe()
    team = "torch's OpenMP team" if lib.zoo_tapconv_pool_mode() == 1 else "the kernel's own thread pool"
    return f"{chosen.describe()}, threads: {team}"


SPEC = native.register(native.KernelSpec(
    "tapconv", lambda: Path(native.__file__).resolve().parent, "_tapconv", "zoo_tapconv",
    (_Prod, _Leaky, _Gate), _configure, path_of=_path))


def load() -> native.KernelLibrary | None:
    """The compiled kernel library; ``None`` where it was not built at install or with ``ZOO_DISABLE_KERNEL``
    (:func:`zoo.kernels.native.kernel`; raises :class:`zoo.kernels.native.KernelLoadError` for a library that
    cannot be used)."""
    return native.kernel("tapconv")


def available() -> bool:
    """Whether the kernel is built and loaded here (the bfloat16 fast paths need it)."""
    return load() is not None


def conv_backend(dtype: torch.dtype, forms: tuple[torch.dtype, ...] = backend.BOTH) -> backend.ConvBackend:
    """Which convolutions a schedule with compiled ``forms`` (operand dtypes) runs for ``dtype`` operands
    here, and why: :func:`zoo.kernels.backend.choose` for the library loaded here (raises
    :class:`zoo.kernels.native.KernelLoadError` for a library that cannot be used)."""
    lib = load()
    return backend.choose(dtype, lib, native.status("tapconv").reason if lib is None else "", forms)


def native_f32() -> bool:
    """Whether float32 products run on the kernel's vector tiles here (AVX2 FMA or AVX-512; the float32 fast
    paths use the kernel only then)."""
    lib = load()
    return bool(lib is not None and lib.zoo_f32_native())


def native_bf16() -> bool:
    """Whether the kernel multiplies with this CPU's AVX-512 BF16 instructions (else it runs in plain C)."""
    lib = load()
    return bool(lib is not None and lib.zoo_bf16_native())


def _lib_or_raise() -> native.KernelLibrary:
    lib = load()
    if lib is None:
        raise RuntimeError(f"the compiled conv kernel is not available: {native.status('tapconv').reason}")
    return lib


def pack(taps: Tensor, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Weights ``[k, C_in, C_out]`` (:func:`zoo.kernels.timemajor.tap_weights`' layout, any float dtype) for
    operands of ``dtype``: bfloat16 ``[k, ceil(C_in / 2), C_out, 2]`` (an odd ``C_in`` gets a zero input
    row), or float32 ``[k, C_in, C_out]`` contiguous."""
    k, c_in, c_out = taps.shape
    if dtype == torch.float32:
        return taps.detach().to(torch.float32).contiguous()
    if dtype != torch.bfloat16:
        raise ValueError(f"the kernel takes float32 or bfloat16 operands, not {dtype}")
    w = taps.detach().to(torch.bfloat16)
    if c_in % 2:
        w = torch.cat([w, w.new_zeros(k, 1, c_out)], dim=1)
    return w.reshape(k, -1, 2, c_out).transpose(2, 3).contiguous()


def _rows_view(t: Tensor, name: str, dtype: torch.dtype) -> None:
    if t.dtype != dtype or t.device.type != "cpu" or t.dim() != 2 or t.stride(1) != 1:
        raise ValueError(f"{name} must be a CPU {dtype} [rows, channels] buffer with contiguous rows, got "
                         f"{tuple(t.shape)} {t.dtype} strides {t.stride()}")


def _threads(threads: int | None) -> int:
    return torch.get_num_threads() if threads is None else max(1, int(threads))


def _bias(bias: Tensor | None, c_out: int) -> tuple[Tensor | None, ctypes.c_void_p]:
    if bias is None:
        return None, ctypes.c_void_p(0)
    b = bias.detach().to(torch.float32).contiguous()
    if b.shape != (c_out,):
        raise ValueError(f"bias must have {c_out} values, got {tuple(b.shape)}")
    return b, ctypes.c_void_p(b.data_ptr())


def _operands(src: Tensor, packed: Tensor, what: str) -> tuple[int, int, int]:
    """``(taps, C_in, C_out)`` of :func:`pack`'d weights for ``src``'s dtype, checked against ``src``."""
    if src.dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"src must be float32 or bfloat16, got {src.dtype}")
    _rows_view(src, "src", src.dtype)
    if packed.dtype != src.dtype:
        raise ValueError(f"{what} are {packed.dtype} but src is {src.dtype}: pack(taps, {src.dtype})")
    if src.dtype == torch.float32:
        k, c_in, c_out = packed.shape
        ok = src.shape[1] == c_in
    else:
        k, pairs, c_out, _ = packed.shape
        c_in = src.shape[1]
        ok = c_in in (2 * pairs - 1, 2 * pairs)
    if not ok:
        raise ValueError(f"{what} {tuple(packed.shape)} do not take src's {src.shape[1]} input channels")
    return k, c_in, c_out


def _job(out: Tensor, src: Tensor, first: int, rows: int, c_in: int, c_out: int, taps: int, dilation: int,
         packed: Tensor, bias: Tensor | None, accumulate: bool) -> tuple[_Prod, Tensor | None]:
    _rows_view(out, "out", torch.float32)
    if out.shape[1] != c_out:
        raise ValueError(f"the weights give {c_out} output channels; out has {out.shape[1]}")
    b, bptr = _bias(bias, c_out)
    start = src.data_ptr() + first * src.stride(0) * src.element_size()
    job = _Prod(rows, c_in, c_out, taps, dilation, start, src.stride(0), packed.data_ptr(), bptr, out.data_ptr(),
                out.stride(0), int(accumulate), int(src.dtype == torch.float32))
    return job, b  # the bias tensor must outlive the call


def _check_rows(src: Tensor, first: int, rows: int, taps: int, dilation: int) -> None:
    """``src`` holds the rows ``rows`` outputs from row ``first`` read with ``taps`` taps ``dilation`` apart."""
    need = first + rows + (taps - 1) * dilation
    if first < 0 or need > src.shape[0]:
        raise ValueError(f"src has {src.shape[0]} rows; {rows} outputs from row {first} with {taps} taps of "
                         f"dilation {dilation} need {need}")


def conv_taps(out: Tensor, src: Tensor, first: int, packed: Tensor, dilation: int, bias: Tensor | None = None,
              *, accumulate: bool = False, plus: tuple[Tensor, Tensor] | None = None,
              threads: int | None = None) -> Tensor:
    """``out[r] (+)= bias + sum_j src[first + r + j * dilation] @ W[j]`` with float32 or bfloat16 ``src``
    and :func:`pack`'d ``W`` of the same dtype, every tap summed in float32 before one store into float32
    ``out``. ``plus = (src2, packed2)`` adds ``src2[r] @ W2`` (a one-tap :func:`pack` of the same dtype and
    output channels; ``src2`` any row-strided ``[rows, C2]``) into the same sums, after the taps and before
    the bias: e.g. a conditioning product, without reading and writing ``out`` a second time."""
    lib = _lib_or_raise()
    k, c_in, c_out = _operands(src, packed, "packed weights")
    rows = out.shape[0]
    _check_rows(src, first, rows, k, dilation)
    job, _b = _job(out, src, first, rows, c_in, c_out, k, dilation, packed, bias, accumulate)
    if plus is not None:
        _plus(job, plus, src, rows, c_out)
    lib.zoo_tap_conv(ctypes.byref(job), _threads(threads))
    return out


def _plus(job: _Prod, plus: tuple[Tensor, Tensor], src: Tensor, rows: int, c_out: int) -> None:
    """Checks ``plus = (src2, packed2)`` against the job and puts it in."""
    src2, packed2 = plus
    if src2.dtype != src.dtype:
        raise ValueError(f"plus: src2 is {src2.dtype} but src is {src.dtype}")
    k2, c2, c_out2 = _operands(src2, packed2, "plus's packed weights")
    if k2 != 1 or c_out2 != c_out or src2.shape[0] < rows:
        raise ValueError(f"plus: one tap of {c_out} outputs over at least {rows} rows of src2, got weights "
                         f"{tuple(packed2.shape)} and src2 {tuple(src2.shape)}")
    job.src2, job.lds2, job.w2, job.cin2 = src2.data_ptr(), src2.stride(0), packed2.data_ptr(), c2


def gate_panels(half: int) -> Tensor:
    """The column order :func:`conv_gate` takes a gated layer's ``2 half`` outputs in: 64-wide panels, panel
    ``j`` holding the tanh half's columns ``32 j .. 32 j + 31`` and then the sigmoid half's ``half + 32 j ..``
    (``half`` a multiple of 32). Index the weights' output axis and the bias with it."""
    if half <= 0 or half % 32:
        raise ValueError(f"gate_panels: the half width must be a positive multiple of 32, got {half}")
    j = torch.arange(half // 32).repeat_interleave(32) * 32 + torch.arange(32).repeat(half // 32)
    return torch.stack([j.view(-1, 32), j.view(-1, 32) + half], 1).reshape(-1)


def conv_gate(out: Tensor, src: Tensor, first: int, packed: Tensor, dilation: int, bias: Tensor | None = None,
              *, doubled: bool, plus: tuple[Tensor, Tensor] | None = None, keep: Tensor | None = None,
              threads: int | None = None) -> Tensor | None:
    """A gated layer's conv and its gate in one pass: ``h = bias + sum_j src[first + r + j * dilation] @ W[j]
    (+ src2 @ W2)`` as :func:`conv_taps` computes it, but never stored: each tile of ``h`` goes straight
    through :func:`gate` (``g = -tanh(x) sigmoid(b)``, ``x`` undoubled) into bfloat16 ``out [rows, half]``,
    and with ``keep`` (float32 ``[rows, half]``, any row stride) also in float32 (returned). ``packed``,
    ``plus``'s weights and ``bias`` have their ``2 half`` outputs in :func:`gate_panels` order; ``doubled``:
    the tanh half is doubled in them. Saves writing ``h`` and reading it back for the gate."""
    lib = _lib_or_raise()
    k, c_in, c_out = _operands(src, packed, "packed weights")
    _rows_view(out, "out", torch.bfloat16)
    rows, half = out.shape
    if c_out != 2 * half or half % 32:
        raise ValueError(f"conv_gate: {c_out} outputs in gate panels need out [rows, {c_out // 2}] with the half a "
                         f"multiple of 32, got out {tuple(out.shape)}")
    _check_rows(src, first, rows, k, dilation)
    _b, bptr = _bias(bias, c_out)  # the bias tensor must outlive the call
    start = src.data_ptr() + first * src.stride(0) * src.element_size()
    job = _Prod(rows, c_in, c_out, k, dilation, start, src.stride(0), packed.data_ptr(), bptr, None, 0, 0,
                int(src.dtype == torch.float32))
    if plus is not None:
        _plus(job, plus, src, rows, c_out)
    job.gate, job.ldg, job.gate_doubled = out.data_ptr(), out.stride(0), int(doubled)
    if keep is not None:
        _rows_view(keep, "keep", torch.float32)
        if keep.shape != out.shape:
            raise ValueError(f"conv_gate: keep {tuple(keep.shape)} must match out {tuple(out.shape)}")
        job.keep, job.ldk = keep.data_ptr(), keep.stride(0)
    lib.zoo_tap_conv(ctypes.byref(job), _threads(threads))
    return keep


def winograd3(out: Tensor, src: Tensor, first: int, dilation: int, rows: int, packed_u: Tensor,
              bias: Tensor | None = None, *, accumulate: bool = False, threads: int | None = None) -> Tensor:
    """:func:`zoo.kernels.timemajor.winograd_conv3` on the kernel: ``out[:rows] (+)= bias +
    sum_j src[first + r + j * dilation] @ w[j]`` for a 3-tap ``w`` whose six transformed filters
    (:func:`zoo.kernels.timemajor.winograd_weights`) are :func:`pack`'d in ``src``'s dtype as ``packed_u``.
    ``rows`` is a multiple of ``4 * dilation``; ``src`` needs ``first + rows + 2 * dilation`` rows."""
    lib = _lib_or_raise()
    six, c_in, c_out = _operands(src, packed_u, "transformed filters")
    span = 4 * dilation
    if six != 6 or rows % span or rows > out.shape[0] or first + rows + 2 * dilation > src.shape[0]:
        raise ValueError(f"winograd3: {rows} rows (a multiple of {span}) of out {tuple(out.shape)} from src "
                         f"{tuple(src.shape)} at row {first}, transformed filters {tuple(packed_u.shape)}")
    job, _b = _job(out, src, first, rows // 4, c_in, c_out, 3, dilation, packed_u, bias, accumulate)
    if rows:
        lib.zoo_tap_winograd3(ctypes.byref(job), _threads(threads))
    return out


def leaky_relu(x: Tensor, slope: float, out: Tensor, *, threads: int | None = None) -> Tensor:
    """``out = bfloat16(leaky_relu(x, slope))`` for float32 ``x [rows, C]`` into bfloat16 ``out [rows, C]``."""
    lib = _lib_or_raise()
    _rows_view(x, "x", torch.float32)
    _rows_view(out, "out", torch.bfloat16)
    if x.shape != out.shape:
        raise ValueError(f"leaky_relu: x {tuple(x.shape)} and out {tuple(out.shape)} differ")
    args = _Leaky(x.data_ptr(), x.stride(0), out.data_ptr(), out.stride(0), x.shape[1], slope)
    lib.zoo_bf16_leaky_relu(ctypes.byref(args), ctypes.c_long(x.shape[0]), _threads(threads))
    return out


def gate(h: Tensor, doubled: bool, out: Tensor, *, keep: bool = False, threads: int | None = None) -> Tensor | None:
    """The gate of a layer with ``h = [x | b]`` (float32 ``[rows, 2 half]``, ``x`` the tanh half's input, doubled
    already where ``doubled``): ``g = -tanh(x) sigmoid(b)`` (``x`` undoubled) rounded into bfloat16 ``out
    [rows, half]``; with ``keep``, ``g`` in float32 also replaces ``b`` in ``h`` and ``h[:, half:]`` is returned.
    One pass over ``h`` (torch's ops take four, and a fifth to round); ``exp`` is zoo_math.h's (within 4e-7
    of torch's ``tanh(x) sigmoid(b)``)."""
    lib = _lib_or_raise()
    _rows_view(h, "h", torch.float32)
    _rows_view(out, "out", torch.bfloat16)
    half = h.shape[1] // 2
    if h.shape[1] % 2 or out.shape != (h.shape[0], half):
        raise ValueError(f"gate: h {tuple(h.shape)} must be [rows, 2 half] and out [rows, half], got out "
                         f"{tuple(out.shape)}")
    args = _Gate(h.data_ptr(), h.stride(0), out.data_ptr(), out.stride(0), half, int(doubled), int(keep))
    lib.zoo_bf16_gate(ctypes.byref(args), ctypes.c_long(h.shape[0]), _threads(threads))
    return h[:, half:] if keep else None


#: The OpenMP runtimes whose ``GOMP_parallel`` (GCC's ABI, which LLVM's and Intel's runtimes also export) runs
#: a loop on the calling thread's team.
_OPENMP_RUNTIMES = ("libgomp", "libiomp5", "libomp")
_NO_OPENMP: tuple[int | None, int | None, int | None] = (None, None, None)


def _torch_openmp() -> tuple[int | None, int | None, int | None]:
    """The addresses of ``GOMP_parallel``, ``omp_get_thread_num`` and ``omp_get_num_threads`` in the OpenMP
    runtime torch runs its kernels on, or ``None``s where torch's intra-op threads are not OpenMP's (another
    ``ATen parallel backend``) or the runtime is not found among the libraries this process has loaded (then
    the kernel uses its own pthread pool)."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return _NO_OPENMP
    try:
        with open("/proc/self/maps") as maps:
            loaded = {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    except OSError:
        return _NO_OPENMP
    torch_lib = str(Path(torch.__file__).resolve().parent / "lib")
    candidates = sorted((p for p in loaded if Path(p).name.startswith(_OPENMP_RUNTIMES)),
                        key=lambda p: (not p.startswith(torch_lib), p))  # torch's own runtime first
    for path in candidates:
        try:  # the library is loaded already: this returns the same handle, the same thread pools
            rt = ctypes.CDLL(path)
            fns = (rt.GOMP_parallel, rt.omp_get_thread_num, rt.omp_get_num_threads)
        except (OSError, AttributeError):
            continue
        gomp, num, count = (ctypes.cast(fn, ctypes.c_void_p).value for fn in fns)
        return gomp, num, count
    return _NO_OPENMP


def thread_pool() -> str:
    """Which threads the kernel's loops run on: ``"openmp"`` (torch's own OpenMP team), ``"pthreads"`` (the
    kernel's persistent pool: torch not on OpenMP, its runtime not found, ``ZOO_KERNEL_POOL=pthreads``, or a
    forked child) or ``"none"`` (the kernel is not available)."""
    lib = load()
    if lib is None:
        return "none"
    return "openmp" if lib.zoo_tapconv_pool_mode() == 1 else "pthreads"


def use_thread_pool(pool: str) -> str:
    """Run the kernel's later loops on ``"openmp"`` (torch's OpenMP team, where found) or ``"pthreads"`` (the
    kernel's own pool); returns :func:`thread_pool` after the change. A process-wide choice (the tests run
    both); by default the kernel takes torch's team where it finds it."""
    if pool not in ("openmp", "pthreads"):
        raise ValueError(f"pool must be 'openmp' or 'pthreads', got {pool!r}")
    lib = _lib_or_raise()
    lib.zoo_tapconv_use_openmp(*(_torch_openmp() if pool == "openmp" else _NO_OPENMP))
    return thread_pool()


def pool_workers() -> int:
    """Worker threads the kernel's own pool has started in this process (0 until a loop ran on it with more
    than one thread; it never grows past the most threads a loop asked for, less one)."""
    return int(_lib_or_raise().zoo_tapconv_pool_workers())
