"""Parallel WaveNet / ClariNet student: conformance, flow algebra, log-det, losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from zoo_plugins.parallel_wavenet import ParallelWaveNet, ParallelWaveNetConfig
from zoo_plugins.parallel_wavenet.losses import (
    MultiResolutionSTFTLoss,
    frame_loss,
    gaussian_kl_loss,
    monte_carlo_kl,
    stft_magnitude,
)

from zoo.testing import check_vocoder, make_mel_dependent

torch.set_num_threads(1)


def tiny_config(**kw) -> ParallelWaveNetConfig:
    base = dict(
        flow_layers=(2, 3),
        dilation_cycle=2,
        front_kernel_size=4,
        residual_channels=6,
        gate_channels=10,
        skip_channels=7,
        kernel_size=3,
    )
    base.update(kw)
    return ParallelWaveNetConfig(**base)


def perturbed(model: ParallelWaveNet, seed: int = 0, scale: float = 0.3) -> ParallelWaveNet:
    """Random weights large enough that every flow really shifts and scales."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def test_conformance(tmp_path):
    model = check_vocoder(make_mel_dependent(ParallelWaveNet(tiny_config())), tmp_path=tmp_path)
    assert model.architecture == "parallel_wavenet"
    assert not model.deterministic and model.parallel


def test_output_distribution_closed_form():
    """x[..., 1:] = mu_tot + exp(logs_tot) * z[..., 1:] and x[..., 0] = 0, for random z and weights."""
    torch.manual_seed(0)
    model = perturbed(ParallelWaveNet(tiny_config()))
    z = torch.randn(2, 1, 300)
    c_up = torch.randn(2, 80, 300)
    with torch.no_grad():
        x, mu, logs = model.iaf(z, c_up)
    assert x.shape == (2, 1, 300) and mu.shape == logs.shape == (2, 1, 299)
    assert torch.all(x[..., 0] == 0)
    torch.testing.assert_close(x[..., 1:], mu + torch.exp(logs) * z[..., 1:], atol=1e-5, rtol=1e-5)
    assert logs.abs().max() > 0.05, "the test weights should give non-trivial scales"


def test_mu_and_scale_depend_only_on_past_noise():
    """mu_tot/logs_tot at index t (describing x_{t+1}) depend on z_<=t only, and x_t on z_<=t."""
    model = perturbed(ParallelWaveNet(tiny_config()), seed=1).double()
    z = torch.randn(1, 1, 120, dtype=torch.float64, requires_grad=True)
    c_up = torch.randn(1, 80, 120, dtype=torch.float64)
    x, mu, logs = model.iaf(z, c_up)
    t = 60
    (grad_mu,) = torch.autograd.grad(mu[0, 0, t] + logs[0, 0, t], z, retain_graph=True)
    assert torch.all(grad_mu[0, 0, t + 1 :] == 0) and grad_mu[0, 0, t].abs() > 0
    (grad_x,) = torch.autograd.grad(x[0, 0, t], z)
    assert torch.all(grad_x[0, 0, t + 1 :] == 0) and grad_x[0, 0, t].abs() > 0


def test_log_det_equals_brute_force_jacobian():
    """log|det d x[1:] / d z[1:]| from the full autograd Jacobian equals sum(logs_tot)."""
    model = perturbed(ParallelWaveNet(tiny_config()), seed=2, scale=0.5).double()
    g = torch.Generator().manual_seed(3)
    T = 24
    z = torch.randn(2, 1, T, generator=g, dtype=torch.float64)
    c_up = torch.randn(2, 80, T, generator=g, dtype=torch.float64)
    for b in range(2):

        def f(tail, b=b):
            full = torch.cat([z[b : b + 1, :, :1], tail.view(1, 1, T - 1)], dim=-1)
            return model.iaf(full, c_up[b : b + 1])[0][0, 0, 1:]

        jac = torch.autograd.functional.jacobian(f, z[b, 0, 1:].clone())
        assert torch.allclose(jac.triu(1), torch.zeros_like(jac)), "the IAF Jacobian must be lower-triangular"
        sign, brute = torch.linalg.slogdet(jac)
        assert sign > 0
        closed = model.log_det(z[b : b + 1], c_up[b : b + 1])[0]
        assert abs(brute.item() - closed.item()) < 1e-9 * max(1.0, abs(brute.item())), (brute, closed)
        assert abs(closed.item()) > 0.5, "the test should exercise a non-trivial log-det"


def test_receptive_field_is_measured():
    model = perturbed(ParallelWaveNet(tiny_config()), seed=4).double()
    T = 200
    z = torch.randn(1, 1, T, dtype=torch.float64, requires_grad=True)
    x = model.iaf(z, torch.zeros(1, 80, T, dtype=torch.float64))[0]
    (grad,) = torch.autograd.grad(x[0, 0, -1], z)
    reach = T - int((grad[0, 0].abs() > 0).nonzero().min())
    assert reach == model.receptive_field


