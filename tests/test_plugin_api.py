"""The plugin API as a plugin author meets it: typed hooks, and a clear message for each usual mistake.

Each mistake was found by writing a small plugin from ``docs/guides/plugins.md`` alone: a misspelled hook,
a hook without the marker, a card hook that registers nothing, a plugin that contributes nothing, a name no
card can use, a subclass registered under a new name, a plugin that fails (one warning line, and
``zoo.load`` naming it), a stale sha256 pin. The installed-package versions of the last two are in
``tests/test_plugin_install.py``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
import warnings
from pathlib import Path

import pytest
import torch

import zoo
from zoo import hookimpl
from zoo.core.config import VocoderConfig
from zoo.core.mel import MelConfig
from zoo.core.vocoder import Vocoder
from zoo.hub.sources import ChecksumError, SourceUnavailable, resolve_card, sha256_file
from zoo.registry import hookspecs
from zoo.registry import plugins as registry
from zoo.registry.cards import Source
from zoo.registry.hookspecs import Command
from zoo.registry.plugins import PluginWarning, Registry, RegistryError

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class HumConfig(VocoderConfig):
    mel: MelConfig = dataclasses.field(default_factory=lambda: MelConfig.preset("hifigan"))
    freq: float = 220.0


class Hum(Vocoder[HumConfig]):
    """A sine at ``freq`` Hz (enough of a vocoder for the registry)."""

    def synthesize(self, mel, *, generator=None, **sampling):
        t = torch.arange(mel.shape[-1] * self.hop_length, dtype=mel.dtype) / self.sample_rate
        return torch.sin(2 * torch.pi * self.config.freq * t).expand(mel.shape[0], -1).clone()


def _registry(*plugins: tuple[str, object]) -> tuple[Registry, list[str]]:
    """A registry with the built-in plugins and ``plugins``, and the plugin warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry(extra_plugins=list(plugins))
    return reg, [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def _errors(reg: Registry, plugin: str) -> list[str]:
    return [f.error for f in reg.failures if f.plugin == plugin]


# ---------------------------------------------------------------------- hook mistakes
def test_misspelled_hook_is_named_with_the_right_one():
    plugin = types.SimpleNamespace(zoo_register_architecture=hookimpl(lambda register: register("hum", Hum)))
    reg, warned = _registry(("hum", plugin))
    assert "hum" not in reg.architectures
    expected = "hook 'zoo_register_architecture' is not a zoo hook, so it never runs; did you mean " \
               "'zoo_register_architectures'?"
    assert any(expected in e for e in _errors(reg, "hum"))
    assert any(expected in w for w in warned)
    rows = {r["plugin"]: r for r in registry.plugin_report(reg)}
    assert rows["hum"]["failures"] and not rows["griffinlim"]["failures"]  # `zoo list -v` says FAILED, not ok


def test_hook_without_the_marker_is_named():
    plugin = types.SimpleNamespace(zoo_register_architectures=lambda register: register("hum", Hum))
    reg, warned = _registry(("hum", plugin))
    assert any("function 'zoo_register_architectures' is not marked with @zoo.hookimpl" in e
               for e in _errors(reg, "hum"))
    assert warned


def test_card_hook_that_registers_nothing_is_named():
    """A card hook whose glob finds no file (the card was left out of package-data) ran but did nothing."""
    plugin = types.SimpleNamespace(
        zoo_register_architectures=hookimpl(lambda register: register("hum", Hum)),
        zoo_register_model_cards=hookimpl(lambda register: [register(p) for p in Path("/nonexistent").glob("*")]),
    )
    reg, warned = _registry(("hum", plugin))
    assert "hum" in reg.architectures
    assert _errors(reg, "hum") == ["hook 'zoo_register_model_cards' ran but never called register(), so it "
                                   "contributed nothing"]
    assert len([w for w in warned if "zoo_register_model_cards" in w]) == 1


def test_plugin_that_contributes_nothing_is_reported():
    reg, warned = _registry(("empty", types.SimpleNamespace(helper=lambda: None)))
    (error,) = _errors(reg, "empty")
    assert error.startswith("plugin contributes nothing: it implements none of the zoo hooks")
    assert "zoo_register_architectures" in error and "@zoo.hookimpl" in error


def test_builtin_plugins_have_no_problems():
    reg, warned = _registry()
    assert not reg.failures and not warned


# ---------------------------------------------------------------------- names and classes
@pytest.mark.parametrize("bad", ["Bad Name", "hum.v2", "Hum", ""])
def test_architecture_name_must_follow_the_naming_rule(bad):
    plugin = types.SimpleNamespace(zoo_register_architectures=hookimpl(lambda register: register(bad, Hum)))
    reg, warned = _registry(("hum", plugin))
    assert bad not in reg.architectures
    (error,) = _errors(reg, "hum")
    assert error.startswith(f"architecture name {bad!r} is refused: use {hookspecs.NAME_RULE}")
    if bad == "Bad Name":
        assert "e.g. 'bad_name'" in error


def test_subclass_registered_under_a_new_name_gets_that_name():
    class HumOne(Hum):
        pass

    class HumTwo(HumOne):
        pass

    def archs(register):
        register("humone", HumOne)
        register("humtwo", HumTwo)

    reg, _ = _registry(("hum", types.SimpleNamespace(zoo_register_architectures=hookimpl(archs))))
    assert not _errors(reg, "hum")
    assert reg.architectures["humtwo"].cls is HumTwo
    assert HumTwo.architecture == "humtwo" and HumOne.architecture == "humone"
    # Rebuilding the registry (zoo.registry.plugins.get_registry(reload=True)) keeps both.
    reg, _ = _registry(("hum", types.SimpleNamespace(zoo_register_architectures=hookimpl(archs))))
    assert not _errors(reg, "hum") and set(reg.architectures) >= {"humone", "humtwo"}


def test_a_class_declaring_another_architecture_is_explained():
    class Declared(Hum):
        architecture = "declared"

    plugin = types.SimpleNamespace(zoo_register_architectures=hookimpl(lambda register: register("other", Declared)))
    reg, _ = _registry(("hum", plugin))
    (error,) = _errors(reg, "hum")
    assert "Declared.architecture is 'declared'" in error and "register a subclass under the other name" in error


def test_not_a_vocoder_is_refused_and_the_rest_registers():
    def archs(register):
        register("notavocoder", dict)
        register("hum", Hum)

    reg, _ = _registry(("hum", types.SimpleNamespace(zoo_register_architectures=hookimpl(archs))))
    assert "hum" in reg.architectures and "notavocoder" not in reg.architectures
    assert any("must be a zoo.Vocoder subclass" in e for e in _errors(reg, "hum"))


# ---------------------------------------------------------------------- a failed plugin
def test_failed_plugin_warns_once_from_the_callers_line_and_load_names_it(monkeypatch):
    def boom(register):
        raise RuntimeError("missing native library")

    plugin = types.SimpleNamespace(zoo_register_architectures=hookimpl(boom))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry(extra_plugins=[("hum", plugin)])
    (w,) = [w for w in caught if issubclass(w.category, PluginWarning)]
    assert str(w.message) == ("zoo plugin 'hum' failed to run zoo_register_architectures: RuntimeError: missing "
                              "native library (details: `zoo list -v`)")
    assert w.filename == __file__  # the caller's line, never a line of the zoo's own source
    monkeypatch.setattr(registry, "_registry", reg)
    with pytest.raises(RegistryError, match=r"^model 'hum' is not available: zoo plugin 'hum' \(\(registered in "
                                            r"code\)\), which would provide it, has a problem: RuntimeError: "
                                            r"missing native library \(see `zoo list -v`\)$"):
        zoo.load("hum")
    with pytest.raises(RegistryError, match="zoo plugin 'hum'.*missing native library"):
        zoo.create("hum.demo")
    # A name no failed plugin is named like still lists the failed plugins as a possible cause.
    with pytest.raises(RegistryError, match=r"unknown model 'nosuch' .*1 plugin\(s\) with problems may provide "
                                            r"it: 'hum' \(RuntimeError: missing native library\)"):
        zoo.load("nosuch")


def test_card_whose_architecture_hook_failed_names_the_hook(monkeypatch):
    card = dataclasses.replace(zoo.card("griffinlim"), name="hum.demo", architecture="hum", default=True,
                               origin="hum.demo.md")
    plugin = types.SimpleNamespace(zoo_register_architecture=hookimpl(lambda register: register("hum", Hum)),
                                   zoo_register_model_cards=hookimpl(lambda register: register(card)))
    reg, _ = _registry(("hum", plugin))
    with pytest.raises(RegistryError, match=r"model 'hum.demo' needs architecture 'hum', which no plugin provides; "
                                            r"its plugin 'hum' reported: hook 'zoo_register_architecture' is not"):
        reg.card("hum.demo")


# ---------------------------------------------------------------------- a stale sha256 pin
def test_wrong_sha256_names_the_source_once_and_suggests_a_stale_pin(tmp_path):
    weights = tmp_path / "hum.safetensors"
    weights.write_bytes(b"regenerated weights")
    source = Source(kind="path", path=str(weights), sha256="0" * 64)
    card = dataclasses.replace(zoo.card("griffinlim"), name="griffinlim.stale", sources=[source])
    with pytest.raises(SourceUnavailable) as err:
        resolve_card(card)
    message = str(err.value)
    assert message.count(source.describe()) == 1, message
    assert f"the card pins {'0' * 64} but the file ({weights}) has {sha256_file(weights)}" in message
    assert "If these weights were regenerated, the card's sha256 is stale: pin the new one" in message
    with pytest.raises(ChecksumError, match="stale"):
        zoo.hub.sources.fetch_source(source)


# ---------------------------------------------------------------------- commands
def _hello(register):
    def add_arguments(p):
        p.add_argument("--who", default="world")

    def run(args):
        print(f"hello {args.who}")
        return 0

    register(Command("hello", "say hello", add_arguments, run))
    register(Command("list", "a second list", add_arguments, run))


def test_plugin_command_runs_and_a_core_name_is_refused(monkeypatch, capsys):
    from zoo.cli.app import main

    reg, _ = _registry(("greeter", types.SimpleNamespace(zoo_register_commands=hookimpl(_hello))))
    monkeypatch.setattr(registry, "_registry", reg)
    assert main(["hello", "--who", "plugins"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "hello plugins"
    # The CLI prints a plugin problem as one line, without Python's warning header and source line.
    assert err == "zoo: warning: zoo plugin 'greeter': command 'list' is one of the zoo's own commands; dropped\n"
    assert any("command 'list'" in e for e in _errors(reg, "greeter"))


def test_distill_is_the_parallel_wavenet_plugins_command():
    from zoo.cli.app import build_parser

    reg = registry.get_registry()
    assert reg.commands["distill"].plugin == "parallel_wavenet"
    subs = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert "distill" in subs and "--teacher" in subs["distill"].format_help()


def test_bad_command_is_refused():
    plugin = types.SimpleNamespace(zoo_register_commands=hookimpl(lambda register: register("hello")))
    reg, _ = _registry(("greeter", plugin))
    assert not reg.commands.get("hello") and any("must be a zoo.registry.hookspecs.Command" in e
                                                  for e in _errors(reg, "greeter"))


# ---------------------------------------------------------------------- built-in plugins like any other
def test_builtin_plugins_register_their_own_cards():
    reg = registry.get_registry()
    shipped = sorted(p.name[: -len(".md")] for p in (REPO / "model_cards").glob("*.md") if p.name != "README.md")
    assert shipped and sorted(n for n in reg.cards if n in shipped) == shipped  # none left unregistered
    for name in shipped:
        arch = reg.cards[name].architecture
        assert reg.card_plugin[name] == reg.architectures[arch].plugin == arch, name
    assert set(reg.plugins) == {a.plugin for a in reg.architectures.values()}  # no privileged card plugin


def test_hooks_are_typed():
    hints = {name: typing.get_type_hints(getattr(hookspecs, name), vars(hookspecs) | {"Vocoder": Vocoder})
             for name in ("zoo_register_architectures", "zoo_register_model_cards", "zoo_register_converters",
                          "zoo_register_commands")}
    assert hints["zoo_register_architectures"]["register"] is hookspecs.ArchitectureRegister
    assert hints["zoo_register_model_cards"]["register"] is hookspecs.ModelCardRegister
    assert hints["zoo_register_converters"]["register"] is hookspecs.ConverterRegister
    assert hints["zoo_register_commands"]["register"] is hookspecs.CommandRegister


def test_config_class_comes_from_the_generic_parameter():
    assert Hum.config_class is HumConfig and isinstance(Hum().config, HumConfig)

    class LouderHum(Hum):
        pass

    assert LouderHum.config_class is HumConfig
    with pytest.raises(TypeError, match=r"is a Vocoder\[HumConfig\] but sets config_class = VocoderConfig: "
                                        r"declare the config type once"):
        class Confused(Vocoder[HumConfig]):
            config_class = VocoderConfig


def test_each_builtin_vocoder_declares_its_config_type_once():
    """``class X(Vocoder[XConfig])`` gives ``config_class``: no per-method casts of ``self.config``."""
    reg = registry.get_registry()
    for arch in reg.architectures.values():
        (base,) = [b for b in arch.cls.__orig_bases__ if typing.get_origin(b) is Vocoder]
        assert typing.get_args(base) == (arch.cls.config_class,), arch.name
    casts = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "plugins").rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"self\.config\b.*# type: ignore", line)]
    assert not casts, casts


