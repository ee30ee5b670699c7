"""The cards shipped in ``model_cards/``, registered like any plugin's cards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zoo.hookspecs import hookimpl


def cards_dir() -> Path | None:
    """The packaged ``model_cards/`` folder (package ``zoo_model_cards``), if installed."""
    try:
        import zoo_model_cards
    except ImportError:
        return None
    return Path(zoo_model_cards.__file__).parent


@hookimpl
def zoo_register_model_cards(register: Callable[..., None]) -> None:
    folder = cards_dir()
    if folder is None:
        return
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() != "readme.md":
            register(path)