def test_temperature_zero_is_the_mean_path():
    model = perturbed(ParallelWaveNet(tiny_config()), seed=5)
    mel = torch.rand(1, 80, 3)
    a = model.vocode(mel, generator=torch.Generator().manual_seed(1), temperature=0.0)[0]
    b = model.vocode(mel, generator=torch.Generator().manual_seed(2), temperature=0.0)[0]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="temperature"):
        model.vocode(mel, sigma=0.5)
    cooled = ParallelWaveNet(model.config.replace(infer_temperature=0.0))
    cooled.load_state_dict(model.state_dict())
    assert torch.equal(cooled.vocode(mel, generator=torch.Generator().manual_seed(3))[0], a)
    with pytest.raises(ValueError, match="infer_temperature"):
        tiny_config(infer_temperature=-0.1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(flow_layers=()),
        dict(flow_layers=(3, 0)),
        dict(residual_channels=0),
        dict(upsample_scales=(16, 8)),
        dict(kernel_size=0),
    ],
)
def test_bad_config(bad):
    with pytest.raises(ValueError):
        tiny_config(**bad)


def test_iaf_bad_shapes():
    model = ParallelWaveNet(tiny_config())
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        model.iaf(torch.zeros(1, 2, 10), torch.zeros(1, 80, 10))
    with pytest.raises(ValueError, match="c_up"):
        model.iaf(torch.zeros(1, 1, 10), torch.zeros(1, 80, 9))


# ---------------------------------------------------------------------- losses
def test_closed_form_kl_matches_monte_carlo_within_standard_error():
    """ClariNet's closed-form KL(q || p) between per-step Gaussians vs sampling from q."""
    g = torch.Generator().manual_seed(0)
    B, T = 4, 50
    mu_q = 0.3 * torch.randn(B, 1, T, generator=g, dtype=torch.float64)
    logs_q = -1.0 + 0.3 * torch.randn(B, 1, T, generator=g, dtype=torch.float64)
    teacher = torch.cat(
        [
            0.3 * torch.randn(B, 1, T + 1, generator=g, dtype=torch.float64),
            -0.8 + 0.3 * torch.randn(B, 1, T + 1, generator=g, dtype=torch.float64),
        ],
        dim=1,
    )
    closed = gaussian_kl_loss(mu_q, logs_q, teacher, reg_weight=0.0)["kl"]

    def nll(y_hat, y):
        mean, log_std = y_hat[:, 0], y_hat[:, 1]
        y = y.reshape(mean.shape)
        return 0.5 * math.log(2 * math.pi) + log_std + 0.5 * ((y - mean) * torch.exp(-log_std)) ** 2

    n = 4000
    mc = monte_carlo_kl(mu_q, logs_q, teacher, nll, n_samples=n, generator=g)
    per_draw = mc["cross_entropy_elementwise"].mean(dim=(1, 2)) - mc["entropy"]
    stderr = per_draw.std() / math.sqrt(n)
    assert abs(mc["kl"].item() - closed.item()) < 3 * stderr.item(), (mc["kl"], closed, stderr)
    assert stderr < 0.01 * closed.abs()


def test_kl_pq_swaps_roles_and_regulariser_is_symmetric():
    g = torch.Generator().manual_seed(1)
    mu_q, logs_q = torch.randn(2, 1, 9, generator=g), torch.randn(2, 1, 9, generator=g)
    teacher = torch.randn(2, 2, 10, generator=g)
    qp = gaussian_kl_loss(mu_q, logs_q, teacher, kind="qp")
    pq = gaussian_kl_loss(mu_q, logs_q, teacher, kind="pq")
    torch.testing.assert_close(qp["kl_reg"], pq["kl_reg"])
    lq, lp = logs_q.clamp(min=-6), teacher[:, 1:, :-1].clamp(min=-6)
    mq, mp = mu_q, teacher[:, :1, :-1]
    manual_pq = (lq - lp) + 0.5 * ((torch.exp(2 * lp) + (mq - mp) ** 2) * torch.exp(-2 * lq) - 1)
    torch.testing.assert_close(pq["kl"], manual_pq.mean())
    with pytest.raises(ValueError, match="teacher_out"):
        gaussian_kl_loss(mu_q, logs_q, teacher[:, :1])


def test_stft_magnitude_matches_numpy_rectangular_window():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3000, generator=g, dtype=torch.float64)
    n_fft, hop = 512, 128
    mag = stft_magnitude(x, n_fft, hop)
    padded = np.pad(x.numpy(), ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    frames = 1 + (padded.shape[1] - n_fft) // hop
    ref = np.stack(
        [np.abs(np.fft.rfft(padded[:, i * hop : i * hop + n_fft], axis=-1)) for i in range(frames)], -1
    )
    np.testing.assert_allclose(mag.numpy(), np.sqrt(ref**2 + 1e-10), rtol=1e-9, atol=1e-9)
    loss = frame_loss(x, x.flip(-1), n_fft, hop)
    assert loss > 0 and frame_loss(x, x, n_fft, hop) == 0
    with pytest.raises(ValueError, match="too short"):
        stft_magnitude(torch.zeros(1, 100), 1024, 256)


def test_multi_resolution_stft_loss():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4096, generator=g)
    mr = MultiResolutionSTFTLoss()
    sc, mag = mr(x, x)
    assert sc.item() == 0 and mag.item() == 0
    y = x + 0.1 * torch.randn(2, 4096, generator=g)
    sc, mag = mr(y.requires_grad_(), x)
    assert 0 < sc.item() < 1 and mag.item() > 0
    (sc + mag).backward()
    assert torch.isfinite(y.grad).all()
    with pytest.raises(ValueError):
        MultiResolutionSTFTLoss(resolutions=((512, 0, 240),))
