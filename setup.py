"""Builds vocoder-zoo's compiled kernels at install (``pip install -e .``, ``pip install .``, ``python -m build``).

The package itself is declared in ``pyproject.toml``; this file only adds the C kernels, each a shared
library loaded with ``ctypes`` (not a Python extension module):

* ``zoo/kernels/_tapconv.so`` from ``zoo/kernels/csrc/`` (time-major convolutions, :mod:`zoo.kernels.tapconv`);
* ``plugins/wavenet/_kernel.so`` from ``plugins/wavenet/csrc/`` (the WaveNet sampling loop).

A kernel's body is compiled once per ISA level with that level's flags (never ``-march=native``, so one
build runs on any CPU of its architecture): on x86-64 ``generic`` (the baseline), ``avx2``, ``avx512``
and, for the convolutions, ``avx512bf16``; elsewhere ``generic`` only. A small dispatch file picks the
best level the CPU runs when the library is loaded (``zoo_dispatch.h``). A level the compiler cannot
build is left out and recorded; the library is built from the levels that compiled.

Nothing here makes the install fail: without a working C compiler (``CC=false pip install -e .``) or when
a kernel does not compile, the package installs without that library and the models take their
pure-torch paths. Every build writes ``<library>.build.json`` beside the library: whether it was
attempted, the compiler, each level's outcome and the error, and the sources' hashes. ``zoo info
--kernels`` reports it, and the tests fail (rather than skip) when a compiler was there but a kernel
did not build.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
COMMON = "zoo/kernels/csrc"
#: Flags of every object: the kernels were always built -O3 with errno-free math and OpenMP SIMD pragmas.
BASE_FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-fPIC", "-pthread"]
#: Each ISA level's flags on x86-64 (levels above ``generic`` exist only there).
X86_LEVELS = {
    "generic": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"],
    "avx512bf16": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl",
                   "-mavx512bf16"],
}


class Kernel(Extension):
    """One kernel library: ``body`` compiled per ISA level in ``levels``, linked with ``dispatch``."""

    def __init__(self, name: str, body: str, dispatch: str, headers: list[str], levels: list[str]) -> None:
        super().__init__(name, sources=[body, dispatch], include_dirs=[COMMON, str(Path(body).parent)],
                         depends=headers, optional=True)
        self.body, self.dispatch, self.headers, self.levels = body, dispatch, headers, levels


KERNELS = [
    Kernel("zoo.kernels._tapconv", f"{COMMON}/tapconv.c", f"{COMMON}/tapconv_dispatch.c",
           [f"{COMMON}/tapconv.h", f"{COMMON}/zoo_dispatch.h", f"{COMMON}/zoo_pool.h", f"{COMMON}/zoo_math.h"],
           ["generic", "avx2", "avx512", "avx512bf16"]),
    Kernel("zoo_plugins.wavenet._kernel", "plugins/wavenet/csrc/wavenet.c", "plugins/wavenet/csrc/wavenet_dispatch.c",
           ["plugins/wavenet/csrc/wavenet.h", "plugins/wavenet/csrc/wavenet_tiles.h", f"{COMMON}/zoo_dispatch.h",
            f"{COMMON}/zoo_math.h"],
           ["generic", "avx2", "avx512"]),
]


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _compiler_command() -> list[str]:
    """``$CC`` if set, else the compiler Python was built with, else ``cc``/``gcc``/``clang`` on the PATH."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    configured = shlex.split(sysconfig.get_config_var("CC") or "")
    if configured and shutil.which(configured[0]):
        return configured
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    return configured or ["cc"]


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) < 2000 else text[:1000] + " ... " + text[-1000:]


def _version(cc: list[str]) -> str:
    try:
        out = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30)
        return (out.stdout.strip().splitlines() or [""])[0]
    except (OSError, subprocess.SubprocessError):
        return ""


