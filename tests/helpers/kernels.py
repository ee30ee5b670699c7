"""The compiled kernels in tests: a test that needs one fails when a C compiler was there but the kernel did
not build or load; it skips only where the install had no compiler (``CC=false``, the reason named), or for
an ISA variant this CPU cannot run ("not run on this CPU")."""

from __future__ import annotations

import contextlib
import platform
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import zoo_plugins.wavenet.kernel  # noqa: F401 - registers the WaveNet loop with zoo.kernels.native

import zoo.kernels.tapconv  # noqa: F401 - registers the conv kernel
from zoo.kernels import backend, native, tapconv

#: The ISA variants each kernel is built with on x86-64 (``setup.py``); elsewhere only ``generic``.
LEVELS = {"tapconv": ("generic", "avx2", "avx512", "avx512bf16"), "wavenet": ("generic", "avx2", "avx512")}


def require(name: str) -> native.KernelLibrary:
    """The loaded kernel ``name``; otherwise a skip (no compiler at install, or ``ZOO_DISABLE_KERNEL``) or a
    failure (a compiler was there, or nothing says there was none) naming why."""
    st = native.status(name)
    if st.loaded:
        lib = native.kernel(name)
        assert lib is not None
        return lib
    if st.state in ("no-compiler", "disabled"):
        pytest.skip(f"the {name} kernel is not in use here: {st.reason}")
    if st.state == "not-built" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        pytest.skip(f"no C compiler on this machine, and the {name} kernel was not built: {st.reason}")
    pytest.fail(f"the {name} kernel did not build or load although a C compiler was available: {st.reason}")


@contextlib.contextmanager
def variant(name: str, level: str) -> Iterator[native.KernelLibrary]:
    """Run the block on kernel ``name``'s ``level`` variant; skip where this CPU cannot run it, fail where it
    can but the variant was not built."""
    lib = require(name)
    if level not in lib.cpu:
        pytest.skip(f"not run on this CPU ({platform.machine()}): the {level} variant needs "
                    f"{native.ISA_NEEDS[level]}")
    if level not in lib.compiled:
        record = native.read_record(lib.spec) or {}
        pytest.fail(f"the {name} kernel's {level} variant was not built although this CPU runs it: "
                    f"{record.get('levels', {}).get(level, 'not attempted')}")
    with lib.use(level):
        yield lib


def force_torch_convs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every schedule choose torch's convs (:func:`zoo.kernels.tapconv.conv_backend`, the one choice the
    models make) for the rest of the test, to test the torch path on a CPU where the kernel would run."""
    monkeypatch.setattr(tapconv, "conv_backend",
                        lambda dtype, schedule: backend.ConvBackend(dtype, False, "torch forced by the test"))


def isa_fixture(name: str) -> Any:
    """A parametrised fixture (assign it to ``isa`` in a test module) that runs each test on every ISA variant
    of kernel ``name`` this CPU runs (:func:`variant`), giving the variant's name."""

    @pytest.fixture(params=LEVELS[name], name="isa")
    def isa(request: pytest.FixtureRequest) -> Iterator[str]:
        with variant(name, request.param):
            yield request.param

    return isa