# ---------------------------------------------------------------------- shared pieces for plugins
def test_upsampler_config_is_shared():
    from zoo_plugins.parallel_wavenet.model import ParallelWaveNetConfig
    from zoo_plugins.wavenet.model import WaveNetConfig

    from zoo.core.config import UPSAMPLER_FIELDS, UpsamplerConfig

    for cls in (WaveNetConfig, ParallelWaveNetConfig):
        assert issubclass(cls, UpsamplerConfig)
        assert [f.name for f in dataclasses.fields(cls)][0] == "mel"
        assert set(UPSAMPLER_FIELDS) <= {f.name for f in dataclasses.fields(cls)}
        with pytest.raises(ValueError, match=r"the product of upsample_scales \(4, 4\) is 16 but the mel hop_length"):
            cls(upsample_scales=(4, 4))
        with pytest.raises(ValueError, match="upsample_activation must be one of"):
            cls(upsample_activation="tanh")
    student = ParallelWaveNetConfig()
    assert (student.upsample, student.upsample_scales, student.upsample_activation) == \
        ("transposed2d", (16, 16), "leaky_relu")  # ClariNet's defaults, redeclared in the student
    teacher = WaveNetConfig.clarinet()
    assert ParallelWaveNetConfig(**teacher.upsampler_settings()).upsampler_settings() == teacher.upsampler_settings()


