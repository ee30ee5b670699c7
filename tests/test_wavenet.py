"""WaveNet vocoder: parity with r9y9 (data-driven fixtures: mu-law, MoL, 2092a64 legacy MoL), incremental
sampling equal to the teacher-forced forward, conformance, conversion, receptive field, training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from zoo_plugins.wavenet import WaveNet, WaveNetConfig
from zoo_plugins.wavenet.convert import convert
from zoo_plugins.wavenet.incremental import IncrementalSampler

import zoo
from tests.conftest import full_key_shapes, parity_dir
from zoo.cli.app import main as cli_main
from zoo.core.noise import draw_seed, noise_blocks
from zoo.testing import check_vocoder, make_mel_dependent

P = parity_dir() / "wavenet"
# Listed here, not read from reference.json at import: a missing fixture folder fails the tests that need
# it (test_variants_match_the_fixtures among them) instead of breaking the collection of this file.
VARIANTS = ["legacy_mol", "mol", "mulaw"]


@pytest.mark.parity
def test_variants_match_the_fixtures():
    assert sorted(json.loads((P / "reference.json").read_text())["variants"]) == VARIANTS


def _variant(v: str) -> tuple[WaveNet, dict[str, torch.Tensor]]:
    ref = json.loads((P / "reference.json").read_text())["variants"][v]
    model = convert(P / f"ckpt_{v}.pth", {"stacks": ref["small_config"]["stacks"]}).eval()
    return model, load_file(str(P / ref["io_file"]))


def _inputs(model: WaveNet, io: dict[str, torch.Tensor]) -> torch.Tensor:
    if "x_mulaw" in io:
        return model.distribution.input_from_sample(io["x_mulaw"])
    return io["x"]


@pytest.mark.parity
@pytest.mark.parametrize("variant", VARIANTS, ids=[f"parity-wavenet-{v}" for v in VARIANTS])
def test_parity_wavenet_teacher_forced_and_incremental(variant):
    model, io = _variant(variant)
    with torch.no_grad():
        c_up = model.upsample(io["c"])
        torch.testing.assert_close(c_up, io["c_up"], atol=1e-5, rtol=1e-5)
        inputs = _inputs(model, io)
        y = model.teacher_forced(inputs, c_up)
        expected = io["logits"] if "logits" in io else io["y_hat"]
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
        _, incr = IncrementalSampler(model, inputs.shape[0]).run(c_up, inputs=inputs)
        expected_incr = io["incr_logits"] if "incr_logits" in io else io["incr_y_hat"]
        torch.testing.assert_close(incr, expected_incr, atol=1e-5, rtol=1e-5)
        if "x_mulaw" in io:
            ce = model.distribution.loss(y[:, :, :-1], io["x_mulaw"][:, 1:])
            torch.testing.assert_close(ce, io["ce"], atol=1e-5, rtol=1e-5)
        else:  # MoL NLL is ill-conditioned in float32 (see the fixture README): 5e-3 per element
            nll = model.distribution.loss(io["y_hat"][:, :, :-1], io["x"][:, :, 1:])
            torch.testing.assert_close(nll, io["mol_nll"], atol=5e-3, rtol=0)
            assert abs(nll.mean().item() - io["mol_loss"].item()) < 5e-5


@pytest.mark.parametrize("dist", ["mulaw", "mol", "gaussian"])
def test_incremental_equals_full_forward_random_weights(dist):
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig.small(dist, front_kernel_size=4 if dist == "gaussian" else 1)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    mel = torch.randn(2, 80, 3)
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        t = c_up.shape[-1]
        if dist == "mulaw":
            inputs = model.distribution.input_from_sample(torch.randint(0, 256, (2, t)))
        else:
            inputs = torch.rand(2, 1, t) * 2 - 1
        full = model.teacher_forced(inputs, c_up)
        _, incr = IncrementalSampler(model, 2).run(c_up, inputs=inputs)
    torch.testing.assert_close(incr, full, atol=1e-5, rtol=1e-5)


def _random_gaussian_wavenet() -> tuple[WaveNet, torch.Tensor]:
    """A small Gaussian WaveNet with weights large enough to make its samples depend on them, and a mel."""
    torch.manual_seed(1)
    model = WaveNet(WaveNetConfig.small("gaussian")).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    return model, torch.randn(1, 80, 2)


def test_sampling_feeds_back_its_own_samples():
    """Free-running samples, re-fed teacher-forced, reproduce the per-step outputs the sampler saw."""
    model, mel = _random_gaussian_wavenet()
    gen = torch.Generator().manual_seed(0)
    audio = model.vocode(mel, generator=gen)[0]
    again = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(audio, again)
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        prev = torch.cat([torch.zeros(1, 1, 1), audio[:, None, :-1]], -1)
        y = model.teacher_forced(prev, c_up)
    # the noise of each position, drawn by position from one seed taken from the generator (zoo.core.noise)
    noise = noise_blocks(draw_seed(torch.Generator().manual_seed(0)), 1, 1, 0, 512)[0, 0]
    expected = y[0, 0] + torch.exp(y[0, 1].clamp(min=-9.0)) * noise
    torch.testing.assert_close(audio[0], expected, atol=1e-4, rtol=1e-4)


def test_infer_temperature_is_the_default_temperature():
    model, mel = _random_gaussian_wavenet()
    explicit = model.vocode(mel, generator=torch.Generator().manual_seed(0), temperature=0.3)[0]
    cooled = WaveNet(model.config.replace(infer_temperature=0.3)).eval()
    cooled.load_state_dict(model.state_dict())
    assert torch.equal(cooled.vocode(mel, generator=torch.Generator().manual_seed(0))[0], explicit)
    assert not torch.equal(model.vocode(mel, generator=torch.Generator().manual_seed(0))[0], explicit)
    with pytest.raises(ValueError, match="infer_temperature"):
        WaveNetConfig.small("gaussian", infer_temperature=-1.0)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        model.vocode(mel, temperature=-0.5)


@pytest.mark.parametrize("dist", ["gaussian", "mulaw"])
def test_train_input_noise_perturbs_only_the_training_inputs(dist):
    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig.small(dist, train_input_noise=0.05))
    clean = WaveNet(model.config.replace(train_input_noise=0.0))
    clean.load_state_dict(model.state_dict())
    audio = 0.3 * torch.sin(torch.arange(2048) / 7.0)[None]
    mel = model.mel(audio)
    model.train(), clean.train()
    noisy_loss = model.loss(audio, mel)["loss"]
    assert not torch.equal(noisy_loss, clean.loss(audio, mel)["loss"])
    # Targets are clean: the same noise fed by hand to the clean model gives the same loss.
    torch.manual_seed(1)
    a = model.loss(audio, mel)["loss"]
    torch.manual_seed(1)
    noise = 0.05 * torch.randn_like(audio)
    if dist == "gaussian":
        target, inputs = audio, (audio + noise)[:, None]
    else:
        d = clean.distribution
        target = d.target_from_audio(audio)
        inputs = d.input_from_sample(d.target_from_audio((audio + noise).clamp(-1, 1))).to(audio.dtype)
    c_up = clean.upsample_mel(mel)[..., : audio.shape[-1]]
    expected = clean.distribution.loss(clean.teacher_forced(inputs, c_up)[..., :-1], target[..., 1:]).mean()
    torch.testing.assert_close(a, expected)
    model.eval(), clean.eval()  # validation and sampling see no noise
    assert torch.equal(model.loss(audio, mel)["loss"], clean.loss(audio, mel)["loss"])
    with pytest.raises(ValueError, match="train_input_noise"):
        WaveNetConfig.small(dist, train_input_noise=-0.1)


@pytest.mark.parametrize("dist", ["mulaw", "mol"])
def test_wavenet_conforms(dist, tmp_path):
    # Seed 2: with 4 skip channels, some random inits leave every ReLU of the head dead, and such a net
    # ignores its mel (the conformance kit checks that the output depends on it).
    torch.manual_seed(2)
    cfg = WaveNetConfig.small(dist, layers=2, stacks=1, residual_channels=4, gate_channels=8, skip_channels=4)
    model = WaveNet(cfg)
    if dist == "mulaw":
        # An untrained 4-channel net's logits move by ~0.005 between two mels, less than the gaps between the
        # Gumbel-perturbed top classes at almost every step, so two mels would sample the same classes:
        # a stronger conditioning path and head make the mel's effect visible to the kit.
        with torch.no_grad():
            model.stack.cond.weight.mul_(10.0)
            model.head2.weight.mul_(10.0)
    check_vocoder(make_mel_dependent(model), tmp_path=tmp_path)


def test_receptive_field_numbers():
    legacy = WaveNetConfig.r9y9_ljspeech_2092a64()
    model = WaveNet(legacy)
    # 24 layers in 4 cycles of dilations 1..32, kernel 3: 1 + 2 * 4 * 63 = 505 samples (r9y9's 22.9 ms).
    assert model.receptive_field == 505
    assert abs(model.receptive_field_ms - 22.9) < 0.05
    # The published checkpoint's size from full_keys.json, weight norm folded (weight_g + weight_v -> weight).
    shapes = full_key_shapes(P / "full_keys.json")
    published = sum(math.prod(s) for k, s in shapes.items() if not k.endswith("weight_g"))
    assert published == json.loads((P / "full_keys.json").read_text())["num_elements"] - sum(
        math.prod(s) for k, s in shapes.items() if k.endswith("weight_g"))
    assert model.num_parameters() == published


@pytest.mark.parity
@pytest.mark.parametrize("name", ["full_keys.json", "full_keys_head_mol.json", "full_keys_head_mulaw256.json",
                                  "full_keys_head_gaussian.json"])
def test_parity_wavenet_full_keys_layout(name):
    """Every published-size layout (the 2092a64 LJSpeech checkpoint and HEAD's MoL, mu-law and Gaussian
    recipes) maps onto a zoo WaveNet of the inferred config, key for key and shape for shape."""
    from zoo_plugins.wavenet.convert import infer_config, map_keys

    from zoo.hub.weightnorm import fold_state_dict

    ref = json.loads((P / name).read_text())["config"]
    shapes = full_key_shapes(P / name)
    state = fold_state_dict({k: (torch.ones(s) if k.endswith("weight_g") else torch.zeros(s))
                             for k, s in shapes.items()})
    cfg = infer_config(state, {"stacks": ref["stacks"]})
    assert (cfg.layers, cfg.stacks, cfg.residual_channels, cfg.gate_channels) == (
        ref["layers"], ref["stacks"], ref["residual_channels"], ref["gate_channels"])
    own = WaveNet(cfg).state_dict()
    mapped = map_keys(state, cfg)
    assert set(mapped) == set(own), name
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in own), name


def test_convert_cli_all_fixtures(tmp_path):
    for v in VARIANTS:
        ref = json.loads((P / "reference.json").read_text())["variants"][v]
        cfg = tmp_path / f"{v}.json"
        cfg.write_text(json.dumps({"stacks": ref["small_config"]["stacks"]}))
        out = tmp_path / v
        assert cli_main(["convert", "--from", "wavenet", str(P / f"ckpt_{v}.pth"), str(out), "--config", str(cfg)]) == 0
        model = zoo.load(str(out))
        io = load_file(str(P / ref["io_file"]))
        with torch.no_grad():
            y = model.teacher_forced(_inputs(model, io), model.upsample(io["c"]))
        torch.testing.assert_close(y, io["logits"] if "logits" in io else io["y_hat"], atol=1e-5, rtol=1e-5)


def test_tiny_wavenet_trains_with_falling_loss(train_dir):
    from tests.helpers.training import short_training

    torch.manual_seed(0)
    model = WaveNet(WaveNetConfig.small("gaussian", mel=zoo.MelConfig.preset("hifigan")))
    first, last = short_training(model, train_dir, steps=60, segment=2048, batch=4, lr=3e-3)
    assert last < first - 0.5, (first, last)  # Gaussian NLL in nats per sample
