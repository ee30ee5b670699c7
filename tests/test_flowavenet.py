"""FloWaveNet: parity with ksw0306's code (data-driven), conversion, invertibility, log-determinant vs
brute-force Jacobian, ActNorm's data-dependent init, conformance and training."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.autograd.functional import jacobian
from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig
from zoo_plugins.flowavenet.convert import convert

import zoo
from tests.conftest import parity_dir
from zoo.cli.app import main as cli_main
from zoo.testing import check_vocoder, make_mel_dependent

P = parity_dir() / "flowavenet"


@pytest.fixture(scope="module")
def converted() -> FloWaveNet:
    return convert(P / "ckpt_ksw.pth").eval()


@pytest.mark.parity
def test_parity_flowavenet_config(converted):
    small = json.loads((P / "reference.json").read_text())["small_config"]
    c = converted.config
    assert (c.n_block, c.n_flow, c.n_layer, c.block_per_split, c.filter_size, c.mel.n_mels) == (
        small["n_block"], small["n_flow"], small["n_layer"], small["block_per_split"], small["filter_size"],
        small["cin_channel"])


@pytest.mark.parity
def test_parity_flowavenet_forward(converted):
    io = load_file(str(P / "io.safetensors"))
    with torch.no_grad():
        c_up = converted.upsample(io["c"])
        torch.testing.assert_close(c_up, io["c_up"], atol=1e-5, rtol=1e-5)
        out = converted.flow(io["x"], c_up)
    torch.testing.assert_close(out["z"], io["z_final"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["log_p"], io["log_p"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["logdet"], io["logdet"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(-(out["log_p"] + out["logdet"]), io["loss"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["block_logdet"], io["block_logdet_sum"], atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(out["block_log_p"], io["block_log_p_sum"], atol=1e-4, rtol=1e-6)


@pytest.mark.parity
def test_parity_flowavenet_reverse(converted):
    io = load_file(str(P / "io.safetensors"))
    with torch.no_grad():
        x = converted.reverse(io["reverse_z"], converted.upsample(io["c"]))
    torch.testing.assert_close(x, io["reverse_x"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
def test_parity_flowavenet_full_layout():
    """Every key of the published README config maps onto the zoo model with the right shape."""
    from zoo_plugins.flowavenet.convert import infer_config, map_keys

    from zoo.hub.weightnorm import fold_state_dict

    data = json.loads((P / "full_keys.json").read_text())
    records = next(v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict))
    state = fold_state_dict({r["name"]: torch.zeros(r["shape"]) for r in records})
    cfg = infer_config(state)
    assert (cfg.n_block, cfg.n_flow, cfg.n_layer, cfg.block_per_split, cfg.filter_size) == (8, 6, 2, 4, 256)
    own = {k: v.shape for k, v in FloWaveNet(cfg).state_dict().items()}
    mapped = map_keys(state, cfg)
    assert set(mapped) == set(own)
    assert all(tuple(mapped[k].shape) == tuple(own[k]) for k in own)


def test_convert_cli(tmp_path):
    io = load_file(str(P / "io.safetensors"))
    assert cli_main(["convert", "--from", "flowavenet", str(P / "ckpt_ksw.pth"), str(tmp_path / "m")]) == 0
    model = zoo.load(str(tmp_path / "m"))
    assert all(int(f.actnorm.initialized) == 1 for b in model.blocks for f in b.flows), "ActNorm loads initialised"
    model.train()  # even in training mode, a loaded ActNorm must not re-initialise from data
    with torch.no_grad():
        x = model.reverse(io["reverse_z"], model.upsample(io["c"]))
    torch.testing.assert_close(x, io["reverse_x"], atol=1e-5, rtol=1e-5)


def _randomised(cfg: FloWaveNetConfig) -> FloWaveNet:
    torch.manual_seed(0)
    model = FloWaveNet(cfg)
    for name, p in model.named_parameters():
        if "head.3" in name:
            p.data.normal_(0, 0.1)
    for b in model.blocks:
        for f in b.flows:
            f.actnorm.loc.data.normal_(0, 0.1)
            f.actnorm.scale.data.uniform_(0.7, 1.3)
            f.actnorm.initialized.fill_(1)
    return model.eval()


def test_round_trip_random_weights():
    model = _randomised(FloWaveNetConfig.small())
    x = 0.5 * torch.randn(2, 1, 512)
    c_up = model.upsample(torch.rand(2, 80, 2))
    with torch.no_grad():
        z = model.flow(x, c_up)["z"]
        zz = _full_z(model, x, c_up)  # the full-size noise the reverse pass reads
        back = model.reverse(zz, c_up)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)
    assert z.shape[1] == 8


def _full_z(model: FloWaveNet, x: torch.Tensor, c_up: torch.Tensor) -> torch.Tensor:
    """The standard-normal noise that maps to ``x``: the final z and the prior-whitened split halves,
    unsqueezed back to ``[B, 1, T]`` in the order :meth:`FloWaveNet.reverse` reads them."""
    from zoo.nn.flows import squeeze, unsqueeze

    cfg = model.config
    out, c = x, c_up
    eps = []
    for block in model.blocks:
        out, c = squeeze(out, 2), squeeze(c, 2)
        for flow in block.flows:
            out, c, _, _ = flow(out, c)
        if block.split:
            out, z = out.chunk(2, 1)
            mean, log_sd = block.prior(out, c).chunk(2, 1)
            eps.append((z - mean) / torch.exp(log_sd))
    y = out
    for i in reversed(range(cfg.n_block)):
        if cfg.is_split(i):
            y = torch.cat([y, eps.pop()], 1)
        y = unsqueeze(y, 2)
    return y


def test_whole_model_logdet_matches_jacobian():
    cfg = FloWaveNetConfig.small(n_block=2, n_flow=1, n_layer=1, block_per_split=1, filter_size=4,
                                 mel=zoo.MelConfig.preset("flowavenet").replace(n_mels=4, hop_length=4, n_fft=16,
                                                                                win_length=16, f_max=4000.0),
                                 upsample_scales=(2, 2))
    model = _randomised(cfg).double()
    c_up = model.upsample(torch.rand(1, 4, 2, dtype=torch.float64))
    x = 0.5 * torch.randn(1, 1, 8, dtype=torch.float64)

    def to_z(v):
        return _full_z(model, v.reshape(1, 1, 8), c_up).reshape(-1)

    jac = jacobian(to_z, x.reshape(-1))
    out = model.flow(x, c_up)
    analytic = out["logdet"] * 8
    # the prior whitening (z - mean) / exp(log_sd) adds -sum(log_sd) of the split halves
    from zoo.nn.flows import squeeze

    o, c = squeeze(x, 2), squeeze(c_up, 2)
    for flow in model.blocks[0].flows:
        o, c, _, _ = flow(o, c)
    keep, _ = o.chunk(2, 1)
    _, log_sd = model.blocks[0].prior(keep, c).chunk(2, 1)
    assert abs((analytic - log_sd.sum()).item() - torch.linalg.slogdet(jac)[1].item()) < 1e-8


def test_flowavenet_conforms(tmp_path):
    check_vocoder(make_mel_dependent(FloWaveNet(FloWaveNetConfig.small(filter_size=8))), tmp_path=tmp_path)


def test_tiny_flowavenet_trains_with_falling_loss(train_dir):
    from tests.helpers.training import short_training

    torch.manual_seed(0)
    model = FloWaveNet(FloWaveNetConfig.small(filter_size=16))
    first, last = short_training(model, train_dir, steps=60, segment=4096, batch=2, lr=1e-3)
    assert all(int(f.actnorm.initialized) == 1 for b in model.blocks for f in b.flows)
    assert last < first - 0.2, (first, last)



def test_chunked_synthesis_equals_one_shot():
    model = _randomised(FloWaveNetConfig.small(filter_size=8, chunk_frames=0))
    mel = torch.rand(1, 80, 60)
    one = model.vocode(mel, generator=torch.Generator().manual_seed(5))[0]
    chunked = FloWaveNet(model.config.replace(chunk_frames=8))
    chunked.load_state_dict(model.state_dict())
    chunked.eval()
    two = chunked.vocode(mel, generator=torch.Generator().manual_seed(5))[0]
    assert (one - two).abs().max().item() < 1e-4
