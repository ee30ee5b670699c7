"""The plugin registry: architectures, model cards and converters contributed by plugins.

Plugins are found through the entry-point group ``zoo`` (the built-in vocoders register the same way a
third-party package does). A plugin that fails to import or to register is reported, as a warning and in
``zoo list --verbose``, and does not break the others. So is a registration that clashes with an earlier
one (the same architecture, converter or model name; a second default model of an architecture): the
earlier one stays (the built-in plugins register first), the later one is dropped and reported.
``ZOO_DISABLE_PLUGINS=name,...`` blocks plugins.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import os
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pluggy

from zoo import hookspecs
from zoo.cards import CardError, ModelCard, load_card, parse_card
from zoo.vocoder import Vocoder

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
class PluginFailure:
    plugin: str
    stage: str
    error: str
    detail: str = ""


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
        self.failures: list[PluginFailure] = []
        self.plugins: dict[str, str] = {}  # plugin name -> distribution (or "builtin")
        for name in self.disabled:
            self.pm.set_blocked(name)
        self._load_plugins(entry_point_group)
        for name, plugin in extra_plugins:
            if name not in self.disabled:
                self.pm.register(plugin, name=name)
                self.plugins[name] = "(registered in code)"
        self._collect()

    # ------------------------------------------------------------------ loading
    def _fail(self, plugin: str, stage: str, exc: BaseException) -> None:
        failure = PluginFailure(plugin, stage, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        self.failures.append(failure)
        warnings.warn(f"zoo plugin {plugin!r} failed to {stage}: {failure.error}", PluginWarning, stacklevel=3)

    def _load_plugins(self, group: str) -> None:
        from zoo import _builtin_cards

        self.pm.register(_builtin_cards, name="zoo-model-cards")
        self.plugins["zoo-model-cards"] = "vocoder-zoo"
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
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                self._fail(ep.name, "load", exc)
                continue
            self.plugins[ep.name] = ep.dist.name if ep.dist else "?"

    def _call_each(self, hook_name: str, make_register: Callable[[str], Callable[..., None]]) -> None:
        hook = getattr(self.pm.hook, hook_name)
        # The built-in plugins first, so that a third-party name clash never displaces them.
        impls = sorted(hook.get_hookimpls(), key=lambda impl: self.plugins.get(impl.plugin_name) != "vocoder-zoo")
        for impl in impls:
            plugin = impl.plugin_name
            try:
                impl.function(make_register(plugin))
            except Exception as exc:  # noqa: BLE001
                self._fail(plugin, f"run {hook_name}", exc)

    def _invalid_card(self, plugin: str, message: str) -> None:
        """Report a model card that does not validate; the caller leaves it unregistered."""
        self.failures.append(PluginFailure(plugin, "register model card", message))
        warnings.warn(f"invalid model card from plugin {plugin!r}: {message}", PluginWarning, stacklevel=3)

    def _clash(self, plugin: str, message: str) -> None:
        """Report a registration that clashes with an earlier one; the caller drops it."""
        self.failures.append(PluginFailure(plugin, "register", message))
        warnings.warn(f"zoo plugin {plugin!r}: {message}", PluginWarning, stacklevel=3)

    def _collect(self) -> None:
        def arch_register(plugin: str) -> Callable[..., None]:
            def register(name: str, cls: type[Vocoder]) -> None:
                if not (isinstance(cls, type) and issubclass(cls, Vocoder)):
                    raise TypeError(f"architecture {name!r} must be a Vocoder subclass, got {cls!r}")
                if cls.architecture and cls.architecture != name:
                    raise TypeError(f"{cls.__name__}.architecture is {cls.architecture!r}, registered as {name!r}")
                if name in self.architectures:
                    other = self.architectures[name].plugin
                    clashed.add((plugin, name))
                    self._clash(plugin, f"architecture {name!r} is registered by two plugins: {other!r} and "
                                        f"{plugin!r} (kept {other!r}; uninstall one or block it with "
                                        f"{DISABLE_ENV}={plugin})")
                    return
                cls.architecture = name
                self.architectures[name] = Architecture(name, cls, plugin)

            return register

        def conv_register(plugin: str) -> Callable[..., None]:
            def register(name: str, fn: Callable[..., Vocoder], description: str = "") -> None:
                if name in self.converters:
                    other = self.converters[name].plugin
                    self._clash(plugin, f"converter {name!r} is registered by two plugins: {other!r} and {plugin!r} "
                                        f"(kept {other!r})")
                    return
                self.converters[name] = Converter(name, fn, description, plugin)

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
                    self._clash(plugin, f"model {parsed.name!r} is registered twice: by {other!r} "
                                        f"({self.cards[parsed.name].origin}) and by {plugin!r} ({parsed.origin}); "
                                        f"kept {other!r}'s")
                    return
                if (plugin, parsed.architecture) in clashed:
                    self._clash(plugin, f"model {parsed.name!r} is for this plugin's architecture "
                                        f"{parsed.architecture!r}, which another plugin registered first; dropped")
                    return
                if parsed.default:
                    first = next((c for c in self.cards.values()
                                  if c.default and c.architecture == parsed.architecture), None)
                    if first is not None:
                        self._clash(plugin, f"model {parsed.name!r} is a second default of architecture "
                                            f"{parsed.architecture!r} after {first.name!r}; it stays loadable by "
                                            f"name, {first.name!r} stays the default")
                        parsed = dataclasses.replace(parsed, default=False)
                self.cards[parsed.name] = parsed
                self.card_plugin[parsed.name] = plugin

            return register

        clashed: set[tuple[str, str]] = set()  # (plugin, architecture) registrations dropped as clashes
        self._call_each("zoo_register_architectures", arch_register)
        self._call_each("zoo_register_converters", conv_register)
        self._call_each("zoo_register_model_cards", card_register)
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
            raise RegistryError(
                f"model {card.name!r} needs architecture {card.architecture!r}, which no plugin provides")
        return card

    def _unknown(self, what: str, name: str, known: list[str]) -> str:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known)) or 'none'})"


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
            "failures": [f.error for f in reg.failures if f.plugin == plugin],
        })
    for f in reg.failures:
        if f.plugin not in reg.plugins:
            rows.append({"plugin": f.plugin, "distribution": "?", "architectures": [], "models": [],
                         "converters": [], "failures": [f.error]})
    for name in sorted(reg.disabled):
        rows.append({"plugin": name, "distribution": "(disabled)", "architectures": [], "models": [],
                     "converters": [], "failures": []})
    return rows
