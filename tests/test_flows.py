"""Flow layers: round trips and log-determinants against brute-force Jacobians (float64, tiny sizes)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.functional import jacobian

from zoo.nn.flows import (
    ActNorm,
    AffineCoupling,
    FloWaveNetCoupling,
    InvertibleConv1x1,
    WaveGlowCoupling,
    squeeze,
    unsqueeze,
)
from zoo.nn.gated import WaveNetConditioner


def _brute_logdet(fn, x: torch.Tensor) -> float:
    jac = jacobian(lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1))
    return torch.linalg.slogdet(jac)[1].item()


def _coupling(paper: str) -> AffineCoupling:
    torch.manual_seed(0)
    front, head = ("conv1x1", "linear_zero") if paper == "waveglow" else ("conv3_relu", "relu_conv_relu_zeroconv")
    net = WaveNetConditioner(2, 4, 3, channels=6, num_layers=2, front=front, head=head).double()
    for p in net.parameters():  # leave the zero initialisation, or the test checks nothing
        p.data.normal_(0, 0.3)
    return WaveGlowCoupling(net) if paper == "waveglow" else FloWaveNetCoupling(net)


@pytest.mark.parametrize("paper", ["waveglow", "flowavenet"])
def test_coupling_is_the_papers_map(paper):
    """Each coupling, written out from its reference: which half of the net's output is the shift, which the
    log-scale, and which way the map runs (WaveGlow: ``exp(log_s) x_b + t``; FloWaveNet: ``(x_b - t) exp(-log_s)``)."""
    mod = _coupling(paper)
    torch.manual_seed(2)
    x, c = torch.randn(1, 4, 6, dtype=torch.float64), torch.randn(1, 3, 6, dtype=torch.float64)
    out = mod.net(x[:, :2], c)
    if paper == "waveglow":  # NVIDIA glow.py: b = output[:, :n_half], log_s = output[:, n_half:]
        b, log_s = out[:, :2], out[:, 2:]
        z_b, logdet = torch.exp(log_s) * x[:, 2:] + b, log_s.sum()
    else:  # ksw0306 FloWaveNet: log_s, t = net(in_a, c).chunk(2, 1)
        log_s, t = out.chunk(2, 1)
        z_b, logdet = (x[:, 2:] - t) * torch.exp(-log_s), -log_s.sum()
    z, ld, got_log_s = mod(x, c)
    torch.testing.assert_close(z, torch.cat([x[:, :2], z_b], 1), atol=1e-12, rtol=0)
    torch.testing.assert_close(ld, logdet.reshape(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(got_log_s, log_s, atol=0, rtol=0)
    with torch.no_grad():  # the inference fast path (net.infer) inverts the same map
        torch.testing.assert_close(mod.inverse(z, c), x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("layer", ["invconv", "actnorm", "coupling-waveglow", "coupling-flowavenet"])
def test_logdet_equals_brute_force_jacobian_and_round_trip(layer):
    torch.manual_seed(1)
    x = torch.randn(1, 4, 5, dtype=torch.float64)
    c = torch.randn(1, 3, 5, dtype=torch.float64)
    if layer == "invconv":
        mod = InvertibleConv1x1(4).double()
        mod.conv.weight.data += 0.2 * torch.randn_like(mod.conv.weight)  # not orthonormal: det != 1

        def fwd(v):
            return mod(v)[0]

        def inv(z):
            return mod.inverse(z)
    elif layer == "actnorm":
        mod = ActNorm(4).double()
        mod.loc.data.normal_()
        mod.scale.data.uniform_(0.5, 2.0)
        mod.initialized.fill_(1)

        def fwd(v):
            return mod(v)[0]

        def inv(z):
            return mod.inverse(z)
    else:
        mod = _coupling(layer.split("-")[1])

        def fwd(v):
            return mod(v, c)[0]

        def inv(z):
            return mod.inverse(z, c)
    z, logdet = (mod(x, c)[:2] if isinstance(mod, AffineCoupling) else mod(x))
    assert logdet.shape == (1,)
    assert abs(logdet.item() - _brute_logdet(fwd, x)) < 1e-8
    torch.testing.assert_close(inv(z), x, atol=1e-10, rtol=0)
    assert abs(logdet.item()) > 1e-3, "a trivial log-determinant would make this test meaningless"


def test_invconv_cached_inverse_follows_weight_changes():
    mod = InvertibleConv1x1(3).eval()
    x = torch.randn(2, 3, 7)
    with torch.no_grad():
        torch.testing.assert_close(mod.inverse(mod(x)[0]), x, atol=1e-5, rtol=0)
        first = mod.inverse_weight()
        assert mod.inverse_weight() is first, "the inverse must be cached for inference"
        mod.conv.weight.mul_(2.0)
        torch.testing.assert_close(mod.inverse(mod(x)[0]), x, atol=1e-5, rtol=0)
    assert torch.det(mod.weight.double()) != 0
    with torch.inference_mode():  # weights made under inference mode keep no version: inverted every call
        made = InvertibleConv1x1(3).eval()
        made.inverse_weight()
        made.conv.weight.mul_(2.0)
        torch.testing.assert_close(made.inverse(made(x)[0]), x, atol=1e-5, rtol=0)


def test_actnorm_data_dependent_init():
    torch.manual_seed(0)
    mod = ActNorm(3).train()
    scale, shift = torch.tensor([2.0, 0.5, 3.0]).view(1, 3, 1), torch.tensor([1.0, -2.0, 0.3]).view(1, 3, 1)
    x = torch.randn(4, 3, 50) * scale + shift
    z, _ = mod(x)
    flat = z.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(1), torch.ones(3), atol=1e-4, rtol=0)
    assert int(mod.initialized) == 1
    loc = mod.loc.detach().clone()
    mod(torch.randn(4, 3, 50))
    assert torch.equal(loc, mod.loc.detach()), "initialisation happens once"
    assert "initialized" in mod.state_dict()


def test_squeeze_conventions():
    x = torch.arange(2 * 1 * 16, dtype=torch.float32).reshape(2, 1, 16)
    # WaveGlow: audio.unfold(1, g, g).permute(0, 2, 1)
    wg = x[:, 0].unfold(1, 8, 8).permute(0, 2, 1)
    torch.testing.assert_close(squeeze(x, 8), wg)
    # FloWaveNet: view(B, C, T/2, 2).permute(0, 1, 3, 2) on multi-channel input
    y = torch.randn(2, 3, 10)
    fw = y.view(2, 3, 5, 2).permute(0, 1, 3, 2).contiguous().view(2, 6, 5)
    torch.testing.assert_close(squeeze(y, 2), fw)
    # WaveGlow's mel grouping: unfold(2, g, g).permute(0, 2, 1, 3) -> view(B, T/g, C*g) -> permute
    m = torch.randn(2, 4, 16)
    wm = m.unfold(2, 8, 8).permute(0, 2, 1, 3).contiguous().view(2, 2, -1).permute(0, 2, 1)
    torch.testing.assert_close(squeeze(m, 8), wm)
    torch.testing.assert_close(unsqueeze(squeeze(y, 2), 2), y)
    with pytest.raises(ValueError, match="multiple of 4"):
        squeeze(torch.zeros(1, 1, 10), 4)
