"""docs/reliability.md: every row of its tables names at least one test, and every named test exists in the
suite; and the suite's own isolation (private caches, no network) that the last row describes."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import ISOLATED_ENV

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("|")]
    return [r for r in rows if not re.fullmatch(r"\|(\s*-+\s*\|)+", r) and not r.startswith("| Case |")
            and not r.startswith("| Input |") and not r.startswith("| Fault |")]


def test_every_row_names_an_existing_test():
    rows = _rows()
    assert len(rows) >= 25, f"the tables of {DOC.name} look truncated ({len(rows)} rows)"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3 and all(cells), f"a row needs a case, a result and a test: {row}"
        refs = TEST_REF.findall(cells[2])
        assert refs, f"row names no test (`tests/file.py::test_name`): {row}"
        for path, name in refs:
            source = REPO / path
            assert source.is_file(), f"{path} does not exist (row: {cells[0]})"
            assert re.search(rf"^def {name}\(", source.read_text(), re.M), f"{path} has no test {name}"


def test_the_check_fails_on_a_missing_test(tmp_path, monkeypatch):
    """The check above is not vacuous: a row naming a test that does not exist fails it."""
    doc = tmp_path / "reliability.md"
    doc.write_text(DOC.read_text() + "| x | y | `tests/test_faults.py::test_that_does_not_exist` |\n")
    monkeypatch.setattr(sys.modules[__name__], "DOC", doc)
    with pytest.raises(AssertionError, match="has no test test_that_does_not_exist"):
        test_every_row_names_an_existing_test()


def test_tests_are_isolated_from_caches_and_network():
    """conftest assigns private caches whatever the environment said, and refuses non-loopback sockets."""
    home_cache = Path.home() / ".cache"
    for name in ("ZOO_CACHE", "HF_HOME", "HF_HUB_CACHE", "ZOO_KERNEL_CACHE"):
        value = os.environ.get(name, "")
        assert value == ISOLATED_ENV[name] or name == "HF_HUB_CACHE", name  # Hub tests may point it elsewhere
        assert not value.startswith(str(home_cache)), f"{name} points into the user's cache: {value}"
    with pytest.raises(OSError, match="must not use the network"):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with socket.create_connection(server.getsockname(), timeout=1):
        pass  # loopback stays allowed (the local Hub servers)
    server.close()
