"""zoo.kernels.tapconv: compiled float32 and bfloat16 x bfloat16 -> float32 convs, and HiFi-GAN's bfloat16 path.

Every test needs the kernel (built at install): it fails when a C compiler was there but the kernel did not
build or load (tests/helpers/kernels.py). The kernel's tests run on each ISA variant (``isa``), compared
with torch; a variant this CPU cannot run is skipped as "not run on this CPU"."""

from __future__ import annotations

import concurrent.futures
import os
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.helpers import kernels
from zoo.kernels import tapconv
from zoo.kernels.timemajor import conv_taps, winograd_weights


@pytest.fixture(autouse=True)
def _kernel():
    """Every test here needs the kernel: a failure, not a skip, when it was not built although it could be."""
    kernels.require("tapconv")


@pytest.fixture(params=kernels.LEVELS["tapconv"])
def isa(request):
    """The test on each ISA variant of the kernel that this CPU runs."""
    with kernels.variant("tapconv", request.param):
        yield request.param


def test_each_variant_has_its_tiles(isa):
    assert tapconv.load().isa == isa
    assert tapconv.native_f32() == (isa in ("avx2", "avx512", "avx512bf16"))
    assert tapconv.native_bf16() == (isa == "avx512bf16")


def _exact(src: torch.Tensor, first: int, taps: torch.Tensor, d: int, rows: int, bias=None, init=None):
    """The conv in float64 on the operands as given (what the kernel sums, without float32 rounding)."""
    out = torch.zeros(rows, taps.shape[2], dtype=torch.float64) if init is None else init.double().clone()
    conv_taps(out, src.double(), first, taps.double(), d,
              None if bias is None else bias.double(), accumulate=True)
    return out


