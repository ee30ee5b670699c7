"""The gated WaveNet stack's bfloat16 form (``zoo.kernels.gated_infer``) on the compiled kernel: bfloat16 conv
operands, float32 sums, gate, residual stream and skips; WaveGlow, FloWaveNet and the Parallel WaveNet student
around it in float32.

Each test runs on every ISA variant of the kernel this CPU runs (``isa``: AVX-512 BF16 tiles or plain C), and
fails, not skips, where the kernel could have been built but was not (tests/helpers/kernels.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from tests.helpers import kernels
from zoo.kernels import gated_infer, native, tapconv
from zoo.nn.gated import GatedResidualStack, WaveNetConditioner

isa = kernels.isa_fixture("tapconv")  # each test on every ISA variant of the kernel that this CPU runs


def _randomised(module: nn.Module, seed: int, scale: float = 1.0) -> nn.Module:
    """Weights of unit-variance outputs (``scale``), so every gate is neither saturated nor linear."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * scale / math.sqrt(fan_in))
    return module.eval()


def _operands_rounded(module: nn.Module) -> nn.Module:
    """A float32 copy of a bfloat16 ``module`` whose every conv rounds its input to bfloat16: the bfloat16
    form's arithmetic (bfloat16 operands, float32 sums and everything else) through the readable ``forward``."""
    ref = copy.deepcopy(module).float()
    for m in ref.modules():
        if isinstance(m, nn.Conv1d):
            m.register_forward_pre_hook(lambda _m, args: (args[0].bfloat16().float(), *args[1:]))
    return ref


