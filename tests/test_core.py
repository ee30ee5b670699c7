"""The Vocoder contract, the registry and the config round trip, on a toy architecture and Griffin-Lim."""

from __future__ import annotations

import dataclasses
import types
import warnings

import pytest
import torch
from torch import nn

import zoo
from zoo import hookimpl
from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.registry import plugins as registry
from zoo.registry.plugins import PluginWarning, Registry, RegistryError
from zoo.testing import check_vocoder


def _toy_mel() -> MelConfig:
    return MelConfig.from_dict({**MelConfig.preset("hifigan").to_dict(), "n_mels": 8, "n_fft": 64,
                                "win_length": 64, "hop_length": 16, "sample_rate": 8000, "f_max": 4000.0})


@dataclasses.dataclass
class ToyConfig(VocoderConfig):
    mel: MelConfig = dataclasses.field(default_factory=_toy_mel)
    channels: int = 4
    kernel_sizes: tuple[int, ...] = (3, 3)


class Toy(Vocoder):
    """Non-causal convs over the frames, then a linear map to hop samples per frame."""

    config_class = ToyConfig

    def __init__(self, config: ToyConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        n = c.mel.n_mels
        self.convs = nn.ModuleList(nn.Conv1d(n if i == 0 else c.channels, c.channels, k, padding=k // 2)
                                   for i, k in enumerate(c.kernel_sizes))
        self.out = nn.Conv1d(c.channels, c.mel.hop_length, 1)

    def synthesize(self, mel, *, generator=None, **sampling):
        h = mel
        for conv in self.convs:
            h = torch.tanh(conv(h))
        return self.out(h).transpose(1, 2).reshape(mel.shape[0], -1)


toy_plugin = types.SimpleNamespace(
    zoo_register_architectures=hookimpl(lambda register: register("toy", Toy)),
)


@pytest.fixture()
def toy_registry(monkeypatch):
    reg = Registry(extra_plugins=[("toy-plugin", toy_plugin)])
    monkeypatch.setattr(registry, "_registry", reg)
    return reg


def test_config_json_roundtrip():
    cfg = ToyConfig(channels=5, kernel_sizes=(5, 1))
    again = ToyConfig.from_json(cfg.to_json())
    assert again == cfg and isinstance(again.kernel_sizes, tuple) and isinstance(again.mel, MelConfig)
    with pytest.raises(ValueError, match="unknown config keys"):
        ToyConfig.from_dict({"channels": 3, "chanels": 4})


def test_toy_conforms(toy_registry, tmp_path):
    check_vocoder("toy", tmp_path=tmp_path)


class _InPlaceToy(Toy):
    def vocode(self, mel, lengths=None, **kwargs):  # a plugin normalising its input in place
        return super().vocode(mel.mul_(0.5), lengths, **kwargs)


class _LeakyToy(Toy):
    def synthesize(self, mel, *, generator=None, **sampling):
        return super().synthesize(mel - mel.mean(), generator=generator)  # one mean over the whole batch


class _GlobalRngToy(Toy):
    deterministic = False

    def synthesize(self, mel, *, generator=None, **sampling):
        out = super().synthesize(mel, generator=generator)
        return out + 0.1 * torch.randn(out.shape)  # ignores ``generator``


@pytest.mark.parametrize("cls,message", [
    (_InPlaceToy, "in place"),
    (_LeakyToy, "must not influence each other"),
    (_GlobalRngToy, "same generator seed"),
])
def test_conformance_kit_catches_broken_vocoders(cls, message, tmp_path):
    """Each check of :func:`zoo.testing.check_vocoder` fails, with its message, on a vocoder breaking it."""
    with pytest.raises(AssertionError, match=message):
        check_vocoder(cls, tmp_path=tmp_path)


def test_griffinlim_conforms(tmp_path):
    check_vocoder("griffinlim", tmp_path=tmp_path, batch_atol=1e-3)


def test_vocode_lengths_and_padding(toy_registry):
    torch.manual_seed(0)
    voc = Toy().eval()
    mel = torch.randn(3, 8, 10)
    audio, lengths = voc.vocode(mel, lengths=[10, 3, 7])
    assert audio.shape == (3, 160) and lengths.tolist() == [160, 48, 112]
    assert torch.all(audio[1, 48:] == 0) and torch.all(audio[2, 112:] == 0)
    alone = voc.vocode(mel[1, :, :3])[0]
    torch.testing.assert_close(audio[1, :48], alone)
    assert not audio.requires_grad and audio.is_inference()


def test_vocode_unpadded_batch_returns_synthesize_output(toy_registry, monkeypatch):
    """Without padding, vocode hands over synthesize's audio: no second utterance-sized buffer (bounded-memory
    synthesis of long inputs counts on it). A padded batch is still assembled and zero-filled."""
    voc = Toy().eval()
    made = []
    real = voc.synthesize
    monkeypatch.setattr(voc, "synthesize", lambda mel, **kw: made.append(real(mel, **kw)) or made[-1])
    mel = torch.randn(2, 8, 6)
    audio, _ = voc.vocode(mel)
    assert audio.data_ptr() == made[-1].data_ptr() and audio.is_contiguous()
    audio, _ = voc.vocode(mel, [6, 6])
    assert audio.data_ptr() == made[-1].data_ptr()
    audio, _ = voc.vocode(mel, [6, 2])
    assert audio.data_ptr() != made[-1].data_ptr() and torch.all(audio[1, 32:] == 0)
    # synthesize returning a view of its input (hop = n_mels: the mel's own values): vocode copies it, so
    # the audio handed back never aliases the caller's mel
    viewer = Toy(ToyConfig(mel=MelConfig.from_dict({**_toy_mel().to_dict(), "hop_length": 8}))).eval()
    monkeypatch.setattr(viewer, "synthesize", lambda mel, **kw: mel.reshape(mel.shape[0], -1))
    audio, _ = viewer.vocode(mel)
    assert torch.equal(audio, mel.reshape(2, -1))
    assert audio.untyped_storage().data_ptr() != mel.untyped_storage().data_ptr()
    monkeypatch.setattr(voc, "synthesize", lambda mel, **kw: torch.zeros(1, 5))
    with pytest.raises(RuntimeError, match=r"returned shape \(1, 5\), expected \(2, 96\)"):
        voc.vocode(mel)


def test_vocode_moves_input_to_model_dtype(toy_registry):
    voc = Toy().eval().to(torch.float64)
    out = voc(torch.randn(1, 8, 4, dtype=torch.float32))
    assert out.dtype == torch.float64


@pytest.mark.parametrize(
    ("mel", "match"),
    [
        (torch.zeros(8), "n_mels"),
        (torch.zeros(1, 9, 4), "n_mels=8"),
        (torch.zeros(1, 4, 8), "transpose"),
        (torch.zeros(1, 8, 0), "empty"),
        (torch.full((1, 8, 3), float("nan")), "NaN"),
        (torch.zeros(1, 8, 3, dtype=torch.long), "floating"),
    ],
    ids=["rank", "n_mels", "transposed", "empty", "nan", "dtype"],
)
def test_bad_mel_errors(mel, match):
    with pytest.raises(ValueError, match=match):
        Toy()(mel)


def test_wrong_sample_rate_and_resample():
    voc = Toy()
    with pytest.raises(ValueError, match="8000 Hz"):
        voc.mel(torch.zeros(16000), sample_rate=16000)
    mel = voc.mel(torch.zeros(16000), sample_rate=16000, resample=True)
    assert mel.shape[0] == 8 and mel.shape[1] == voc.mel_config.num_frames(8000)


def test_save_load_roundtrip_and_metadata(toy_registry, tmp_path):
    from safetensors import safe_open

    voc = Toy(ToyConfig(channels=3))
    folder = voc.save_pretrained(tmp_path / "m")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == "toy" and '"n_mels": 8' in meta["mel_config"]
    loaded = zoo.load(str(folder))
    assert loaded.config == voc.config and not loaded.training
    for (k, a), (k2, b) in zip(voc.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)


def test_load_refuses_mismatched_weights(toy_registry, tmp_path):
    Toy(ToyConfig(channels=3)).save_pretrained(tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json").read_text().replace('"channels": 3', '"channels": 4')
    (tmp_path / "m" / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="shape mismatches"):
        zoo.load(str(tmp_path / "m"))


def test_registry_lists_builtins():
    assert "griffinlim" in zoo.list_architectures()
    assert "griffinlim.hifigan" in zoo.list_models()
    assert zoo.list_models("griffin*") == ["griffinlim.hifigan"]
    info = zoo.info("griffinlim")
    assert info["name"] == "griffinlim.hifigan" and info["mel"]["n_mels"] == 80


def test_load_bare_architecture_gives_default_card():
    voc = zoo.load("griffinlim")
    assert voc.architecture == "griffinlim" and voc.config.n_iter == 32


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError, match="did you mean 'griffinlim'"):
        zoo.load("grifinlim")


def test_name_clashes_drop_the_later_registration_and_report_it():
    """Two plugins claiming one architecture, a plugin card named like a built-in one, and a second default
    card of an architecture: each is reported against the later plugin, the earlier one stays, nothing else
    breaks."""
    class OtherToy(Toy):
        pass

    builtin = zoo.card("hifigan.universal")
    mine = dataclasses.replace(builtin, origin="<test>")  # the same name as a built-in card
    second_default = dataclasses.replace(zoo.card("hifigan.ljspeech"), name="hifigan.mine", default=True)
    toy_card = dataclasses.replace(zoo.card("griffinlim"), name="toy.demo", architecture="toy", default=False)

    def cards(register):
        register(mine)
        register(second_default)
        register(toy_card)

    other = types.SimpleNamespace(zoo_register_architectures=hookimpl(lambda register: register("toy", OtherToy)),
                                  zoo_register_model_cards=hookimpl(cards))
    with pytest.warns(PluginWarning) as caught:
        reg = Registry(extra_plugins=[("toy-plugin", toy_plugin), ("other-plugin", other)])
    messages = [str(w.message) for w in caught]
    assert any("architecture 'toy' is registered by two plugins: 'toy-plugin' and 'other-plugin'" in m
               for m in messages)
    assert reg.architectures["toy"].cls is Toy
    assert reg.cards["hifigan.universal"].origin == builtin.origin != "<test>"
    assert reg.card("hifigan").name == "hifigan.universal"
    assert "toy.demo" not in reg.cards  # made for the dropped architecture
    assert "hifigan.mine" in reg.cards and not reg.cards["hifigan.mine"].default
    errors = [f.error for f in reg.failures if f.plugin == "other-plugin"]
    assert len(errors) == 4 and any("second default" in e for e in errors)
    assert any("registered twice" in e for e in errors)
    rows = {r["plugin"]: r for r in registry.plugin_report(reg)}
    assert len(rows["other-plugin"]["failures"]) == 4 and not rows["toy-plugin"]["failures"]


def test_failing_plugin_is_reported_not_fatal():
    def boom(register):
        raise RuntimeError("cannot build")

    broken = types.SimpleNamespace(zoo_register_architectures=hookimpl(boom))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry(extra_plugins=[("broken", broken), ("toy-plugin", toy_plugin)])
    assert "toy" in reg.architectures and "griffinlim" in reg.architectures
    assert any(f.plugin == "broken" and "cannot build" in f.error for f in reg.failures)
    assert any(issubclass(w.category, PluginWarning) for w in caught)


def test_disable_plugins_env(monkeypatch):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "griffinlim")
    try:
        reg = registry.get_registry(reload=True)
        assert "griffinlim" not in reg.architectures
        assert reg.pm.is_blocked("griffinlim")
    finally:
        monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
        registry.get_registry(reload=True)


def test_create_random_model(toy_registry):
    voc = zoo.create("toy", channels=2)
    assert isinstance(voc, Toy) and voc.config.channels == 2


def test_create_takes_a_mel_preset_name_in_a_config_dict():
    voc = zoo.create("griffinlim", {"mel": "tacotron2"})
    assert voc.mel_config == MelConfig.preset("tacotron2") == zoo.create("griffinlim", mel="tacotron2").mel_config


def test_save_pretrained_float16_storage(tmp_path):
    """``dtype=torch.float16`` halves the file; loading casts back to the model's float32."""
    from safetensors import safe_open

    voc = zoo.create("hifigan", upsample_initial_channel=16)
    voc.save_pretrained(tmp_path / "f32")
    voc.save_pretrained(tmp_path / "f16", dtype=torch.float16)
    with safe_open(str(tmp_path / "f16" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    size = {d: (tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "f16")}
    half_payload = sum(v.numel() * 2 for v in voc.state_dict().values())
    assert abs((size["f32"] - size["f16"]) - half_payload) < 1024  # the tensors, not the header, shrank
    back = zoo.load(str(tmp_path / "f16"))
    for (k, a), b in zip(voc.state_dict().items(), back.state_dict().values(), strict=True):
        assert b.dtype == torch.float32, k
        torch.testing.assert_close(b, a.half().float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="floating-point"):
        voc.save_pretrained(tmp_path / "bad", dtype=torch.int8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_all_finite_finds_every_nan_and_inf_and_accepts_sums_that_overflow(dtype):
    from zoo.core.mel import all_finite

    big = torch.full((64,), torch.finfo(dtype).max / 2, dtype=dtype)
    assert all_finite(big)  # the sum overflows; every value is finite
    assert all_finite(torch.zeros(0, dtype=dtype))
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.randn(5, 7).to(dtype)
        x[3, 2] = bad
        assert not all_finite(x), bad
    pair = torch.tensor([float("inf"), float("-inf")], dtype=dtype)  # sums to NaN, still refused
    assert not all_finite(pair)


def test_write_safetensors_is_canonical_and_loads_back(tmp_path):
    from safetensors.torch import load_file, save_file

    from zoo.core.files import write_safetensors
    from zoo.hub.sources import canonical_safetensors

    tensors = {"b": torch.randn(3, 4), "a": torch.randn(5).to(torch.bfloat16), "h": torch.randn(7).half(),
               "view": torch.arange(12).view(3, 4)[1:].contiguous(), "scalar": torch.tensor(2.5),
               "empty": torch.zeros(0, 3), "flags": torch.tensor([True, False]), "i8": torch.arange(-3, 3).char()}
    meta = {"z": "1", "a": "two"}
    write_safetensors(tmp_path / "ours.safetensors", tensors, meta)
    save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata=meta)
    ours = (tmp_path / "ours.safetensors").read_bytes()
    assert canonical_safetensors(tmp_path / "theirs.safetensors").read_bytes() == ours
    back = load_file(str(tmp_path / "ours.safetensors"))
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], v) for k, v in tensors.items())
    with pytest.raises(ValueError, match="cannot store dtype torch.complex64"):
        write_safetensors(tmp_path / "bad.safetensors", {"c": torch.zeros(2, dtype=torch.complex64)})
    assert not (tmp_path / "bad.safetensors").exists()
