"""Configuration dataclasses with a strict JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from zoo.mel import MelConfig

T = TypeVar("T", bound="VocoderConfig")


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, MelConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    return value


def _like(value: Any, template: Any) -> Any:
    """Coerce JSON ``value`` to the container type of ``template`` (lists back to tuples)."""
    if isinstance(template, tuple) and isinstance(value, list):
        inner = template[0] if template else None
        return tuple(_like(v, inner) for v in value)
    if isinstance(template, MelConfig) and isinstance(value, dict):
        return MelConfig.from_dict(value)
    if isinstance(template, MelConfig) and isinstance(value, str):
        return MelConfig.preset(value)
    return value


def field_type_problem(value: Any, template: Any, annotation: str) -> str | None:
    """What is wrong with the JSON ``value`` of a config field whose default is ``template`` and whose type
    annotation is ``annotation``, in words ("a whole number" ...), or ``None`` when its type is right."""
    if value is None and ("None" in annotation or "Optional" in annotation):
        return None
    plain = annotation.replace(" | None", "").replace("Optional[", "").rstrip("]").strip()
    if template is None:
        if value is None:
            return None
        template = {"int": 0, "float": 0.0, "str": "", "bool": False}.get(plain)
        if template is None:
            return None
    if isinstance(template, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(template, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(template, float):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(template, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(template, MelConfig):
        return None if isinstance(value, (dict, str, MelConfig)) else "a mel config (a mapping or a preset name)"
    if isinstance(template, tuple):
        if not isinstance(value, (list, tuple)):
            return "a list"
        if template and all(not isinstance(t, tuple) for t in template):
            for item in value:
                if field_type_problem(item, template[0], "") is not None:
                    return f"a list of {type(template[0]).__name__}"
        elif template:
            for item in value:
                if not isinstance(item, (list, tuple)) or field_type_problem(item, template[0], "") is not None:
                    return "a list of lists of numbers"
    return None


def check_known_keys(cls: type, keys: Any, what: str) -> None:
    """Raise ``ValueError`` naming the ``keys`` that are not fields of the dataclass ``cls``
    (``what``: how the message calls them, e.g. ``"HiFiGANConfig: unknown config keys"``)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - fields)
    if unknown:
        raise ValueError(f"{what} {unknown}; known keys: {sorted(fields)}")


def check_field_types(obj: Any, what: str = "setting") -> None:
    """Raise ``ValueError`` for a field of the dataclass ``obj`` annotated ``int``, ``float`` or ``bool``
    (optionally ``| None``) whose value is not of that type (ints pass as floats; bools never as numbers)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        kind = {"int": int, "float": (int, float), "bool": bool}.get(annotation.replace(" | None", ""))
        if kind is None or (value is None and annotation.endswith("| None")):
            continue
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ValueError(f"{what} {f.name} must be {annotation}, got {value!r}")


@dataclasses.dataclass
class VocoderConfig:
    """Base of every architecture's hyperparameters. ``mel`` is the feature contract of the model."""

    mel: MelConfig = dataclasses.field(default_factory=MelConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (the ``mel`` config included)."""
        return _to_jsonable(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a dict of hyperparameters, got {type(data).__name__}")
        check_known_keys(cls, data, f"{cls.__name__}: unknown config keys")
        defaults = cls()
        annotations = {f.name: f.type if isinstance(f.type, str) else str(f.type) for f in dataclasses.fields(cls)}
        for k, v in data.items():
            problem = field_type_problem(v, getattr(defaults, k), annotations[k])
            if problem is not None:
                raise ValueError(f"{cls.__name__}: {k} must be {problem}, got {v!r}")
        kwargs = {k: _like(v, getattr(defaults, k)) for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    def replace(self: T, **changes: Any) -> T:
        """A copy with some fields changed (``mel`` may be given as a dict or a preset name)."""
        check_known_keys(type(self), changes, f"{type(self).__name__}: unknown config keys")
        if "mel" in changes:
            mel = changes["mel"]
            if isinstance(mel, str):
                changes["mel"] = MelConfig.preset(mel)
            elif isinstance(mel, dict):
                changes["mel"] = MelConfig.from_dict(mel)
        return dataclasses.replace(self, **changes)
