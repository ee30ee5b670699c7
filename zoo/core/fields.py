"""Checks of config fields read from JSON (their names and types), shared by every config dataclass (vocoder,
mel and training configs)."""

from __future__ import annotations

import dataclasses
from typing import Any


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
    if dataclasses.is_dataclass(template):  # a nested config such as MelConfig: a mapping or a preset name
        what = "a mel config" if type(template).__name__ == "MelConfig" else f"a {type(template).__name__}"
        return None if isinstance(value, (dict, str, type(template))) else f"{what} (a mapping or a preset name)"
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
