"""Inference fast paths give the same function as the plain (training) paths: the time-major coupling
WaveNets, the flows' no-autograd reverse passes and the compiled WaveNet sampling loop. Numbers only; speed
is measured by ``benchmarks/``, never asserted here."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig
from zoo_plugins.wavenet import WaveNet, WaveNetConfig
from zoo_plugins.wavenet.incremental import IncrementalSampler

import zoo.kernels.gated_infer
import zoo.kernels.timemajor
from tests.helpers import kernels
from zoo.kernels.gated_infer import infer_layers, stack_pad
from zoo.nn.gated import GatedResidualStack, WaveNetConditioner


@pytest.fixture
def wavenet_loop():
    """The compiled WaveNet loop: a failure, not a skip, when it was not built although it could be."""
    return kernels.require("wavenet")


@pytest.fixture(params=kernels.LEVELS["wavenet"])
def wavenet_isa(request):
    """The test on each ISA variant of the compiled WaveNet loop that this CPU runs."""
    with kernels.variant("wavenet", request.param):
        yield request.param


@pytest.fixture(params=[False, True], ids=["direct", "winograd"])
def winograd(request, monkeypatch):
    """Run the test with the 3-tap convs direct, then by Winograd F(4, 3) at every width (its default
    threshold, 64 channels, is above the tiny test sizes)."""
    monkeypatch.setattr(zoo.kernels.gated_infer, "_WINO_MIN_CHANNELS", 0 if request.param else 10**9)
    return request.param


@pytest.fixture(params=[False, True], ids=["torch", "kernel"])
def kernel(request, monkeypatch):
    """Run the test with the dilated convs on torch's products, then on the compiled kernel
    (:mod:`zoo.kernels.tapconv`, its best variant here; taken only on CPUs with AVX2 and FMA, so the second
    run needs them)."""
    from zoo.kernels import tapconv

    if request.param:
        with kernels.variant("tapconv", "avx2"):  # a failure if it did not build, a skip without AVX2
            pass
    if request.param and not tapconv.native_f32():
        pytest.skip("not run on this CPU: float32 convs go through the compiled kernel only with AVX2 or AVX-512")
    if not request.param:
        kernels.force_torch_convs(monkeypatch)
    return request.param


def _randomise(module: torch.nn.Module, std: float = 0.1, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.mark.parametrize("layout", ["waveglow", "flowavenet"])
def test_conditioner_infer_equals_forward(layout, winograd, kernel):
    if layout == "waveglow":
        kw = dict(front="conv1x1", head="linear_zero", residual_scale=1.0, last_layer_residual=False, num_layers=5)
    else:
        kw = dict(front="conv3_relu", head="relu_conv_relu_zeroconv", residual_scale=math.sqrt(0.5),
                  last_layer_residual=True, num_layers=2)
    net = WaveNetConditioner(3, 6, 10, channels=16, **kw).eval()
    _randomise(net)
    x = torch.randn(2, 6, 37)[:, 1:4]  # strided views, as a coupling passes its halves
    c = torch.randn(2, 20, 37)[:, ::2]
    with torch.no_grad():
        torch.testing.assert_close(net.infer(x, c), net(x, c), atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="inference"):
        net.infer(x, c)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("skip_mode", ["sum", "sum_sqrt_layers", "legacy_iterative"])
@pytest.mark.parametrize("bias,cond", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("t", [29, 400])  # the tanh half doubled in h (short) or in the weights (long)
def test_infer_layers_equals_stack_forward(causal, skip_mode, bias, cond, t, winograd, kernel):
    stack = GatedResidualStack(8, 12, 5, 7 if cond else 0, 3, [1, 2, 4, 1], causal=causal,
                               residual_scale=math.sqrt(0.5), skip_mode=skip_mode, last_layer_residual=False,
                               bias=bias, cond_bias=bias).eval()
    _randomise(stack, 0.3)
    x = torch.randn(8, t)
    c = torch.randn(7, t).t() if cond else None  # a time-major view, as the callers pass it
    with torch.no_grad():
        expected = stack(x[None], None if c is None else c.t()[None])[0]
        left, right = stack_pad(stack)
        buf = torch.cat([torch.zeros(left, 8), x.t(), torch.zeros(right, 8)])
        got = infer_layers(stack, buf, left, t, c)
    assert any(zoo.kernels.gated_infer._winograd_rows(stack, layer, t) for layer in stack.layers) == winograd
    torch.testing.assert_close(got.t(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dilations,t", [
    ([1, 3, 16, 64], 2500),  # several Winograd calls (1024 rows here) per layer, partial last tiles
    ([1, 7, 200], 230),  # the 200-dilation layer would waste too many rows: direct taps for it
    ([1, 2], 16),  # the shortest input the Winograd path takes
])
def test_winograd_taps_equal_direct_taps(causal, dilations, t, kernel, monkeypatch):
    monkeypatch.setattr(zoo.kernels.timemajor, "WINOGRAD_CHUNK_ROWS", 1024)
    stack = GatedResidualStack(6, 10, 4, 3, 3, dilations, causal=causal, residual_scale=math.sqrt(0.5)).eval()
    _randomise(stack, 0.3)
    x, c = torch.randn(6, t), torch.randn(3, t).t()
    left, right = stack_pad(stack)
    buf = torch.cat([torch.zeros(left, 6), x.t(), torch.zeros(right, 6)])
    got = {}
    with torch.no_grad():
        expected = stack(x[None], c.t()[None])[0].t()
        for use in (False, True):
            monkeypatch.setattr(zoo.kernels.gated_infer, "_WINO_MIN_CHANNELS", 0 if use else 10**9)
            got[use] = infer_layers(stack, buf.clone(), left, t, c)
    used = [bool(zoo.kernels.gated_infer._winograd_rows(stack, layer, t)) for layer in stack.layers]
    assert any(used) and (all(used) or dilations[-1] == 200)
    torch.testing.assert_close(got[True], got[False], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[True], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k,d,t", [
    (3, 1, 37),  # tiles and a partial last tile
    (7, 3, 1104),  # several 1024-row calls per group, one tap left direct, the second group's last tile
    # past the buffer's end (computed directly)
    (11, 5, 300),  # three groups and two taps left direct
    (5, 5, 13),  # shorter than one tile: all direct
])
@pytest.mark.parametrize("accumulate", [False, True])
def test_conv_taps_winograd_equals_conv_taps(k, d, t, accumulate, monkeypatch):
    from zoo.kernels.timemajor import conv_taps, conv_taps_winograd, tap_weights, winograd_group_weights, winograd_work

    monkeypatch.setattr(zoo.kernels.timemajor, "WINOGRAD_CHUNK_ROWS", 1024)
    torch.manual_seed(k * d)
    conv = torch.nn.Conv1d(6, 5, k, dilation=d, padding=(k - 1) * d // 2)
    x = torch.randn(1, 6, t)
    pad = (k - 1) * d // 2
    src = torch.cat([torch.zeros(pad, 6), x[0].t(), torch.zeros(pad, 6)])  # only the conv's own padding
    base = torch.randn(t, 5)
    taps = tap_weights(conv.weight.detach())
    with torch.no_grad():
        expected = conv(x)[0].t() + (base if accumulate else 0)
        direct = conv_taps(base.clone(), src, 0, taps, d, conv.bias, accumulate=accumulate)
        wino = conv_taps_winograd(base.clone(), src, 0, taps, winograd_group_weights(taps), d, conv.bias,
                                  winograd_work(src, d, 6, 5), accumulate=accumulate)
    torch.testing.assert_close(direct, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wino, expected, atol=1e-5, rtol=1e-5)


def test_winograd_conv3_takes_only_the_rows_its_scratch_holds(monkeypatch):
    """Scratch sized for smaller calls than :data:`zoo.kernels.timemajor.WINOGRAD_CHUNK_ROWS` now asks for (the
    setting changed after it was made): the calls shrink to what fits, the result is unchanged."""
    from zoo.kernels.timemajor import conv_taps, conv_taps_winograd, tap_weights, winograd_group_weights, winograd_work

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 5, 3, dilation=2, padding=2)
    x = torch.randn(1, 6, 700)
    src = torch.cat([torch.zeros(2, 6), x[0].t(), torch.zeros(2, 6)])
    taps = tap_weights(conv.weight.detach())
    monkeypatch.setattr(zoo.kernels.timemajor, "WINOGRAD_CHUNK_ROWS", 96)
    work = winograd_work(src, 2, 6, 5)
    assert work[0].shape[1] == 96 // 4
    monkeypatch.setattr(zoo.kernels.timemajor, "WINOGRAD_CHUNK_ROWS", 4096)
    with torch.no_grad():
        direct = conv_taps(torch.empty(700, 5), src, 0, taps, 2, conv.bias)
        wino = conv_taps_winograd(torch.empty(700, 5), src, 0, taps, winograd_group_weights(taps), 2, conv.bias, work)
    torch.testing.assert_close(wino, direct, atol=1e-5, rtol=1e-5)


def test_iaf_flow_infer_equals_conv_path():
    from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
    from zoo_plugins.parallel_wavenet.model import IAFFlow

    cfg = ParallelWaveNetConfig(flow_layers=(3,), dilation_cycle=2, front_kernel_size=5, residual_channels=8,
                                gate_channels=12, skip_channels=6, upsample_scales=(4, 4, 16))
    flow: IAFFlow = ParallelWaveNet(cfg).flows[0].eval()
    _randomise(flow, 0.3)
    z = torch.randn(2, 1, 300)
    c_up = torch.randn(2, 160, 300)[:, ::2]  # a strided view
    plain = flow(z, c_up).detach()  # autograd on: the conv path
    with torch.no_grad():
        fast = flow(z, c_up)
        torch.testing.assert_close(flow.infer(z, c_up), fast)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="inference"):
        flow.infer(z, c_up)


def test_waveglow_reverse_fast_equals_plain():
    model = WaveGlow(WaveGlowConfig.small()).eval()
    _randomise(model.WN, 0.02)  # the 1x1 convs keep their orthonormal init (a random W may be near-singular)
    mel = torch.randn(2, model.mel_config.n_mels, 5)
    z = torch.randn(2, 8, 5 * model.hop_length // 8)
    plain = model.reverse(z, mel).detach()  # autograd on: the plain path
    with torch.no_grad():
        fast = model.reverse(z, mel)
    assert plain.abs().max() < 100
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_flowavenet_reverse_fast_equals_plain():
    torch.manual_seed(0)  # z below: an unseeded draw made the test flaky
    model = FloWaveNet(FloWaveNetConfig.small()).eval()
    _randomise(model, 0.05)
    mel = torch.rand(2, model.mel_config.n_mels, 3)
    with torch.no_grad():
        c_up = model.upsample(mel)
    z = torch.randn(2, 1, c_up.shape[-1])
    plain = model.reverse(z, c_up).detach()
    with torch.no_grad():
        fast = model.reverse(z, c_up)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def _torchscript_and_compiled(model: WaveNet, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(c_up, [samples of the TorchScript step, samples of the compiled loop])`` for the same draws."""
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        out = []
        for use in (False, True):
            sampler = IncrementalSampler(model, mel.shape[0])
            sampler.use_kernel = use
            out.append(sampler.run(c_up, generator=torch.Generator().manual_seed(0), temperature=0.9)[0])
    return c_up, out