def test_converter_helper_reports_in_one_format(tmp_path):
    from zoo.hub.converting import key_mismatch, load_converted, map_checkpoint, read_checkpoint

    assert key_mismatch({"a": (1,), "b": (2,)}, {"a": (1,), "b": (2,)}) == ""
    assert key_mismatch({"a": (1,), "x": (3,)}, {"a": (2,), "b": (2,)}) == (
        "missing keys that the model needs (b); unexpected keys that have no place in the model (x); "
        "shape mismatches (a is (1,), expected (2,))")
    many = key_mismatch({}, {f"k{i}": (1,) for i in range(9)})
    assert many.endswith("k5 and 3 more)")
    torch.save({"state_dict": {"module.w": torch.zeros(2)}}, tmp_path / "ckpt.pth")
    assert set(read_checkpoint(tmp_path / "ckpt.pth", layout="toy", markers=["w"])) == {"w"}  # prefix stripped
    with pytest.raises(ValueError, match=r"ckpt.pth: not a toy checkpoint \(its state dict has none of v\)"):
        read_checkpoint(tmp_path / "ckpt.pth", layout="toy", markers=["v"])
    state = {"w": torch.zeros(2), "extra": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"^src does not fit the converter's layout: unexpected keys that have no "
                                         r"place in the converted model \(extra\)"):
        map_checkpoint(state, lambda s: {"out": s["w"]}, "src")
    with pytest.raises(ValueError, match=r"^src does not fit the converter's layout: missing keys that the model "
                                         r"needs \(nope\)$"):
        map_checkpoint(state, lambda s: {"out": s["nope"]}, "src")
    model = zoo.create("griffinlim")
    model.register_buffer("w", torch.zeros(2))
    with pytest.raises(ValueError, match=r"^src does not fit GriffinLim\(.*\): shape mismatches \(w is \(3,\), "
                                         r"expected \(2,\)\)$"):
        load_converted(model, {"w": torch.zeros(3)}, "src")


