"""Shared building blocks: upsamplers, output distributions and the gated stack, checked numerically and
against the reference fixtures (data-driven: ZOO_PARITY_DIR)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tests.conftest import parity_dir
from zoo.hub.weightnorm import fold_state_dict, fold_weight_norm
from zoo.kernels.native import kept
from zoo.nn.distributions import (
    DiscretizedMixLogistic,
    Gaussian,
    MuLawSoftmax,
    get_distribution,
    kl_gaussians,
    mulaw_decode,
    mulaw_encode,
)
from zoo.nn.gated import GatedResidualStack, WaveNetConditioner
from zoo.nn.upsample import RepeatConvUpsampler, Stretch2dUpsampler, TransposedConv2dUpsampler, TransposedConvUpsampler

P = parity_dir()


def _io(model: str, name: str = "io") -> dict[str, torch.Tensor]:
    return load_file(str(P / model / f"{name}.safetensors"))


# ---------------------------------------------------------------------- upsamplers
@pytest.mark.parametrize("frames", [1, 2, 3, 5, 8, 13])
def test_every_upsampler_gives_frames_times_hop(frames):
    c = torch.randn(2, 4, frames)
    for up, hop in [
        (TransposedConvUpsampler(4, 16, 64), 16),
        (RepeatConvUpsampler(4, 16), 16),
        (TransposedConv2dUpsampler([4, 4], time_kernel=4), 16),
        (TransposedConv2dUpsampler([4, 4], activation="leaky_relu"), 16),
    ]:
        assert up(c).shape == (2, 4, frames * hop), type(up).__name__
        assert up.upsampled_length(frames) == frames * hop
    st = Stretch2dUpsampler(4, [2, 8], cin_pad=2)
    assert st(torch.randn(2, 4, frames + 4)).shape == (2, 4, frames * 16)


def test_upsampler_bad_input():
    with pytest.raises(ValueError, match="channels"):
        TransposedConvUpsampler(4, 16)(torch.randn(1, 5, 3))
    with pytest.raises(ValueError, match="cin_pad"):
        Stretch2dUpsampler(4, [4], cin_pad=2)(torch.randn(1, 4, 4))


def test_weight_norm_folding_matches_torch():
    conv = torch.nn.utils.weight_norm(torch.nn.Conv1d(3, 5, 3))
    conv.weight_g.data.mul_(1.7)
    with torch.no_grad():
        conv(torch.zeros(1, 3, 4))  # recomputes .weight from g, v
    folded = fold_weight_norm(conv.weight_g, conv.weight_v)
    torch.testing.assert_close(folded, conv.weight)
    state = fold_state_dict({k: v.detach() for k, v in conv.state_dict().items()})
    assert set(state) == {"weight", "bias"}
    torch.testing.assert_close(state["weight"], conv.weight.detach())


@pytest.mark.parity
def test_parity_waveglow_upsampler():
    sd, io = load_file(str(P / "waveglow" / "small.safetensors")), _io("waveglow")
    up = TransposedConvUpsampler(sd["upsample.weight"].shape[0], sd["upsample.weight"].shape[0] and 256,
                                 sd["upsample.weight"].shape[-1])
    up.load_state_dict({"conv.weight": sd["upsample.weight"], "conv.bias": sd["upsample.bias"]})
    out = up(io["mel"])[..., : io["mel_upsampled"].shape[-1]]
    torch.testing.assert_close(out, io["mel_upsampled"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
@pytest.mark.parametrize("variant", ["mulaw", "mol"], ids=["parity-wavenet-head-mulaw", "parity-wavenet-head-mol"])
def test_parity_wavenet_head_upsampler(variant):
    ref = json.loads((P / "wavenet" / "reference.json").read_text())
    sd = fold_state_dict(load_file(str(P / "wavenet" / f"small_{variant}.safetensors")))
    io = _io("wavenet", f"io_{variant}")
    scales = [int(s) for s in _find(ref, "upsample_scales") or [4, 4, 4, 4]]
    n_up = len([k for k in sd if k.startswith("upsample_net.upsample.up_layers.")])
    cin_pad = (sd["upsample_net.conv_in.weight"].shape[-1] - 1) // 2
    st = Stretch2dUpsampler(io["c"].shape[1], scales[:n_up], cin_pad=cin_pad)
    layer_keys = sorted((k for k in sd if k.startswith("upsample_net.upsample.up_layers.")),
                        key=lambda k: int(k.split(".")[3]))
    st.load_state_dict({"conv_in.weight": sd["upsample_net.conv_in.weight"],
                        **{f"up_layers.{j}.weight": sd[k] for j, k in enumerate(layer_keys)}})
    torch.testing.assert_close(st(io["c"]), io["c_up"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
def test_parity_wavenet_legacy_upsampler():
    sd = fold_state_dict(load_file(str(P / "wavenet" / "small_legacy_mol.safetensors")))
    io = _io("wavenet", "io_legacy_mol")
    keys = _upsample_keys(sd)
    scales = [sd[k + ".weight"].shape[-1] for k in keys]
    up = TransposedConv2dUpsampler(scales, freq_kernel=sd[keys[0] + ".weight"].shape[2], time_kernel=scales[0])
    up.load_state_dict({f"convs.{j}.{p}": sd[f"{k}.{p}"] for j, k in enumerate(keys) for p in ("weight", "bias")})
    torch.testing.assert_close(up(io["c"]), io["c_up"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
@pytest.mark.parametrize("model", ["flowavenet", "clarinet"],
                         ids=["parity-flowavenet-upsampler", "parity-clarinet-upsampler"])
def test_parity_2d_transposed_upsampler(model):
    name = "small" if model == "flowavenet" else "small_teacher"
    sd = fold_state_dict(load_file(str(P / model / f"{name}.safetensors")))
    io = _io(model)
    keys = _upsample_keys(sd)
    scales = [sd[k + ".weight"].shape[-1] // 2 for k in keys]
    up = TransposedConv2dUpsampler(scales, freq_kernel=3, activation="leaky_relu", negative_slope=0.4)
    up.load_state_dict({f"convs.{j}.{p}": sd[f"{k}.{p}"] for j, k in enumerate(keys) for p in ("weight", "bias")})
    torch.testing.assert_close(up(io["c"]), io["c_up"], atol=1e-5, rtol=1e-5)


def _upsample_keys(sd: dict) -> list[str]:
    names = {k.rsplit(".", 1)[0] for k in sd if k.startswith("upsample_conv.")}
    return sorted(names, key=lambda k: int(k.split(".")[1]))


def _find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find(v, key)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------- distributions
@pytest.mark.parity
@pytest.mark.parametrize(("variant", "log_scale_min"), [("mol", -16.0), ("legacy_mol", math.log(1e-14))],
                         ids=["parity-wavenet-mol-loss", "parity-wavenet-legacy-mol-loss"])
def test_parity_mol_loss(variant, log_scale_min):
    io = _io("wavenet", f"io_{variant}")
    d = DiscretizedMixLogistic(io["y_hat"].shape[1] // 3, 65536, log_scale_min)
    nll = d.loss(io["y_hat"][:, :, :-1], io["x"][:, :, 1:])
    torch.testing.assert_close(nll, io["mol_nll"], atol=5e-3, rtol=0)
    assert abs(nll.mean().item() - io["mol_loss"].item()) < 5e-5


@pytest.mark.parity
def test_parity_mol_sampler_replays_uniforms():
    io = _io("wavenet", "io_mol")
    d = DiscretizedMixLogistic(10, 65536, -16.0)
    x = d.sample(io["y_hat"], uniforms=(io["sample_u_mixture"], io["sample_u_logistic"]), clamp_log_scale=False)
    torch.testing.assert_close(x, io["sample_x"], atol=1e-6, rtol=0)


@pytest.mark.parity
def test_parity_clarinet_gaussian_and_kl():
    io = _io("clarinet")
    nll = Gaussian(-9.0).loss(io["teacher_out"][:, :, :-1], io["x"][:, :, 1:])
    torch.testing.assert_close(nll, io["teacher_nll"].reshape(nll.shape), atol=1e-5, rtol=1e-5)
    mu_p, logs_p = io["teacher_out_on_student"][:, 0:1, :-1], io["teacher_out_on_student"][:, 1:, :-1]
    total, kl, reg = kl_gaussians(io["student_mu"], io["student_log_scale"], mu_p, logs_p)
    torch.testing.assert_close(total, io["kl_loss_total"], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(kl, io["kl_loss"], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(reg, io["kl_reg_loss"], atol=1e-5, rtol=1e-6)
    _, kl_el, _ = kl_gaussians(io["student_mu"], io["student_log_scale"], mu_p, logs_p, reduce=False)
    torch.testing.assert_close(kl_el, io["kl_elementwise"], atol=1e-5, rtol=1e-5)
    pq, _, _ = kl_gaussians(io["student_mu"], io["student_log_scale"], mu_p, logs_p, kind="pq")
    torch.testing.assert_close(pq, io["kl_pq_loss_total"], atol=1e-5, rtol=1e-6)


def test_gaussian_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu_q, logs_q, mu_p, logs_p = torch.tensor(0.3), torch.tensor(-0.5), torch.tensor(-0.2), torch.tensor(0.1)
    _, kl, _ = kl_gaussians(mu_q, logs_q, mu_p, logs_p, log_std_min=-100.0)
    x = mu_q + torch.exp(logs_q) * torch.randn(200_000, generator=g)
    log_q = -0.5 * ((x - mu_q) / torch.exp(logs_q)) ** 2 - logs_q
    log_p = -0.5 * ((x - mu_p) / torch.exp(logs_p)) ** 2 - logs_p
    samples = log_q - log_p
    se = samples.std() / math.sqrt(samples.numel())
    assert abs(samples.mean() - kl) < 3 * se, (samples.mean(), kl, se)


def test_mulaw_round_trip_and_sampling():
    x = torch.linspace(-1, 1, 1001)
    torch.testing.assert_close(mulaw_decode(mulaw_encode(x)), x, atol=1e-6, rtol=0)
    d = MuLawSoftmax(256)
    q = d.target_from_audio(x)
    assert q.min() == 0 and q.max() == 255
    assert (d.to_audio(q) - x).abs().max() < 0.025  # half a mu-law step at full scale
    logits = torch.full((1, 256, 4000), -20.0)
    logits[:, 7] = 0.0
    logits[:, 9] = math.log(3.0)
    s = d.sample(logits, generator=torch.Generator().manual_seed(0))
    frac9 = (s == 9).float().mean().item()
    assert abs(frac9 - 0.75) < 0.03 and set(s.unique().tolist()) <= {7, 9}
    assert d.sample(logits, temperature=0).eq(9).all()


def test_single_mixture_logistic_quantiles_and_gaussian_stats():
    d = DiscretizedMixLogistic(1, 65536, -16.0)
    y_hat = torch.zeros(1, 3, 20000)
    y_hat[:, 1] = 0.1
    y_hat[:, 2] = math.log(0.05)
    s = d.sample(y_hat, generator=torch.Generator().manual_seed(1))
    assert abs(s.median().item() - 0.1) < 0.005
    q75 = 0.1 + 0.05 * math.log(3)  # logistic quantile
    assert abs(s.quantile(0.75).item() - q75) < 0.005
    g = Gaussian()
    y = torch.stack([torch.full((1, 20000), 0.2), torch.full((1, 20000), math.log(0.3))], 1)
    s = g.sample(y, generator=torch.Generator().manual_seed(2))
    assert abs(s.mean() - 0.2) < 0.01 and abs(s.std() - 0.3) < 0.01
    with pytest.raises(ValueError, match="unknown output distribution"):
        get_distribution("laplace")


# ---------------------------------------------------------------------- gated stack
def _stack(causal: bool, **kw) -> GatedResidualStack:
    torch.manual_seed(0)
    return GatedResidualStack(4, 6, 5, 3, 3, [1, 2, 4], causal=causal, **kw)


def test_causal_stack_does_not_look_ahead_and_receptive_field():
    stack = _stack(True, residual_scale=math.sqrt(0.5))
    x = torch.randn(1, 4, 40, requires_grad=True)
    c = torch.randn(1, 3, 40)
    out = stack(x, c)
    out[0, :, 25].sum().backward()
    grad = x.grad[0].abs().sum(0)
    assert grad[26:].sum() == 0, "a causal stack must not depend on future samples"
    support = (grad > 0).nonzero().flatten()
    assert 25 - support.min().item() + 1 == stack.receptive_field == 1 + 2 * (1 + 2 + 4)


def test_noncausal_stack_is_symmetric():
    stack = _stack(False)
    x = torch.randn(1, 4, 40, requires_grad=True)
    stack(x, torch.randn(1, 3, 40))[0, :, 20].sum().backward()
    support = (x.grad[0].abs().sum(0) > 0).nonzero().flatten()
    assert support.min().item() == 20 - 7 and support.max().item() == 20 + 7


def test_fused_conditioning_equals_per_layer():
    stack = _stack(True)
    x, c = torch.randn(2, 4, 30), torch.randn(2, 3, 30)
    proj = stack.project_cond(c)
    torch.testing.assert_close(stack(x, cond_proj=proj), stack(x, c))
    # per-layer 1x1 convs built from slices of the fused one give the same projection
    per_layer = [torch.nn.functional.conv1d(c, stack.cond.weight[i * 6:(i + 1) * 6], stack.cond.bias[i * 6:(i + 1) * 6])
                 for i in range(3)]
    torch.testing.assert_close(torch.cat(per_layer, 1), proj)


@pytest.mark.parametrize("mode", ["sum", "sum_sqrt_layers", "legacy_iterative"])
def test_skip_modes(mode):
    stack = _stack(True, skip_mode=mode)
    x, c = torch.randn(1, 4, 10), torch.randn(1, 3, 10)
    skips = []

    def hook(module, inp, out):
        skips.append(out)

    handles = [layer.skip.register_forward_hook(hook) for layer in stack.layers]
    out = stack(x, c)
    for h in handles:
        h.remove()
    if mode == "sum":
        expected = sum(skips)
    elif mode == "sum_sqrt_layers":
        expected = sum(skips) * math.sqrt(1 / 3)
    else:
        expected = ((skips[0] + skips[1]) * math.sqrt(0.5) + skips[2]) * math.sqrt(0.5)
    torch.testing.assert_close(out, expected)


def test_conditioner_heads_start_at_zero():
    for head in ("linear_zero", "relu_conv_relu_zeroconv"):
        net = WaveNetConditioner(2, 4, 3, channels=8, num_layers=2, head=head,
                                 front="conv1x1" if head == "linear_zero" else "conv3_relu")
        assert torch.equal(net(torch.randn(1, 2, 16), torch.randn(1, 3, 16)), torch.zeros(1, 4, 16))


@pytest.mark.parametrize("hop,kernel,batch", [(16, 64, 1), (16, 40, 3), (8, 8, 2)])
def test_transposed_upsampler_product_is_the_transposed_conv(hop, kernel, batch):
    """The batched product equals ``conv_transpose1d`` cut to ``frames * hop``: whole and partial last taps
    (kernel not a multiple of hop), batches, and its gradients."""
    torch.manual_seed(0)
    up = TransposedConvUpsampler(3, hop, kernel).double()
    mel = torch.randn(batch, 3, 7, dtype=torch.float64, requires_grad=True)
    want = F.conv_transpose1d(mel, up.conv.weight, up.conv.bias, stride=hop)[..., : 7 * hop]
    got = up(mel)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(got.square().sum(), [mel, up.conv.weight, up.conv.bias])
    want_grads = torch.autograd.grad(want.square().sum(), [mel, up.conv.weight, up.conv.bias])
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def test_transposed_upsampler_keeps_its_rearranged_weights_until_they_change():
    torch.manual_seed(0)
    up = TransposedConvUpsampler(3, 16, 64)
    mel = torch.randn(1, 3, 5)
    with torch.no_grad():
        first = up(mel)
        w3 = kept(up, "frame_weights", [up.conv.weight], lambda: None)
        assert w3 is not None  # made by the first call, and kept
        assert kept(up, "frame_weights", [up.conv.weight], lambda: None) is w3
        up.conv.weight.mul_(2.0)  # an in-place change: made again
        torch.testing.assert_close(up(mel) - up.conv.bias[:, None], 2 * (first - up.conv.bias[:, None]))


def test_transposed_upsampler_window_equals_the_slice_of_forward():
    torch.manual_seed(0)
    up = TransposedConvUpsampler(3, 16, 64)
    mel = torch.randn(2, 3, 9)
    full = up(mel)
    for start, stop in [(0, 1), (0, 144), (5, 37), (63, 64), (100, 144), (17, 18)]:
        assert torch.allclose(up.window(mel, start, stop), full[..., start:stop], atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        up.window(mel, 10, 145)
