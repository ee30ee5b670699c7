"""WaveGlow: parity with NVIDIA's code (data-driven fixtures), both checkpoint formats, the flow's
invertibility and log-determinant, conformance, and a short training run with falling loss."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.autograd.functional import jacobian
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig, convert

import zoo
from tests.conftest import full_key_shapes, parity_dir
from zoo.cli.app import main as cli_main
from zoo.testing import check_vocoder, make_mel_dependent

P = parity_dir() / "waveglow"
CKPTS = ["ckpt_nvidia.pt", "ckpt_dle.pt"]


def _reference() -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((P / "reference.json").read_text()), load_file(str(P / "io.safetensors"))


@pytest.fixture(scope="module", params=CKPTS, ids=["parity-waveglow-nvidia", "parity-waveglow-dle"])
def converted(request) -> WaveGlow:
    return convert(P / request.param).eval()


@pytest.mark.parity
def test_parity_waveglow_config_from_reference(converted):
    ref, _ = _reference()
    small = ref["small_config"]
    c = converted.config
    assert (c.n_flows, c.n_group, c.n_early_every, c.n_early_size, c.mel.n_mels) == (
        small["n_flows"], small["n_group"], small["n_early_every"], small["n_early_size"], small["n_mel_channels"])
    wn = small["WN_config"]
    assert (c.n_layers, c.n_channels, c.kernel_size) == (wn["n_layers"], wn["n_channels"], wn["kernel_size"])


@pytest.mark.parity
def test_parity_waveglow_forward(converted):
    _, io = _reference()
    with torch.no_grad():
        z, log_s, log_det_w = converted.flow(io["audio"], io["mel"])
        torch.testing.assert_close(converted.upsample(io["mel"])[..., : io["audio"].shape[-1]], io["mel_upsampled"],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z, io["z"], atol=1e-5, rtol=1e-5)
        for i, ls in enumerate(log_s):
            torch.testing.assert_close(ls, io[f"log_s_{i}"], atol=1e-5, rtol=1e-5)
        per_flow = torch.stack([d.sum() for d in log_det_w])
        torch.testing.assert_close(per_flow, io["log_det_w"], atol=1e-4, rtol=1e-6)
        torch.testing.assert_close(sum(ls.sum() for ls in log_s), io["log_s_sum"], atol=1e-4, rtol=1e-6)
        loss = converted.nll(z, log_s, log_det_w, sigma=1.0)
        torch.testing.assert_close(loss, io["loss_sigma1"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
def test_parity_waveglow_recorded_noise_order(converted):
    """NVIDIA's infer() draws the last 4 channels first, then the early outputs of flow 4, then of flow 2;
    packed in z's channel layout [early k=2, early k=4, final] they are ``infer_noise``, and reversing
    them reproduces ``infer_audio``: our reverse pass puts each draw where the reference does."""
    _, io = _reference()
    z = torch.cat([io["infer_noise_early_2"], io["infer_noise_early_4"], io["infer_noise_initial"]], 1)
    assert torch.equal(z, io["infer_noise"])
    with torch.no_grad():
        audio = converted.reverse(0.6 * z, io["mel"])
        swapped = converted.reverse(0.6 * z[:, [2, 3, 0, 1, 4, 5, 6, 7]], io["mel"])
    torch.testing.assert_close(audio, io["infer_audio"], atol=1e-5, rtol=1e-5)
    assert (swapped - io["infer_audio"]).abs().max() > 1e-3, "the draw order must matter"


@pytest.mark.parity
def test_parity_waveglow_inference_with_recorded_noise(converted):
    _, io = _reference()
    sigma = 0.6
    with torch.no_grad():
        audio = converted.reverse(sigma * io["infer_noise"], io["mel"])
    torch.testing.assert_close(audio, io["infer_audio"], atol=1e-5, rtol=1e-5)


@pytest.mark.parity
def test_parity_waveglow_full_keys_layout():
    """The converter's key mapping covers the published 256-channel layout (shapes from full_keys.json)."""
    from zoo_plugins.waveglow.convert import infer_config, map_keys

    from zoo.hub.weightnorm import fold_state_dict

    for name in ("full_keys.json", "full_keys_legacy_cond_layers.json"):
        shapes = full_key_shapes(P / name)
        state = {k: (torch.ones(s) if k.endswith("weight_g") else torch.zeros(s)) for k, s in shapes.items()}
        folded = fold_state_dict(state)
        cfg = infer_config(folded, {})
        assert (cfg.n_flows, cfg.n_channels, cfg.n_layers, cfg.mel.n_mels) == (12, 256, 8, 80)
        own = WaveGlow(cfg).state_dict()
        mapped = map_keys(folded, cfg)
        assert set(mapped) == set(own), name
        assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own), name


