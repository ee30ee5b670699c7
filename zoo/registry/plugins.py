"""The plugin registry: architectures, model cards and converters contributed by plugins.

Plugins are found through the entry-point group ``zoo`` (the built-in vocoders register the same way a
third-party package does). A plugin that fails to import or to register is reported, as a warning and in
``zoo list --verbose``, and does not break the others. So is a registration that clashes with an earlier
one (the same architecture, converter or model name; a second default model of an architecture): the
earlier one stays (the built-in plugins register first), the later one is dropped and reported.
``ZOO_DISABLE_PLUGINS=name,...`` blocks plugins.

Mistakes a plugin author makes are reported against the plugin, naming the hook: a hook implementation
whose name is no zoo hook (a misspelling; what pluggy's ``check_pending`` finds), a ``zoo_*`` function
without the ``@hookimpl`` marker, a hook that ran but registered nothing, a plugin that contributed nothing,
and a name that breaks :data:`zoo.registry.hookspecs.NAME_RULE`. Each problem is one warning line attributed to the
caller's code (the CLI prints it as ``zoo: warning: ...``); ``zoo.load`` of a model that a failed plugin
would have provided names that plugin.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pluggy
import torch

from zoo.core.vocoder import Vocoder
from zoo.kernels import native
from zoo.registry import hookspecs
from zoo.registry.cards import CardError, ModelCard, load_card, parse_card
from zoo.registry.hookspecs import NAME_PATTERN, NAME_RULE, Command

ENTRY_POINT_GROUP = "zoo"
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"


class RegistryError(ValueError):
    """A lookup or registration problem (unknown name, two plugins claiming one name)."""


class PluginWarning(UserWarning):
    """A plugin failed to load or register; the others still work."""


@dataclasses.dataclass
class Architecture:
    name: str
    cls: type[Vocoder]
    plugin: str


@dataclasses.dataclass
class Converter:
    name: str
    fn: Callable[..., Vocoder]
    description: str
    plugin: str


@dataclasses.dataclass
class PluginCommand:
    name: str
    command: Command
    plugin: str


@dataclasses.dataclass
class PluginFailure:
    plugin: str
    stage: str
    error: str
    detail: str = ""


_ZOO_DIR = str(Path(__file__).resolve().parent)
_PLUGGY_DIR = str(Path(pluggy.__file__).resolve().parent)
_HOOKS = ("zoo_register_architectures", "zoo_register_model_cards", "zoo_register_converters",
          "zoo_register_commands")
_HOOK_STAGES = {f"run {h}" for h in _HOOKS} | {"load", "hooks"}  # failures that can hide a plugin's models


def _warn(message: str) -> None:
    """One ``PluginWarning`` line, attributed to the first frame outside the zoo, pluggy and importlib (so that
    Python prints the caller's line under it, never a line of the zoo's own source)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith((_ZOO_DIR, _PLUGGY_DIR, "<frozen"))
        or "importlib" in frame.f_code.co_filename
    ):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, PluginWarning, stacklevel=level)