def _stack_infer(stack: GatedResidualStack, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``infer_layers`` on one item ``x [R, T]``, ``c [cond, T]`` -> skips ``[S, T]``."""
    t = x.shape[-1]
    buf, left = gated_infer.residual_buffer(stack, t, x.t())
    buf[left:left + t] = x.t()
    return gated_infer.infer_layers(stack, buf, left, t, c.t()).t()


@pytest.mark.parametrize("skip_mode,scale,causal,channels", [
    ("sum", math.sqrt(0.5), True, 32),  # the Parallel WaveNet student's stacks
    ("sum", 1.0, False, 32),  # WaveGlow's
    ("sum", 1.0, False, 64),  # a gate half of two 32-column panels: the conv's outputs reordered for conv_gate
    ("legacy_iterative", 1.0, False, 32),
    ("sum_sqrt_layers", math.sqrt(0.5), True, 24),  # widths off the kernel's 16-column tiles
])
def test_bfloat16_stack_sums_bfloat16_operands_in_float32(skip_mode, scale, causal, channels, isa):
    stack = GatedResidualStack(channels, 2 * channels, 32, 12, 3, [1, 2, 4, 8], causal=causal,
                               residual_scale=scale, skip_mode=skip_mode, last_layer_residual=False)
    _randomised(stack, seed=channels + len(skip_mode))
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(channels, 160, generator=g), torch.randn(12, 160, generator=g)
    bf = stack.bfloat16()
    xb, cb = x.bfloat16(), c.bfloat16()
    with torch.no_grad():
        got = _stack_infer(bf, xb.float(), cb)
        emulated = _operands_rounded(bf)(xb.float()[None], cb.float()[None])[0]
        full = copy.deepcopy(bf).float()(xb.float()[None], cb.float()[None])[0]  # float32 on the same weights
        all_bf16 = bf(xb[None], cb[None])[0].float()  # torch's bfloat16 convs: every output rounded too
    assert got.dtype == torch.float32
    err_fast, err_all = (got - full).abs().mean().item(), (all_bf16 - full).abs().mean().item()
    # The same arithmetic as the emulation up to float32 summation order, and the rare operand whose rounding
    # that flips (one flip moves an output by about a weight times 2^-8 of a gate value).
    diff = (got - emulated).abs()
    assert diff.mean().item() < 0.05 * err_fast, (diff.mean().item(), err_fast)
    assert diff.max().item() < 0.005 * full.abs().max().item()
    assert err_fast < 0.5 * err_all, (err_fast, err_all)


def test_bfloat16_stack_leaves_a_bfloat16_buffer_as_it_was(isa):
    """A bfloat16 residual buffer (a caller that made it in the model's dtype) is read, not updated: the
    residual stream runs in a float32 copy, and the skips agree with a float32 buffer's."""
    stack = _randomised(GatedResidualStack(16, 32, 16, 8, 3, [1, 2], causal=True, residual_scale=1.0), 3)
    bf = stack.bfloat16()
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(16, 50, generator=g).bfloat16(), torch.randn(8, 50, generator=g).bfloat16()
    with torch.no_grad():
        buf, left = gated_infer.residual_buffer(bf, 50, x.t())
        buf[left:left + 50] = x.t()
        before = buf.clone()
        skips = gated_infer.infer_layers(bf, buf, left, 50, c.t())
        assert torch.equal(buf, before)
        assert torch.equal(skips.t(), _stack_infer(bf, x.float(), c))


@pytest.mark.parametrize("front,head", [("conv1x1", "linear_zero"), ("conv3_relu", "relu_conv_relu_zeroconv")])
def test_bfloat16_conditioner_runs_on_the_kernel_and_returns_float32(front, head, isa, monkeypatch):
    """WaveGlow's conditioner (its 1x1 front composed into the first dilated conv, its linear head folded into
    the skip convs) and FloWaveNet's (kernel-3 front, ReLU head): float32 out, on the kernel's convs, nearer the
    float32 net than torch's bfloat16 path, which they keep without the kernel."""
    net = _randomised(WaveNetConditioner(4, 8, 24, channels=32, num_layers=3, front=front, head=head), 11)
    g = torch.Generator().manual_seed(2)
    x, c = torch.randn(2, 4, 96, generator=g), torch.randn(2, 24, 96, generator=g)
    bf = net.bfloat16()
    calls: list[str] = []
    real = tapconv.conv_taps
    monkeypatch.setattr(tapconv, "conv_taps", lambda *a, **k: calls.append("conv_taps") or real(*a, **k))
    with torch.no_grad():
        full = copy.deepcopy(bf).float()(x.bfloat16().float(), c.bfloat16().float())
        got = bf.infer(x.bfloat16(), c.bfloat16())
        assert calls and got.dtype == torch.float32
        assert torch.equal(bf.infer(x, c.bfloat16()), got)  # a float32 input is rounded as the front's operand
        monkeypatch.setattr(tapconv, "load", lambda: None)  # no kernel: today's torch bfloat16 path
        calls.clear()
        torch_bf16 = bf.infer(x.bfloat16(), c.bfloat16())
        assert not calls and torch_bf16.dtype == torch.bfloat16
    err_fast, err_all = (got - full).abs().mean().item(), (torch_bf16.float() - full).abs().mean().item()
    assert err_fast < 0.5 * err_all, (err_fast, err_all)


def test_shared_time_major_conditioning_is_read_in_place(isa, monkeypatch):
    """``time_major_cond`` (FloWaveNet's flows share each half of a block's conditioning) makes one time-major
    bfloat16 copy that every net reads in place: the same output as each net rounding its own copy, and no
    copy of the conditioning inside the net (a float32 stack gets ``c`` back unchanged)."""
    net = _randomised(WaveNetConditioner(4, 8, 24, channels=32, num_layers=3, front="conv3_relu",
                                         head="relu_conv_relu_zeroconv"), 12)
    g = torch.Generator().manual_seed(6)
    x, c = torch.randn(2, 4, 80, generator=g), torch.randn(2, 48, 80, generator=g)[:, 24:]  # a half, as flows take
    assert gated_infer.time_major_cond(net.stack, c) is c  # float32 weights: nothing to share
    bf = net.bfloat16()
    shared = gated_infer.time_major_cond(bf.stack, c)
    assert shared.dtype == torch.bfloat16 and shared.stride(1) == 1 and torch.equal(shared, c.bfloat16())
    with torch.no_grad():
        own = bf.infer(x, c)
        copies: list[tuple[int, ...]] = []
        real_empty = torch.empty

        def empty(*shape, **kw):
            if kw.get("dtype") == torch.bfloat16 and tuple(shape) == (80, 24):  # a [T, cond] operand copy
                copies.append(tuple(shape))
            return real_empty(*shape, **kw)

        monkeypatch.setattr(torch, "empty", empty)
        got = bf.infer(x, shared)
        assert not copies
        bf.infer(x, c)
        assert copies  # the net's own copy, which the shared one saves
    assert torch.equal(got, own)


def test_head_folded_skip_packs_are_kept_and_follow_the_head(isa, monkeypatch):
    """WaveGlow's linear head folds into every skip conv; those packs are kept between calls (made once, not per
    call, although the fold's source is a view of the head's weight made afresh each call) and made anew when
    the head's weight changes in place. Its narrow skips (8 columns) run on the kernel's float32 tiles where it
    has them."""
    net = _randomised(WaveNetConditioner(4, 8, 24, channels=32, num_layers=3, front="conv1x1",
                                         head="linear_zero"), 13).bfloat16()
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(1, 4, 64, generator=g), torch.randn(1, 24, 64, generator=g)
    packs: list[object] = []  # the keys of the packs made (not taken from the kept ones)
    real_kept = native.kept
    monkeypatch.setattr(native, "kept", lambda owner, key, sources, make: real_kept(
        owner, key, sources, lambda: packs.append(key) or make()))
    with torch.no_grad():
        first = net.infer(x, c)
        made = len(packs)
        assert made and torch.equal(net.infer(x, c), first) and len(packs) == made  # kept: no pack this time
        net.head.weight.mul_(2.0)
        again = net.infer(x, c)
        assert sum(k[1] == "skip" for k in packs[made:]) == 3  # the head changed: its folds made anew
    assert torch.allclose(again - net.head.bias.float()[:, None], 2 * (first - net.head.bias.float()[:, None]),
                          rtol=1e-3, atol=1e-5)


def _flow_models():
    from zoo_plugins.flowavenet.model import FloWaveNet, FloWaveNetConfig
    from zoo_plugins.parallel_wavenet.model import ParallelWaveNet, ParallelWaveNetConfig
    from zoo_plugins.waveglow.model import WaveGlow, WaveGlowConfig

    return {
        "waveglow": lambda: WaveGlow(WaveGlowConfig.small(n_channels=32, n_layers=3, n_flows=4)),
        "flowavenet": lambda: FloWaveNet(FloWaveNetConfig.small(filter_size=32)),
        "parallel_wavenet": lambda: ParallelWaveNet(ParallelWaveNetConfig(
            flow_layers=(3, 3), dilation_cycle=3, residual_channels=32, gate_channels=64, skip_channels=32)),
    }


@pytest.mark.parametrize("name", ["waveglow", "flowavenet", "parallel_wavenet"])
@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_bfloat16_flows_follow_float32_closer_than_torch_bfloat16(name, monkeypatch):
    """A bfloat16 WaveGlow, FloWaveNet or student vocodes through the kernel's bfloat16 stacks with its flows'
    affine maps in float32, and lands nearer its own float32 output (same weights, same noise) than the torch
    bfloat16 path it keeps without the kernel."""
    kernels.require("tapconv")
    torch.manual_seed(0)
    model = _flow_models()[name]()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() > 1 and "convinv" not in n:  # past the zero-initialised heads: flows that transform
                p.add_(torch.randn(p.shape, generator=g) * 0.1 / math.sqrt(p[0].numel()))
        for m in model.modules():
            if hasattr(m, "initialized"):
                m.initialized.fill_(1)
    model.eval()
    mel = torch.randn(model.config.mel.n_mels, 12, generator=torch.Generator().manual_seed(3))
    bf = copy.deepcopy(model).to(torch.bfloat16)
    full = copy.deepcopy(bf).float()(mel, generator=torch.Generator().manual_seed(4))  # the same weights
    calls: list[str] = []
    real = tapconv.conv_taps
    monkeypatch.setattr(tapconv, "conv_taps", lambda *a, **k: calls.append("conv_taps") or real(*a, **k))
    got = bf(mel, generator=torch.Generator().manual_seed(4))
    assert calls and got.dtype == torch.float32
    monkeypatch.setattr(tapconv, "load", lambda: None)
    torch_bf16 = bf(mel, generator=torch.Generator().manual_seed(4)).float()
    err_fast, err_all = (got - full).abs().mean().item(), (torch_bf16 - full).abs().mean().item()
    assert 0 < err_fast < 0.6 * err_all, (err_fast, err_all)


def test_bfloat16_packs_follow_the_stack_s_weights(isa):
    """The bfloat16 packs kept on a stack are made anew when its weights change in place (a state dict
    loaded into it), so its output is a fresh stack's with those weights."""
    g = torch.Generator().manual_seed(4)
    x, c = torch.randn(16, 40, generator=g), torch.randn(8, 40, generator=g).bfloat16()
    stack = _randomised(GatedResidualStack(16, 32, 16, 8, 3, [1, 2], causal=False), 5).bfloat16()
    other = _randomised(GatedResidualStack(16, 32, 16, 8, 3, [1, 2], causal=False), 6).bfloat16()
    with torch.no_grad():
        first = _stack_infer(stack, x, c)
        assert torch.equal(_stack_infer(stack, x, c), first)  # from the packs kept
        stack.load_state_dict(other.state_dict())
        assert torch.equal(_stack_infer(stack, x, c), _stack_infer(other, x, c))
        assert not torch.equal(_stack_infer(stack, x, c), first)
