"""What the measurement scripts of docs/scripts share: paths, the command line, and writing their outputs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EVAL_LJ = REPO.parent / "shared" / "data" / "eval-lj"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parser(doc: str, data: str, figure: str, clip: str | None = "LJ001-0008") -> argparse.ArgumentParser:
    """``--json docs/data/<data>.json``, ``--figure docs/figures/<figure>.png`` and ``--clip`` (an eval-lj clip)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if clip is not None:
        p.add_argument("--clip", type=Path, default=EVAL_LJ / f"{clip}.wav")
    p.add_argument("--json", type=Path, default=REPO / "docs" / "data" / f"{data}.json")
    p.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / f"{figure}.png")
    return p


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