class Registry:
    """Everything the installed plugins registered. Build with :func:`get_registry`."""

    def __init__(
        self,
        entry_point_group: str = ENTRY_POINT_GROUP,
        disabled: set[str] | None = None,
        extra_plugins: Sequence[tuple[str, object]] = (),
    ) -> None:
        """Load the plugins of ``entry_point_group`` (and ``extra_plugins``, ``(name, module)`` pairs)."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled or ())
        self.architectures: dict[str, Architecture] = {}
        self.cards: dict[str, ModelCard] = {}
        self.card_plugin: dict[str, str] = {}
        self.converters: dict[str, Converter] = {}
        self.commands: dict[str, PluginCommand] = {}
        self.failures: list[PluginFailure] = []
        self.plugins: dict[str, str] = {}  # plugin name -> distribution (or "builtin")
        self.distributions: dict[str, str] = {}  # every entry point seen, loaded or not -> distribution
        self._registered: dict[tuple[str, str], int] = {}  # (plugin, hook) -> calls of register
        for name in self.disabled:
            self.pm.set_blocked(name)
        self._load_plugins(entry_point_group)
        for name, plugin in extra_plugins:
            if name not in self.disabled:
                self.pm.register(plugin, name=name)
                self.plugins[name] = self.distributions[name] = "(registered in code)"
        self._check_hooks()
        self._collect()
        self._check_contributions()

    # ------------------------------------------------------------------ loading
    def _fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        failure = PluginFailure(plugin, stage, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        self.failures.append(failure)
        _warn(f"zoo plugin {plugin!r} failed to {stage}: {failure.error} (details: `zoo list -v`)")

    def report(self, plugin: str, stage: str, message: str) -> None:
        """Report a problem of ``plugin`` (a rejected registration, a hook mistake); the plugin's other
        contributions stay."""
        self.failures.append(PluginFailure(plugin, stage, message))
        _warn(f"zoo plugin {plugin!r}: {message}")

    def _load_plugins(self, group: str) -> None:
        for ep in importlib.metadata.entry_points(group=group):
            if ep.name in self.disabled or self.pm.is_blocked(ep.name):
                continue
            if ep.name in self.plugins:
                other = self.plugins[ep.name]
                dist = ep.dist.name if ep.dist else "?"
                if other == dist:
                    continue  # the same distribution seen twice (e.g. editable + site-packages)
                clash = RegistryError(f"plugin name {ep.name!r} is used by both {other} and {dist}")
                self._fail(ep.name, "load", clash)
                continue
            self.distributions[ep.name] = ep.dist.name if ep.dist else "?"
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                self._fail(ep.name, "load", exc)
                continue
            self.plugins[ep.name] = self.distributions[ep.name]

    def _check_hooks(self) -> None:
        """Per plugin, what ``pm.check_pending()`` finds (a hook implementation that matches no hook: a
        misspelling; ``optionalhook=True`` ones excepted), and ``zoo_register*`` functions that lack the
        ``@hookimpl`` marker (pluggy ignores them)."""
        for plugin_name in list(self.plugins):
            plugin = self.pm.get_plugin(plugin_name)
            if plugin is None:
                continue
            implemented = set()
            for caller in self.pm.get_hookcallers(plugin) or []:
                implemented.add(caller.name)
                optional = all(i.optionalhook for i in caller.get_hookimpls() if i.plugin is plugin)
                if not caller.has_spec() and not optional:  # what check_pending() raises for
                    close = difflib.get_close_matches(caller.name, _HOOKS, n=1, cutoff=0.6)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    self.report(plugin_name, "hooks", f"hook {caller.name!r} is not a zoo hook, so it never runs; "
                                f"{hint}(zoo hooks: {', '.join(_HOOKS)})")
            for attr in dir(plugin):
                if attr.startswith("zoo_register") and attr not in implemented and callable(getattr(plugin, attr)):
                    self.report(plugin_name, "hooks", f"function {attr!r} is not marked with @zoo.hookimpl, so "
                                f"it never runs")

    def _call_each(self, hook_name: str, make_register: Callable[[str], Callable[..., None]]) -> None:
        hook = getattr(self.pm.hook, hook_name)
        # The built-in plugins first, so that a third-party name clash never displaces them.
        impls = sorted(hook.get_hookimpls(), key=lambda impl: self.plugins.get(impl.plugin_name) != "vocoder-zoo")
        for impl in impls:
            plugin = impl.plugin_name
            register = make_register(plugin)

            def counted(*args: Any, _register: Callable[..., None] = register, _key: tuple[str, str] = (plugin,
                        hook_name), **kwargs: Any) -> None:
                self._registered[_key] = self._registered.get(_key, 0) + 1
                _register(*args, **kwargs)

            try:
                impl.function(counted)
            except Exception as exc:  # noqa: BLE001
                self._fail(plugin, f"run {hook_name}", exc)
                continue
            if not self._registered.get((plugin, hook_name)):
                self.report(plugin, "hooks", f"hook {hook_name!r} ran but never called register(), so it "
                            f"contributed nothing")

    def _check_contributions(self) -> None:
        """A plugin that loaded but contributes nothing at all is reported (unless a problem already says why)."""
        for plugin in self.plugins:
            if self.pm.get_plugin(plugin) is None or any(f.plugin == plugin for f in self.failures):
                continue
            if not any(n for (p, _), n in self._registered.items() if p == plugin):
                self.report(plugin, "hooks", f"plugin contributes nothing: it implements none of the zoo hooks "
                            f"({', '.join(_HOOKS)}) with @zoo.hookimpl")

    def _bad_name(self, plugin: str, what: str, name: object) -> bool:
        """Report (and say True for) a ``name`` that breaks the naming rule."""
        if isinstance(name, str) and NAME_PATTERN.match(name):
            return False
        self.report(plugin, "register", f"{what} name {name!r} is refused: use {NAME_RULE}, e.g. "
                    f"{_suggest_name(name)!r}; dropped")
        return True

    def _collect(self) -> None:
        def arch_register(plugin: str) -> Callable[..., None]:
            def register(name: str, cls: type[Vocoder]) -> None:
                if self._bad_name(plugin, "architecture", name):
                    return
                if not (isinstance(cls, type) and issubclass(cls, Vocoder)):
                    self.report(plugin, "register", f"architecture {name!r} must be a zoo.Vocoder subclass, got "
                                f"{cls!r}; dropped")
                    return
                own = cls.__dict__.get("architecture")  # set on this class itself, not inherited
                if own and own != name:
                    self.report(plugin, "register",
                                f"architecture {name!r}: {cls.__name__}.architecture is {own!r} (a class has one "
                                f"architecture name; register a subclass under the other name, or drop the "
                                f"attribute: the registry sets it); dropped")
                    return
                if name in self.architectures:
                    other = self.architectures[name].plugin
                    clashed.add((plugin, name))
                    self.report(plugin, "register",
                                f"architecture {name!r} is registered by two plugins: {other!r} and {plugin!r} "
                                f"(kept {other!r}; uninstall one or block it with {DISABLE_ENV}={plugin})")
                    return
                cls.architecture = name
                self.architectures[name] = Architecture(name, cls, plugin)

            return register

        def conv_register(plugin: str) -> Callable[..., None]:
            def register(name: str, fn: Callable[..., Vocoder], description: str = "") -> None:
                if self._bad_name(plugin, "converter", name):
                    return
                if name in self.converters:
                    other = self.converters[name].plugin
                    self.report(plugin, "register", f"converter {name!r} is registered by two plugins: {other!r} "
                                f"and {plugin!r} (kept {other!r})")
                    return
                self.converters[name] = Converter(name, fn, description, plugin)

            return register

        def command_register(plugin: str) -> Callable[..., None]:
            def register(command: Command) -> None:
                if not isinstance(command, Command):
                    self.report(plugin, "register",
                                f"a command must be a zoo.registry.hookspecs.Command, got {command!r}; dropped")
                    return
                if self._bad_name(plugin, "command", command.name):
                    return
                if command.name in self.commands:
                    other = self.commands[command.name].plugin
                    self.report(plugin, "register", f"command {command.name!r} is registered by two plugins: "
                                f"{other!r} and {plugin!r} (kept {other!r})")
                    return
                self.commands[command.name] = PluginCommand(command.name, command, plugin)

            return register

        def card_register(plugin: str) -> Callable[..., None]:
            def register(card: str | Path | ModelCard, origin: str | None = None) -> None:
                try:
                    if isinstance(card, ModelCard):
                        parsed = card
                    elif isinstance(card, Path) or (isinstance(card, str) and not card.lstrip().startswith("---")):
                        parsed = load_card(card)
                    else:
                        parsed = parse_card(card, origin or f"<card from plugin {plugin}>")
                except (CardError, OSError) as exc:
                    self._invalid_card(plugin, str(exc))
                    return
                if parsed.name in self.cards:
                    other = self.card_plugin[parsed.name]
                    self.report(plugin, "register", f"model {parsed.name!r} is registered twice: by {other!r} "
                                f"({self.cards[parsed.name].origin}) and by {plugin!r} "
                                f"({parsed.origin}); kept {other!r}'s")
                    return
                if (plugin, parsed.architecture) in clashed:
                    self.report(plugin, "register", f"model {parsed.name!r} is for this plugin's architecture "
                                f"{parsed.architecture!r}, which another plugin registered "
                                f"first; dropped")
                    return
                if parsed.default:
                    first = next((c for c in self.cards.values()
                                  if c.default and c.architecture == parsed.architecture), None)
                    if first is not None:
                        self.report(plugin, "register",
                                    f"model {parsed.name!r} is a second default of architecture "
                                    f"{parsed.architecture!r} after {first.name!r}; it stays loadable by name, "
                                    f"{first.name!r} stays the default")
                        parsed = dataclasses.replace(parsed, default=False)
                self.cards[parsed.name] = parsed
                self.card_plugin[parsed.name] = plugin

            return register

        clashed: set[tuple[str, str]] = set()  # (plugin, architecture) registrations dropped as clashes
        self._call_each("zoo_register_architectures", arch_register)
        self._call_each("zoo_register_converters", conv_register)
        self._call_each("zoo_register_model_cards", card_register)
        self._call_each("zoo_register_commands", command_register)
        for name, card in list(self.cards.items()):
            if card.architecture not in self.architectures:
                self.failures.append(
                    PluginFailure(self.card_plugin[name], "register model card",
                                  f"{card.origin}: architecture {card.architecture!r} is not registered")
                )
            unknown = sorted({str(src.format) for src in card.sources
                              if src.format != "safetensors" and src.format not in self.converters})
            if unknown:
                message = (f"{card.origin}: field 'sources[].format': {', '.join(map(repr, unknown))} is neither "
                           f"'safetensors' nor a registered converter ({', '.join(sorted(self.converters))})")
                self._invalid_card(self.card_plugin[name], message)
                del self.cards[name], self.card_plugin[name]

    def _invalid_card(self, plugin: str, message: str) -> None:
        """Report a model card that does not validate; the caller leaves it unregistered."""
        self.failures.append(PluginFailure(plugin, "register model card", message))
        _warn(f"invalid model card from zoo plugin {plugin!r}: {message}")

    # ------------------------------------------------------------------ lookups
    def architecture(self, name: str) -> Architecture:
        try:
            return self.architectures[name]
        except KeyError:
            raise RegistryError(self._unknown("architecture", name, list(self.architectures))) from None

    def converter(self, name: str) -> Converter:
        try:
            return self.converters[name]
        except KeyError:
            raise RegistryError(self._unknown("converter", name, list(self.converters))) from None

    def card(self, name: str) -> ModelCard:
        """The card named ``name``; a bare architecture name gives that architecture's default card."""
        if name in self.cards:
            card = self.cards[name]
        elif name in self.architectures:
            cards = [c for c in self.cards.values() if c.architecture == name]
            defaults = [c for c in cards if c.default]
            if len(defaults) > 1:
                raise RegistryError(f"architecture {name!r} has several default cards: {[c.name for c in defaults]}")
            if defaults:
                card = defaults[0]
            elif len(cards) == 1:
                card = cards[0]
            elif cards:
                names = sorted(c.name for c in cards)
                raise RegistryError(f"{name!r} has several pretrained models and no default: {names}")
            else:
                raise RegistryError(
                    f"architecture {name!r} has no pretrained model yet; build one with zoo.create({name!r}) "
                    f"or convert a checkpoint with `zoo convert`"
                )
        else:
            raise RegistryError(self._unknown("model", name, list(self.cards) + list(self.architectures)))
        if card.architecture not in self.architectures:
            plugin = self.card_plugin.get(card.name, "?")
            problems = [f.error for f in self.failures if f.plugin == plugin and f.stage in _HOOK_STAGES]
            why = f"; its plugin {plugin!r} reported: {'; '.join(problems)}" if problems else ""
            raise RegistryError(
                f"model {card.name!r} needs architecture {card.architecture!r}, which no plugin provides{why}")
        return card

    def failed_plugins(self) -> dict[str, str]:
        """``{plugin: first error}`` for the plugins that failed to load or whose hooks failed or never ran:
        what may hide models and architectures."""
        out: dict[str, str] = {}
        for f in self.failures:
            if f.stage in _HOOK_STAGES:
                out.setdefault(f.plugin, f.error if f.stage != "load" else f"failed to load: {f.error}")
        return out

    def _unknown(self, what: str, name: str, known: list[str]) -> str:
        failed = self.failed_plugins()
        prefix = name.split(".", 1)[0].lower()
        suspects = [p for p in failed if _same_name(p, prefix) or _same_name(self.distributions.get(p, ""), prefix)]
        if suspects and what in ("model", "architecture"):
            p = suspects[0]
            dist = self.distributions.get(p, "?")
            return (f"{what} {name!r} is not available: zoo plugin {p!r} ({dist}), which would provide it, has a "
                    f"problem: {failed[p]} (see `zoo list -v`)")
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        note = ""
        if failed and what in ("model", "architecture"):
            note = (f"; {len(failed)} plugin(s) with problems may provide it: "
                    f"{', '.join(f'{p!r} ({e})' for p, e in failed.items())}")
        return f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'}){note}"


