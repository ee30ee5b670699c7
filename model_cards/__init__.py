"""Model cards shipped with vocoder-zoo (data). Each built-in plugin registers its own cards through the
``zoo_register_model_cards`` hook, exactly as a third-party plugin does: :func:`shipped_cards` finds them."""

from __future__ import annotations

from pathlib import Path


def shipped_cards(architecture: str) -> list[Path]:
    """The card files of ``architecture`` in this folder, sorted. A card file is named after its model,
    ``architecture.tag.md``, so these are the files whose name before the first dot is ``architecture``."""
    folder = Path(__file__).parent
    return sorted(p for p in folder.glob(f"{architecture}.*.md") if p.name.split(".", 1)[0] == architecture)