@pytest.mark.usefixtures("wavenet_loop")
@pytest.mark.parametrize("dist", ["mol", "gaussian", "mulaw"])
@pytest.mark.parametrize("front", [1, 4])
def test_compiled_wavenet_loop_equals_torchscript_step(dist, front):
    cfg = WaveNetConfig.small(dist, front_kernel_size=front, front_activation="relu" if front > 1 else "none",
                              skip_mode="legacy_iterative" if dist == "mol" else "sum_sqrt_layers")
    model = WaveNet(cfg).eval()
    _randomise(model, 0.1, seed=1)
    mel = torch.randn(2, 80, 3)
    c_up, out = _torchscript_and_compiled(model, mel)
    if dist == "mulaw":
        assert torch.equal(out[0], out[1])
    else:
        torch.testing.assert_close(out[1], out[0], atol=1e-5, rtol=1e-5)


@pytest.mark.usefixtures("wavenet_loop")
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_compiled_wavenet_loop_long_dilations_across_blocks(monkeypatch, kernel_size):
    """Taps up to 256 steps back (past the compiled loop's 64-step blocks of precomputed past-tap products),
    over several calls of the loop (its past-tap state carried between them), batch 2."""
    from zoo_plugins.wavenet import incremental

    monkeypatch.setattr(incremental, "BLOCK", 300)
    cfg = WaveNetConfig.small("gaussian", layers=8, stacks=1, kernel_size=kernel_size)
    model = WaveNet(cfg).eval()
    _randomise(model, 0.1, seed=3)
    mel = torch.randn(2, 80, 5)
    c_up, out = _torchscript_and_compiled(model, mel)
    assert c_up.shape[-1] > 3 * 300 and out[0].abs().max() > 0
    torch.testing.assert_close(out[1], out[0], atol=1e-5, rtol=1e-5)