def _same_name(plugin: str, name: str) -> bool:
    """Whether a plugin or distribution name (``zoo-noise``, ``zoo_noise``, ``noise``) names ``name``."""
    norm = plugin.lower().replace("-", "_")
    return bool(name) and norm in (name, f"zoo_{name}", f"{name}_zoo")


def _suggest_name(name: object) -> str:
    """A name that follows the naming rule, close to ``name``."""
    return re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_") or "myvocoder"


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, built on first use (``reload=True`` rebuilds it)."""
    global _registry
    with _lock:
        if _registry is None or reload:
            disabled = {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}
            _registry = Registry(disabled=disabled)
        return _registry


def plugin_report(registry: Registry | None = None) -> list[dict[str, Any]]:
    """One row per plugin: name, distribution, what it registered, and failures."""
    reg = registry or get_registry()
    rows = []
    for plugin, dist in reg.plugins.items():
        rows.append({
            "plugin": plugin,
            "distribution": dist,
            "architectures": sorted(a.name for a in reg.architectures.values() if a.plugin == plugin),
            "models": sorted(n for n, p in reg.card_plugin.items() if p == plugin),
            "converters": sorted(c.name for c in reg.converters.values() if c.plugin == plugin),
            "commands": sorted(c.name for c in reg.commands.values() if c.plugin == plugin),
            "failures": [f.error for f in reg.failures if f.plugin == plugin],
        })
    for f in reg.failures:
        if f.plugin not in reg.plugins:
            rows.append({"plugin": f.plugin, "distribution": reg.distributions.get(f.plugin, "?"), "architectures": [],
                         "models": [], "converters": [], "commands": [], "failures": [f.error]})
    for name in sorted(reg.disabled):
        rows.append({"plugin": name, "distribution": "(disabled)", "architectures": [], "models": [],
                     "converters": [], "commands": [], "failures": []})
    return rows


def kernel_paths(registry: Registry | None = None) -> dict[tuple[str, str], str]:
    """``(architecture, dtype) -> path``: for every registered architecture and operand dtype with a compiled
    form (its ``compiled_kernels``), the path its CPU inference takes here and why (``zoo info --kernels``)."""
    reg = registry or get_registry()
    return native.model_paths({name: a.cls.compiled_kernels for name, a in reg.architectures.items()})


def kernel_path(architecture: str, dtype: str | torch.dtype, registry: Registry | None = None) -> str:
    """The path a CPU ``architecture`` model in ``dtype`` takes here (:func:`kernel_paths`), or that it is
    torch only."""
    reg = registry or get_registry()
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    arch = reg.architectures.get(architecture)
    return native.kernel_path(arch.cls.compiled_kernels if arch is not None else {}, dtype)