def test_convert_cli_both_formats(tmp_path, capsys):
    _, io = _reference()
    for ckpt in CKPTS:
        out = tmp_path / ckpt.replace(".pt", "")
        assert cli_main(["convert", "--from", "waveglow", str(P / ckpt), str(out)]) == 0
        model = zoo.load(str(out))
        with torch.no_grad():
            audio = model.reverse(0.6 * io["infer_noise"], io["mel"])
        torch.testing.assert_close(audio, io["infer_audio"], atol=1e-5, rtol=1e-5)


def test_convert_refuses_code_in_pickles(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    out = tmp_path / "out"
    assert cli_main(["convert", "--from", "waveglow", str(bad), str(out)]) == 2
    err = capsys.readouterr().err
    assert "refusing to unpickle global" in err and "nothing was executed" in err
    assert not marker.exists(), "the pickle's code must never run"
    assert not out.exists(), "nothing may be written"


def test_convert_no_nvidia_code_imported(tmp_path):
    code = ("import sys; from zoo_plugins.waveglow import convert; convert(sys.argv[1]);"
            "print('glow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(P / "ckpt_nvidia.pt")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "False"


def _tiny() -> WaveGlowConfig:
    return WaveGlowConfig.small(n_channels=8, n_layers=2, n_flows=4)


def test_waveglow_conforms(tmp_path):
    check_vocoder(make_mel_dependent(WaveGlow(_tiny())), tmp_path=tmp_path)


def _randomise(model: WaveGlow) -> WaveGlow:
    torch.manual_seed(3)
    for name, p in model.named_parameters():
        if "head" in name:  # the zero-initialised end layers: give the couplings something to do
            p.data.normal_(0, 0.05)
    return model


def test_round_trip_random_weights():
    model = _randomise(WaveGlow(_tiny())).eval()
    mel = torch.randn(2, 80, 5)
    audio = 0.3 * torch.randn(2, 5 * 256)
    with torch.no_grad():
        z, _, _ = model.flow(audio, mel)
        back = model.reverse(z, mel)
    torch.testing.assert_close(back, audio, atol=1e-4, rtol=0)


def test_whole_flow_logdet_matches_jacobian():
    cfg = WaveGlowConfig.small(n_channels=4, n_layers=1, n_flows=2, n_early_every=1, n_group=4,
                               mel=zoo.MelConfig.preset("tacotron2").replace(hop_length=8, n_fft=32, n_mels=4,
                                                                             f_max=4000.0))
    model = _randomise(WaveGlow(cfg)).double().eval()
    mel = torch.randn(1, 4, 1, dtype=torch.float64)
    audio = 0.3 * torch.randn(1, 8, dtype=torch.float64)
    _, log_s, log_det_w = model.flow(audio, mel)
    analytic = sum(ls.sum() for ls in log_s) + sum(d.sum() for d in log_det_w)
    jac = jacobian(lambda a: model.flow(a.reshape(1, -1), mel)[0].reshape(-1), audio.reshape(-1))
    assert abs(analytic.item() - torch.linalg.slogdet(jac)[1].item()) < 1e-8


def test_tiny_waveglow_trains_with_falling_loss(train_dir):
    """200 Adam steps on real speech (silence-trimmed segments): the NLL falls by more than 0.3 nats/sample."""
    from tests.helpers.training import short_training

    torch.manual_seed(0)
    model = WaveGlow(WaveGlowConfig.small(n_channels=16, n_layers=2, n_flows=4))
    first, last = short_training(model, train_dir, steps=200, segment=4096, batch=4, lr=1e-3)
    assert last < first - 0.3, (first, last)



def test_chunked_synthesis_equals_one_shot():
    model = _randomise(WaveGlow(_tiny().replace(chunk_frames=0))).eval()
    mel = torch.randn(2, 80, 70)
    lengths = [70, 53]
    one = model.vocode(mel, lengths, generator=torch.Generator().manual_seed(5))[0]
    for chunk_frames in (16, 1):  # a window far narrower than a coupling's receptive field included
        chunked = WaveGlow(model.config.replace(chunk_frames=chunk_frames))
        chunked.load_state_dict(model.state_dict())
        chunked.eval().prepare_for_inference()
        two = chunked.vocode(mel, lengths, generator=torch.Generator().manual_seed(5))[0]
        assert (one - two).abs().max().item() < 1e-4
    assert chunked.context_frames() < 70 // 2