@pytest.mark.usefixtures("wavenet_loop")
def test_compiled_wavenet_loop_full_and_partial_tiles():
    """Channel counts past the compiled loop's 64-column weight tiles (full tiles plus a narrower last one)
    in every product, batch 3, against the TorchScript step."""
    from zoo_plugins.wavenet.kernel import TILE, tile_pack

    w = torch.randn(2, 5, 2 * TILE + 3)
    packed = tile_pack(w)
    assert packed.numel() == w.numel()
    first = packed[: 5 * TILE].reshape(5, TILE)
    last = packed[2 * 5 * TILE: 2 * 5 * TILE + 15].reshape(5, 3)
    assert torch.equal(first, w[0, :, :TILE]) and torch.equal(last, w[0, :, 2 * TILE:])
    cfg = WaveNetConfig.small("mol", layers=4, stacks=2, residual_channels=72, gate_channels=200,
                              skip_channels=80)
    model = WaveNet(cfg).eval()
    _randomise(model, 0.05, seed=4)
    mel = torch.randn(3, 80, 2)
    c_up, out = _torchscript_and_compiled(model, mel)
    assert out[0].std() > 0.01
    torch.testing.assert_close(out[1], out[0], atol=1e-5, rtol=1e-5)


@pytest.mark.usefixtures("wavenet_loop")
@pytest.mark.parametrize("channels", [(128, 256, 128), (72, 200, 80)])
def test_compiled_wavenet_loop_threads_give_the_same_samples(monkeypatch, channels):
    """The compiled loop splits every product's column tiles among its threads; each output is still made
    by one thread with the same sums, so 1, 2 and 3 threads give bit-identical samples (tile-aligned gate
    halves, and 200 gate channels whose halves straddle a tile), across blocks, batch 2."""
    from zoo_plugins.wavenet import incremental

    monkeypatch.setattr(incremental, "BLOCK", 300)
    res, gate, skip = channels
    cfg = WaveNetConfig.small("mol", layers=6, stacks=2, residual_channels=res, gate_channels=gate,
                              skip_channels=skip)
    model = WaveNet(cfg).eval()
    _randomise(model, 0.05, seed=5)
    mel = torch.randn(2, 80, 3)
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        out = []
        for threads in (1, 2, 3):
            sampler = IncrementalSampler(model, 2)
            sampler.threads = threads
            out.append(sampler.run(c_up, generator=torch.Generator().manual_seed(0))[0])
    assert out[0].std() > 0.01 and c_up.shape[-1] > 2 * incremental.BLOCK
    assert torch.equal(out[1], out[0]) and torch.equal(out[2], out[0])