PARITY = REPO.parent / "shared" / "parity"


@pytest.mark.parametrize("converter,ckpt,drop,config", [
    ("wavenet", "wavenet/ckpt_mol.pth", "last_conv_layers.3.bias", None),
    ("flowavenet", "flowavenet/ckpt_ksw.pth", "blocks.0.flows.0.actnorm.scale", None),
    ("clarinet", "clarinet/ckpt_teacher.pth", "res_blocks.0.skip_conv.bias", {"num_layers": 3}),
])
def test_converters_share_the_missing_key_format(converter, ckpt, drop, config, tmp_path):
    """A checkpoint missing a weight is named the same way by every converter (before: a raw KeyError from the
    wavenet and flowavenet key maps)."""
    raw = torch.load(PARITY / ckpt, weights_only=True)
    state = {k.removeprefix("module."): v for k, v in raw.get("state_dict", raw).items()}
    assert drop in state
    torch.save({"state_dict": {k: v for k, v in state.items() if k != drop}}, tmp_path / "ckpt.pth")
    with pytest.raises(ValueError, match=rf"does not fit .*missing keys that the model needs \({re.escape(drop)}"):
        zoo.convert(converter, tmp_path / "ckpt.pth", config=config)


def test_optional_hooks_and_other_zoo_names_are_left_alone():
    """``optionalhook=True`` (pluggy's way to implement a hook some host may not have) and a helper whose name
    merely starts with ``zoo_`` are not mistakes."""
    plugin = types.SimpleNamespace(
        zoo_register_architectures=hookimpl(lambda register: register("hum", Hum)),
        zoo_register_vocoder_future=hookimpl(optionalhook=True)(lambda register: None),
        zoo_helper=lambda: None,
    )
    reg, warned = _registry(("hum", plugin))
    assert "hum" in reg.architectures and not _errors(reg, "hum") and not warned