class BuildKernels(build_ext):
    """Compiles each :class:`Kernel` per ISA level and links one shared library, recording the outcome;
    a failure is recorded and reported, never raised (the pure-torch paths remain)."""

    def get_ext_filename(self, fullname: str) -> str:
        *package, name = fullname.split(".")
        return os.path.join(*package, name + (".dll" if sys.platform == "win32" else ".so"))

    def build_extensions(self) -> None:
        cc = _compiler_command()
        self._cc = cc
        self._cc_version = _version(cc)
        self._no_compiler = self._probe(cc)
        if self._no_compiler is None:
            flags = shlex.split(os.environ.get("CFLAGS", ""))
            self.compiler.set_executables(compiler_so=[*cc, *BASE_FLAGS, *flags],
                                          linker_so=[*cc, "-shared", "-pthread",
                                                     *shlex.split(os.environ.get("LDFLAGS", ""))])
        for ext in self.extensions:
            self.build_extension(ext)

    def _probe(self, cc: list[str]) -> str | None:
        """``None`` when ``cc`` compiles a trivial C file, else why not (the build then records no compiler)."""
        if self.compiler.compiler_type != "unix":
            return ("the kernels build with a Unix C compiler (gcc or clang); this Python uses "
                    f"{self.compiler.compiler_type}")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "probe.c"
            src.write_text("int zoo_probe(int x) { return x + 1; }\n")
            try:
                res = subprocess.run([*cc, "-c", str(src), "-o", str(Path(tmp) / "probe.o")], capture_output=True,
                                     text=True, timeout=120)
            except (OSError, subprocess.SubprocessError) as exc:
                return f"no working C compiler ({shlex.join(cc)}: {_error_text(exc)})"
            if res.returncode != 0:
                err = (res.stderr or res.stdout).strip()[-500:]
                return f"no working C compiler ({shlex.join(cc)} failed on a trivial file, exit {res.returncode}" + \
                    (f": {err})" if err else ")")
        return None

    def _root_from_library(self, ext: Extension) -> str:
        """The source tree's root relative to the library's folder in it (for the loader's check that an
        in-place library was built from the sources beside it)."""
        package = ext.name.rpartition(".")[0]
        return os.path.relpath(ROOT, ROOT / self.get_finalized_command("build_py").get_package_dir(package))

    def build_extension(self, ext: Extension) -> None:
        assert isinstance(ext, Kernel)
        out = Path(self.get_ext_fullpath(ext.name))
        out.parent.mkdir(parents=True, exist_ok=True)
        record: dict = {"library": out.name, "attempted": self._no_compiler is None, "compiler": shlex.join(self._cc),
                        "compiler_version": self._cc_version, "machine": platform.machine(),
                        "flags": BASE_FLAGS, "levels": {},
                        "root": self._root_from_library(ext),
                        "sources": {p: hashlib.sha256((ROOT / p).read_bytes()).hexdigest()
                                    for p in [ext.body, ext.dispatch, *ext.headers]}}
        if out.exists():
            out.unlink()  # never leave an older build beside a record that says otherwise
        if self._no_compiler is not None:
            record.update(status="no-compiler", reason=self._no_compiler)
            self._finish(ext, out, record)
            return
        temp = Path(self.build_temp)
        levels = ext.levels if _is_x86() else ["generic"]
        objects: list[str] = []
        built: list[str] = []
        for level in levels:
            try:
                objects += self.compiler.compile([ext.body], output_dir=str(temp / level), macros=[("ZOO_ISA", level)],
                                                 include_dirs=ext.include_dirs, extra_postargs=X86_LEVELS[level])
                built.append(level)
                record["levels"][level] = "built"
            except Exception as exc:  # noqa: BLE001 - a level the compiler cannot build is left out, recorded
                record["levels"][level] = f"failed: {_error_text(exc)}"
        try:
            if "generic" not in built:
                raise RuntimeError(f"the portable C build of {ext.body} failed: {record['levels'].get('generic')}")
            macros = [(f"ZOO_HAVE_{level.upper()}", "1") for level in built if level != "generic"]
            objects += self.compiler.compile([ext.dispatch], output_dir=str(temp / "dispatch"), macros=macros,
                                             include_dirs=ext.include_dirs)
            self.compiler.link_shared_object(objects, str(out), libraries=["m"])
            record.update(status="built", reason="")
        except Exception as exc:  # noqa: BLE001 - recorded; the package installs with its torch paths
            record.update(status="failed", reason=_error_text(exc))
            if out.exists():
                out.unlink()
        self._finish(ext, out, record)

    def _finish(self, ext: Extension, out: Path, record: dict) -> None:
        (out.parent / (out.stem + ".build.json")).write_text(json.dumps(record, indent=2) + "\n")
        if record["status"] != "built":
            print(f"warning: {ext.name} not built ({record['status']}): {record['reason']}; "
                  "the pure-torch paths will be used", file=sys.stderr)
        else:
            failed = [k for k, v in record["levels"].items() if v != "built"]
            if failed:
                print(f"warning: {ext.name} built without the ISA levels {failed} (see {out.stem}.build.json)",
                      file=sys.stderr)

    def copy_extensions_to_source(self) -> None:
        """In-place builds (``pip install -e .``): the library and its record, and no stale library."""
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, regular = self._get_inplace_equivalent(build_py, ext)
            for src, dst in ((Path(regular), Path(inplace)),
                             (Path(regular).with_suffix(".build.json"), Path(inplace).with_suffix(".build.json"))):
                if src.exists():
                    self.copy_file(str(src), str(dst), level=self.verbose)
                elif dst.exists():
                    dst.unlink()


setup(ext_modules=KERNELS, cmdclass={"build_ext": BuildKernels})