def test_parallel_wavenet_chunked_synthesis_equals_one_shot():
    from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig

    model = ParallelWaveNet(ParallelWaveNetConfig(flow_layers=(4, 4), residual_channels=8, gate_channels=16,
                                                  skip_channels=8)).eval()
    _randomise(model, 0.1, seed=2)
    mel = torch.rand(2, 80, 40)
    model.config = model.config.replace(chunk_frames=0)
    one_shot = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    model.config = model.config.replace(chunk_frames=7)
    chunked = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    torch.testing.assert_close(chunked, one_shot, atol=1e-5, rtol=1e-5)


@functools.cache
def _variant_cases() -> list[tuple[str, WaveNet, torch.Tensor, torch.Tensor]]:
    """``(dist, model, c_up, TorchScript samples)`` for the per-variant test: full 64-column tiles, past taps
    of 2 to 64 steps, batch 2 (the TorchScript reference is made once for every variant)."""
    cases = []
    for seed, (dist, front) in enumerate([("mol", 1), ("gaussian", 4), ("mulaw", 4)]):
        cfg = WaveNetConfig.small(dist, layers=7, stacks=1, residual_channels=64, gate_channels=128,
                                  skip_channels=64, front_kernel_size=front,
                                  front_activation="relu" if front > 1 else "none")
        model = WaveNet(cfg).eval()
        _randomise(model, 0.05, seed=6 + seed)
        with torch.no_grad():
            c_up = model.upsample_mel(torch.randn(2, 80, 1, generator=torch.Generator().manual_seed(6)))
            sampler = IncrementalSampler(model, 2)
            sampler.use_kernel = False
            ref = sampler.run(c_up, generator=torch.Generator().manual_seed(0), temperature=0.9)[0]
        cases.append((dist, model, c_up, ref))
    return cases