@pytest.mark.parametrize("cin,cout,k,d", [(64, 64, 11, 1), (32, 48, 3, 5), (31, 24, 5, 2), (80, 512, 7, 1),
                                          (1, 16, 3, 1), (7, 1, 7, 3), (128, 96, 1, 1)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_conv_taps_sums_the_operands_in_float32(cin, cout, k, d, accumulate, dtype, isa):
    g = torch.Generator().manual_seed(cin * 1000 + cout + k)
    rows, first = 97, 2
    src = torch.randn(first + rows + (k - 1) * d + 3, cin, generator=g).to(dtype)
    taps = (torch.randn(k, cin, cout, generator=g) * 0.1).to(dtype).float()
    bias = torch.randn(cout, generator=g)
    init = torch.randn(rows, cout, generator=g)
    out = init.clone() if accumulate else torch.full((rows, cout), float("nan"))
    tapconv.conv_taps(out, src, first, tapconv.pack(taps, dtype), d, bias, accumulate=accumulate)
    want = _exact(src, first, taps, d, rows, bias, init if accumulate else None)
    scale = want.abs().max().item()
    assert (out.double() - want).abs().max().item() <= 2e-6 * max(scale, 1.0)


@pytest.fixture(params=["openmp", "pthreads"])
def pool(request):
    """The test on each of the kernel's thread pools: torch's OpenMP team (where torch runs on OpenMP) and
    the kernel's own persistent pthread pool."""
    before = tapconv.thread_pool()
    tapconv.use_thread_pool(request.param)
    yield request.param
    tapconv.use_thread_pool(before)


def _nan(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An output buffer of NaNs, so that an output the kernel forgets to write is seen (torch.empty may hand
    back the last call's memory, results included)."""
    return torch.full(shape, float("nan"), dtype=dtype)


def _split_cases(dtype: torch.dtype):
    """``(name, run(threads) -> output)`` of every split the kernel makes: many rows (blocks of rows), few rows
    (column groups too), an output width of no whole panels (rows only), Winograd's tile blocks and column
    groups, and the bfloat16 LeakyReLU."""
    g = torch.Generator().manual_seed(0)
    src = torch.randn(1000, 64, generator=g).to(dtype)
    wide = torch.randn(40, 96, generator=g).to(dtype)
    packed = tapconv.pack(torch.randn(3, 64, 64, generator=g), dtype)
    packed_wide = tapconv.pack(torch.randn(3, 96, 256, generator=g), dtype)
    packed_odd = tapconv.pack(torch.randn(2, 64, 40, generator=g), dtype)
    u = tapconv.pack(winograd_weights(torch.randn(3, 64, 64, generator=g)), dtype)
    u_wide = tapconv.pack(winograd_weights(torch.randn(3, 96, 256, generator=g)), dtype)
    bias = torch.randn(256, generator=g)
    cases = {
        "rows": lambda n: tapconv.conv_taps(_nan(990, 64), src, 0, packed, 3, bias[:64], threads=n),
        "columns": lambda n: tapconv.conv_taps(_nan(30, 256), wide, 2, packed_wide, 4, bias, threads=n),
        "narrow": lambda n: tapconv.conv_taps(_nan(500, 40), src, 0, packed_odd, 7, threads=n),
        "winograd rows": lambda n: tapconv.winograd3(_nan(960, 64), src, 0, 3, 960, u, threads=n),
        "winograd columns": lambda n: tapconv.winograd3(torch.ones(32, 256), wide, 1, 2, 32, u_wide, bias,
                                                        accumulate=True, threads=n),
    }
    if dtype == torch.bfloat16:
        x = torch.randn(3001, 48, generator=g)
        cases["leaky"] = lambda n: tapconv.leaky_relu(x, 0.1, _nan(3001, 48, dtype=torch.bfloat16), threads=n)
        hg = torch.randn(3001, 96, generator=g)

        def gate(n: int) -> torch.Tensor:
            out = _nan(3001, 48, dtype=torch.bfloat16)
            kept = tapconv.gate(hg.clone(), False, out, keep=True, threads=n)
            assert kept is not None
            return torch.cat([kept, out.float()], 1)

        cases["gate"] = gate
    return cases


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_threads_split_the_work_and_give_identical_bits(dtype, pool, isa):
    """1 to 4 threads, on either pool, give the same bits: each output is summed by one thread in one order."""
    for name, run in _split_cases(dtype).items():
        one = run(1)
        assert torch.isfinite(one).all(), name
        for n in (2, 3, 4):
            assert torch.equal(run(n), one), f"{name}: {n} threads differ from one"


def test_the_default_pool_is_torch_s_openmp_team():
    if "parallel backend: OpenMP" in torch.__config__.parallel_info() and os.environ.get("ZOO_KERNEL_POOL") is None:
        assert tapconv.thread_pool() == "openmp"
    with pytest.raises(ValueError, match="'openmp' or 'pthreads'"):
        tapconv.use_thread_pool("tbb")


def _task_count() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or not hasattr(os, "fork"), reason="needs Linux")
def test_own_pool_persists_across_calls_and_restarts_after_fork():
    """The pthread pool starts its workers once and reuses them (no thread made per call); a forked child,
    whose copy of the pool has no threads, starts its own and computes the same."""
    before = tapconv.thread_pool()
    assert tapconv.use_thread_pool("pthreads") == "pthreads"
    try:
        _own_pool_persists_and_restarts_after_fork()
    finally:
        tapconv.use_thread_pool(before)


def _own_pool_persists_and_restarts_after_fork() -> None:
    run = _split_cases(torch.float32)["rows"]
    want = run(1)
    assert torch.equal(run(3), want)  # (torch.equal starts torch's own threads, once)
    workers, tasks = tapconv.pool_workers(), _task_count()
    assert workers >= 2
    for _ in range(20):
        assert torch.equal(run(3), want)
    assert tapconv.pool_workers() == workers and _task_count() == tasks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # torch's own OpenMP ops hang in a forked child (libgomp); the kernel's do not
            started = tapconv.pool_workers()
            same = torch.equal(run(2), want) and torch.equal(run(3), want)
            code = 0 if started == 0 and tapconv.pool_workers() == 2 and same else 2
        finally:
            os._exit(code)
    os.close(read)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_of_an_openmp_parent_uses_the_pthread_pool():
    tapconv.use_thread_pool("openmp")
    run = _split_cases(torch.float32)["rows"]
    want = run(2)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            torch.set_num_threads(1)  # torch's own OpenMP ops hang in a forked child (libgomp); the kernel's do not
            code = 0 if tapconv.thread_pool() == "pthreads" and torch.equal(run(2), want) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_concurrent_callers_share_the_pool(pool):
    """Four Python threads calling the kernel at once (one has the pool, or each its OpenMP team; the others
    run on their own thread meanwhile) get what one caller gets."""
    cases = list(_split_cases(torch.bfloat16).values())
    want = [run(1) for run in cases]
    start = threading.Barrier(4)

    def caller(i: int) -> list[int]:
        start.wait(timeout=30)
        return [j for _ in range(3) for j, run in enumerate(cases) if not torch.equal(run(2 + i % 2), want[j])]

    with concurrent.futures.ThreadPoolExecutor(4) as callers:
        differ = list(callers.map(caller, range(4), timeout=120))
    assert differ == [[]] * 4, f"the cases that differed, per caller: {differ}"


def _winograd_emulated(src: torch.Tensor, first: int, d: int, rows: int, taps: torch.Tensor) -> torch.Tensor:
    """F(4, 3) as the kernel computes it, in float64: transforms exact, ``v`` and ``u`` rounded to bfloat16."""
    def r(t):
        return t.float().bfloat16().double()

    x = src.double()[first:]
    u = r(winograd_weights(taps.double()))
    out = torch.zeros(rows, taps.shape[2], dtype=torch.float64)
    for t in range(rows // 4):
        base = 4 * d * (t // d) + t % d
        d0, d1, d2, d3, d4, d5 = (x[base + q * d] for q in range(6))
        v = [4 * d0 - 5 * d2 + d4, d4 + d3 - 4 * (d1 + d2), d4 - d3 + 4 * (d1 - d2), d4 - d2 + 2 * (d3 - d1),
             d4 - d2 - 2 * (d3 - d1), 4 * d1 - 5 * d3 + d5]
        m0, m1, m2, m3, m4, m5 = (r(v[j]) @ u[j] for j in range(6))
        ys = [m0 + m1 + m2 + m3 + m4, m1 - m2 + 2 * (m3 - m4), m1 + m2 + 4 * (m3 + m4), m1 - m2 + 8 * (m3 - m4) + m5]
        for o in range(4):
            out[base + o * d] = ys[o]
    return out


@pytest.mark.parametrize("cin,cout,d", [(64, 48, 3), (33, 16, 1), (16, 40, 2)])
def test_winograd3_is_f43_with_bfloat16_products(cin, cout, d, isa):
    g = torch.Generator().manual_seed(cin + d)
    first, rows = 1, 12 * 4 * d
    src = torch.randn(first + rows + 2 * d, cin, generator=g).bfloat16()
    taps = torch.randn(3, cin, cout, generator=g) * 0.2
    bias = torch.randn(cout, generator=g)
    out = torch.full((rows + 5, cout), 7.0)
    tapconv.winograd3(out, src, first, d, rows, tapconv.pack(winograd_weights(taps)), bias)
    want = _winograd_emulated(src, first, d, rows, taps) + bias.double()
    assert (out[:rows].double() - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    assert torch.equal(out[rows:], torch.full((5, cout), 7.0))  # rows past the tiles are left alone
    exact = _exact(src, first, taps.double(), d, rows, bias)  # and it is the conv, to bfloat16 accuracy
    assert (out[:rows].double() - exact).abs().max().item() <= 0.03 * exact.abs().max().item()
    acc = out[:rows].clone()
    tapconv.winograd3(acc, src, first, d, rows, tapconv.pack(winograd_weights(taps)), bias, accumulate=True)
    torch.testing.assert_close(acc, 2 * out[:rows], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("cin,cout", [(48, 32), (33, 40), (64, 24)])  # 40, 24: an 8-column last panel
def test_winograd3_in_float32_is_the_conv(cin, cout, isa):
    g = torch.Generator().manual_seed(5)
    d, rows = 2, 40 * 8
    src = torch.randn(rows + 3 * d, cin, generator=g)
    taps = torch.randn(3, cin, cout, generator=g) * 0.2
    out = tapconv.winograd3(torch.empty(rows, cout), src, 1, d, rows,
                            tapconv.pack(winograd_weights(taps), torch.float32))
    exact = _exact(src, 1, taps, d, rows)
    assert (out.double() - exact).abs().max().item() <= 1e-5 * exact.abs().max().item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_weights_changed_in_place_between_calls_are_read_again(dtype, isa):
    """The AVX2 float32 tiles read a copy of the weights made once per call on each thread: a later call on
    the same (in-place changed) weight tensor must not reuse it, on any thread, directly or through Winograd."""
    g = torch.Generator().manual_seed(9)
    src = torch.randn(300, 64, generator=g).to(dtype)
    taps = torch.randn(3, 64, 48, generator=g) * 0.1
    tol = 1e-5 if dtype == torch.float32 else 0.03

    def direct(w: torch.Tensor, threads: int) -> torch.Tensor:
        return tapconv.conv_taps(_nan(288, 48), src, 0, w, 2, threads=threads)

    def wino(w: torch.Tensor, threads: int) -> torch.Tensor:
        return tapconv.winograd3(_nan(288, 48), src, 0, 2, 288, w, threads=threads)

    for run, make in ((direct, lambda t: tapconv.pack(t, dtype)),
                      (wino, lambda t: tapconv.pack(winograd_weights(t), dtype))):
        for threads in (1, 2):
            w = make(taps).clone()
            for scale in (1.0, -2.0):  # the second call on the same tensor, changed in place
                w.copy_(make(taps * scale))
                want = _exact(src, 0, (taps * scale).to(dtype).float(), 2, 288)
                out = run(w, threads)
                assert (out.double() - want).abs().max().item() <= tol * want.abs().max().item()


def test_leaky_relu_rounds_like_torch(isa):
    x = torch.randn(300, 37) * 3
    x[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    x[1, :3] = torch.tensor([1.00390625, 1.01171875, -3.3e38])  # halfway cases, and past bfloat16's range * slope
    out = torch.empty(300, 37, dtype=torch.bfloat16)
    tapconv.leaky_relu(x, 0.1, out)
    want = F.leaky_relu(x, 0.1).bfloat16()
    assert torch.equal(out.isnan(), want.isnan())
    assert torch.equal(out[~want.isnan()], want[~want.isnan()])


@pytest.mark.parametrize("doubled", [False, True])
@pytest.mark.parametrize("keep", [False, True])
def test_gate_is_minus_tanh_sigmoid_in_one_pass(doubled, keep, isa):
    """The flows' gate: -tanh(x) sigmoid(b) within 4e-7 of torch's (zoo_math.h's exp and 1 - 2 / (1 + e^2x);
    the bfloat16 operand it is rounded to has 2e-3 relative steps), from very negative
    to very positive inputs (the exp's clamp), rounded into bfloat16 as torch rounds that float32 value; kept
    in float32 in place of b only when asked."""
    g = torch.Generator().manual_seed(5)
    x, b = torch.randn(513, 40, generator=g) * 4, torch.randn(513, 40, generator=g) * 4
    x[0, :6] = b[0, :6] = torch.tensor([-200.0, -80.0, -1e-6, 0.0, 44.0, 300.0])
    h = torch.cat([2 * x if doubled else x, b], 1)
    b_before = h[:, 40:].clone()
    out = torch.empty(513, 40, dtype=torch.bfloat16)
    kept = tapconv.gate(h, doubled, out, keep=keep)
    want = -torch.tanh(x) * torch.sigmoid(b)
    if keep:
        assert kept is not None and kept.data_ptr() == h[:, 40:].data_ptr()
        assert (kept - want).abs().max() < 4e-7
        assert torch.equal(out, kept.bfloat16())
    else:
        assert kept is None and torch.equal(h[:, 40:], b_before)
    assert torch.equal(h[:, :40], 2 * x if doubled else x)
    close = (out.float() - want).abs() <= want.abs() * 2.0**-8 + 4e-7  # bfloat16's half ulp, plus the exp's
    assert close.all(), (out.float() - want).abs().max()


@pytest.mark.parametrize("cin,cout,k,d,c2", [(64, 64, 3, 2, 80), (31, 24, 5, 2, 7), (80, 512, 3, 1, 640),
                                             (7, 16, 3, 3, 1), (32, 48, 1, 1, 33)])
@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_conv_taps_plus_a_second_operand_in_the_same_sums(cin, cout, k, d, c2, accumulate, dtype, isa):
    """``plus=(src2, W2)`` adds ``src2[r] @ W2`` (its own rows and channels, any row stride) into the taps'
    float32 sums: the exact sum of both products within float32 rounding, as two calls would give."""
    g = torch.Generator().manual_seed(cin * 1000 + cout + c2)
    rows, first = 97, 1
    src = torch.randn(first + rows + (k - 1) * d, cin, generator=g).to(dtype)
    wide = torch.randn(rows + 5, c2 + 3, generator=g).to(dtype)
    src2 = wide[2:, 1:c2 + 1]  # a strided view: its own row stride
    taps = (torch.randn(k, cin, cout, generator=g) * 0.1).to(dtype).float()
    w2 = (torch.randn(1, c2, cout, generator=g) * 0.1).to(dtype).float()
    bias = torch.randn(cout, generator=g)
    init = torch.randn(rows, cout, generator=g)
    out = init.clone() if accumulate else torch.full((rows, cout), float("nan"))
    tapconv.conv_taps(out, src, first, tapconv.pack(taps, dtype), d, bias, accumulate=accumulate,
                      plus=(src2, tapconv.pack(w2, dtype)))
    want = _exact(src, first, taps, d, rows, bias, init if accumulate else None)
    want += src2[:rows].double() @ w2[0].double()
    scale = want.abs().max().item()
    assert (out.double() - want).abs().max().item() <= 2e-6 * max(scale, 1.0)


@pytest.mark.parametrize("cin,half,k,d,c2", [(64, 32, 3, 2, 0), (31, 64, 3, 1, 7), (256, 256, 3, 4, 80),
                                              (16, 96, 1, 1, 33)])
@pytest.mark.parametrize("doubled", [False, True])
@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_conv_gate_is_the_conv_then_the_gate(cin, half, k, d, c2, doubled, keep, dtype, isa):
    """``conv_gate`` on weights in ``gate_panels`` order gives what ``conv_taps`` into ``h`` then ``gate``
    give on the same weights in their own order: the same bfloat16 gate bits and the same float32 gate, without
    ``h`` (the taps, a second operand, the bias, the tanh half doubled in the weights or not)."""
    g = torch.Generator().manual_seed(cin + half + c2)
    rows, first = 53, 1
    src = torch.randn(first + rows + (k - 1) * d, cin, generator=g).to(dtype)
    taps = (torch.randn(k, cin, 2 * half, generator=g) * 0.2).to(dtype).float()
    bias = torch.randn(2 * half, generator=g)
    plus = None
    if c2:
        src2, w2 = torch.randn(rows, c2, generator=g).to(dtype), (torch.randn(1, c2, 2 * half, generator=g) * 0.2)
        plus = (src2, tapconv.pack(w2.to(dtype).float(), dtype))
    h = torch.empty(rows, 2 * half)
    tapconv.conv_taps(h, src, first, tapconv.pack(taps, dtype), d, bias, plus=plus)
    want = torch.empty(rows, half, dtype=torch.bfloat16)
    want_f = tapconv.gate(h, doubled, want, keep=keep)
    perm = tapconv.gate_panels(half)
    plus_p = None if plus is None else (plus[0], tapconv.pack(w2.to(dtype).float()[..., perm], dtype))
    got = torch.full((rows, half), float("nan"), dtype=torch.bfloat16)
    wide = torch.full((rows, half + 3), float("nan"))
    got_f = tapconv.conv_gate(got, src, first, tapconv.pack(taps[..., perm], dtype), d, bias[perm], doubled=doubled,
                              plus=plus_p, keep=wide[:, :half] if keep else None)
    # the same sums in the same order: the same float32 h, so the same gate to the last bit
    assert torch.equal(got, want)
    if keep:
        assert got_f is not None and want_f is not None and torch.equal(got_f, want_f)
        assert torch.isnan(wide[:, half:]).all()  # nothing past the keep view
    else:
        assert got_f is None


def test_bad_arguments_are_refused_with_what_was_expected():
    src = torch.zeros(20, 8, dtype=torch.bfloat16)
    packed = tapconv.pack(torch.zeros(3, 8, 4))
    with pytest.raises(ValueError, match="bfloat16"):
        tapconv.conv_taps(torch.zeros(10, 4), src.float(), 0, packed, 1)
    with pytest.raises(ValueError, match="float32"):
        tapconv.conv_taps(torch.zeros(10, 4, dtype=torch.float64), src, 0, packed, 1)
    with pytest.raises(ValueError, match="give 4 output"):
        tapconv.conv_taps(torch.zeros(10, 5), src, 0, packed, 1)
    with pytest.raises(ValueError, match="need 23"):
        tapconv.conv_taps(torch.zeros(10, 4), src, 11, packed, 1)
    with pytest.raises(ValueError, match="contiguous rows"):
        tapconv.conv_taps(torch.zeros(4, 10).t(), src, 0, packed, 1)
    with pytest.raises(ValueError, match="plus: src2 is torch.float32"):
        tapconv.conv_taps(torch.zeros(10, 4), src, 0, packed, 1, plus=(torch.zeros(10, 8), packed))
    with pytest.raises(ValueError, match="plus: one tap of 4 outputs over at least 10 rows"):
        tapconv.conv_taps(torch.zeros(10, 4), src, 0, packed, 1, plus=(src[:10], packed))
    with pytest.raises(ValueError, match="plus: one tap of 4 outputs over at least 10 rows"):
        tapconv.conv_taps(torch.zeros(10, 4), src, 0, packed, 1, plus=(src[:9], tapconv.pack(torch.zeros(1, 8, 4))))
    with pytest.raises(ValueError, match="gate_panels: the half width must be a positive multiple of 32"):
        tapconv.gate_panels(48)
    with pytest.raises(ValueError, match=r"conv_gate: 4 outputs in gate panels need out \[rows, 2\]"):
        tapconv.conv_gate(torch.zeros(10, 2, dtype=torch.bfloat16), src, 0, packed, 1, doubled=False)
    with pytest.raises(ValueError, match="multiple of 8"):
        tapconv.winograd3(torch.zeros(10, 4), src, 0, 2, 6, tapconv.pack(torch.zeros(6, 8, 4)))


# HiFi-GAN's bfloat16 path ---------------------------------------------------------------------------------

def _tiny_hifigan(resblock: str = "1"):
    from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

    cfg = HiFiGANConfig(upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8), upsample_initial_channel=64,
                        resblock=resblock, resblock_kernel_sizes=(3, 7), resblock_dilation_sizes=((1, 3), (1, 5)),
                        mel=HiFiGANConfig.v1().mel.replace(hop_length=16, win_length=64, n_fft=64))
    model = HiFiGAN(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _emulated(model_bf: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """The bfloat16 path's arithmetic in float32 through ``generate``: the model's bfloat16 weights, every
    conv's input rounded to bfloat16 (but the last conv's), outputs and residual stream in float32."""
    import copy

    ref = copy.deepcopy(model_bf).float()
    for m in ref.modules():
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)) and m is not ref.conv_post:
            m.register_forward_pre_hook(lambda _m, args: (args[0].bfloat16().float(),))
    return ref.generate(mel.bfloat16().float())


@pytest.mark.parametrize("resblock", ["1", "2"])
@pytest.mark.parametrize("winograd", [False, True], ids=["direct", "winograd"])
def test_hifigan_bfloat16_path_sums_in_float32(resblock, winograd, monkeypatch, isa):
    import zoo_plugins.hifigan.model as hifigan_model

    monkeypatch.setattr(hifigan_model, "WINOGRAD_MIN_CHANNELS_BF16", 0 if winograd else 10**9)
    model = _tiny_hifigan(resblock)
    mel = torch.randn(2, 80, 23, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        bf = model.to(torch.bfloat16)
        full = bf.float().generate(mel.bfloat16().float())  # float32 throughout, on the bfloat16 weights
        bf = bf.bfloat16()
        got = bf.generate_time_major(mel.bfloat16())
        assert got.dtype == torch.float32
        all_bf16 = bf.generate(mel.bfloat16()).float()  # outputs rounded too, as torch's bfloat16 convs do
        emulated = _emulated(bf, mel)
    assert 0.05 < full.abs().max() < 0.999
    # The same arithmetic as the emulation up to float32 summation order (and the odd input rounding that
    # this flips); Winograd adds its transforms' bfloat16 rounding.
    assert (got - emulated).abs().max().item() < (3e-3 if winograd else 5e-4)
    err_fast, err_all = (got - full).abs().mean().item(), (all_bf16 - full).abs().mean().item()
    assert err_fast < (0.8 if winograd else 0.6) * err_all, (err_fast, err_all)


def test_bfloat16_hifigan_vocodes_through_the_kernel_and_returns_float32(monkeypatch):
    model = _tiny_hifigan().to(torch.bfloat16)
    mel = torch.randn(80, 19, generator=torch.Generator().manual_seed(2))
    audio = model(mel)
    assert audio.dtype == torch.float32 == model.audio_dtype
    with torch.no_grad():
        assert torch.equal(audio, model.generate_time_major(mel[None].bfloat16())[0])
    monkeypatch.setattr(tapconv, "load", lambda: None)  # no kernel: torch's bfloat16 convs, still float32 audio
    fallback = model(mel)
    assert fallback.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(fallback, model.generate(mel[None].bfloat16())[0].float())
    assert (fallback - audio).abs().max() < 0.05


def test_packed_weights_follow_the_model_s_weights():
    model = _tiny_hifigan().to(torch.bfloat16)
    mel = torch.randn(80, 11, generator=torch.Generator().manual_seed(3))
    first = model(mel)
    other = _tiny_hifigan()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-0.5)
    model.load_state_dict(other.to(torch.bfloat16).state_dict())  # in place: the packs must be made anew
    assert torch.equal(model(mel), other(mel))
    assert not torch.equal(model(mel), first)
    with torch.inference_mode():  # a model made under inference mode (no version counters) still works
        fresh = _tiny_hifigan().to(torch.bfloat16)
        fresh.load_state_dict(other.state_dict())
        assert torch.equal(fresh(mel), other(mel))


def test_a_model_cast_under_inference_mode_keeps_its_packs(monkeypatch):
    """A model built and cast under ``torch.inference_mode`` holds ordinary tensors (inference tensors have no
    version counter, so its packs were made again on every call), and still follows an in-place change made
    there."""
    mel = torch.randn(80, 11, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        model = _tiny_hifigan().to(torch.bfloat16)
        assert not any(p.is_inference() for p in model.parameters())
        first = model(mel)
        packs = []
        real_pack = tapconv.pack
        monkeypatch.setattr(tapconv, "pack", lambda *a, **k: packs.append(1) or real_pack(*a, **k))
        assert torch.equal(model(mel), first) and not packs  # every pack kept
        other = _tiny_hifigan().to(torch.bfloat16)
        for p in other.parameters():
            p.mul_(-0.5)
        model.load_state_dict(other.state_dict())  # in place, under inference mode: made anew
        assert torch.equal(model(mel), other(mel)) and packs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hifigan_gives_the_same_audio_on_one_and_two_threads(dtype, pool):
    model = _tiny_hifigan().to(dtype)
    mel = torch.randn(2, 80, 37, generator=torch.Generator().manual_seed(4)).to(dtype)
    before = torch.get_num_threads()
    outs = []
    try:
        with torch.no_grad():
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                outs.append(model.generate_time_major(mel))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