def test_compiled_wavenet_loop_every_variant(wavenet_isa):
    """Each ISA variant of the loop (the portable C the intrinsics fall back to, AVX2 + FMA, AVX-512) samples
    what the TorchScript step does, for each output distribution, with two threads."""
    from zoo_plugins.wavenet import kernel

    assert kernel.load().isa == wavenet_isa
    for dist, model, c_up, ref in _variant_cases():
        with torch.no_grad():
            sampler = IncrementalSampler(model, 2)
            sampler.threads = 2
            got = sampler.run(c_up, generator=torch.Generator().manual_seed(0), temperature=0.9)[0]
        assert ref.float().std() > 0.01
        if dist == "mulaw":
            assert torch.equal(got, ref)
        else:
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("disabled", [False, True])
def test_huge_page_copies_hold_the_same_values(monkeypatch, disabled):
    """The compiled WaveNet loop streams its weights from copies in one huge-page mapping: same values,
    shapes and dtypes, 64-byte aligned, independent of the originals, and alive as long as any copy is
    (the mapping is released with the last view); ordinary clones where huge pages are turned off."""
    import gc

    from zoo.kernels import native

    if disabled:
        monkeypatch.setenv("ZOO_NO_HUGE_PAGES", "1")
    g = torch.Generator().manual_seed(0)
    originals = [torch.randn(300, 70, generator=g), torch.arange(5, dtype=torch.int64),
                 torch.randint(0, 255, (33,), generator=g).to(torch.uint8), torch.randn(3, 4, 5, generator=g)[:, 1]]
    copies = native.huge_page_copies(originals)
    for t, c in zip(originals, copies, strict=True):
        assert c.shape == t.shape and c.dtype == t.dtype and c.is_contiguous() and torch.equal(c, t)
        assert c.data_ptr() % 64 == 0 and c.data_ptr() != t.data_ptr()
    expected = [t.clone() for t in originals]
    for t in originals:
        t.zero_()
    last = copies[-1]
    del copies
    gc.collect()
    _ = [torch.randn(1 << 20) for _ in range(4)]  # reuse freed memory, were the mapping gone
    assert torch.equal(last, expected[-1])


def test_wavenet_weight_bytes_per_sample():
    """The bytes the compiled loop reads per sample (the benchmarks' bandwidth ceiling), counted again from
    the modules: each tap of a dilated conv once per min(offset, 64) steps (every step for offsets 0 and 1),
    the residual (where a layer has one, but the last layer's), skip and head 1x1s every step."""
    from zoo_plugins.wavenet.kernel import PRE_MAX, weight_bytes_per_sample

    model = WaveNet(WaveNetConfig.small("mol", layers=8, stacks=1, kernel_size=3))  # dilations 1 .. 128
    every, amortised = 0, 0.0
    for lay in model.stack.layers:
        gate, res, k = lay.dilated.weight.shape
        for j in range(k):
            offset = (k - 1 - j) * lay.dilation
            if offset < 2:
                every += gate * res
            else:
                amortised += gate * res / min(offset, PRE_MAX)
        last = lay is model.stack.layers[-1]  # its residual output is never read
        every += lay.skip.weight.numel() + (lay.res.weight.numel() if lay.res is not None and not last else 0)
    every += model.head1.weight.numel() + model.head2.weight.numel()
    got = weight_bytes_per_sample(IncrementalSampler(model, 1))
    assert got[0] == 4 * every and got[1] == pytest.approx(4 * amortised)
    from pathlib import Path

    from zoo_plugins.wavenet import kernel

    header = (Path(kernel.__file__).parent / "csrc" / "wavenet.h").read_text()
    assert PRE_MAX == int(header.split("#define PRE_MAX ")[1].split()[0])
