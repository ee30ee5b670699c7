"""The compiled kernels' build and loader (setup.py, zoo.kernels.native): layout checks, stale builds, ISA selection,
the no-compiler install, and the reports of ``zoo info --kernels`` and ``zoo bench``.

The kernels' numbers are tested per ISA variant in tests/test_tapconv.py and tests/test_fast_paths.py."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import kernels
from zoo.kernels import native, tapconv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch):
    """Kernels registered by a test (broken mirrors, temporary folders) are forgotten after it."""
    monkeypatch.setattr(native, "_specs", dict(native._specs))


def test_no_python_file_holds_c_source():
    """The C lives in .c/.h files built at install; no module compiles a source string at run time."""
    for path in [*REPO.glob("zoo/**/*.py"), *REPO.glob("plugins/**/*.py")]:
        text = path.read_text()
        assert "#include <" not in text and "-march=native" not in text, path


def test_each_kernel_is_built_with_its_variants():
    for name, levels in kernels.LEVELS.items():
        lib = kernels.require(name)
        record = native.read_record(lib.spec)
        assert record is not None and record["status"] == "built" and record["attempted"]
        assert lib.compiled == [lv for lv in levels if record["levels"][lv] == "built"]
        assert "generic" in lib.compiled
        assert lib.isa == lib.runnable()[-1]  # the best level this CPU runs is dispatched by default


def _mirror(fields: list[tuple[str, type]]) -> type[ctypes.Structure]:
    return type("BadProd", (ctypes.Structure,), {"c_name": "prod_t", "_fields_": fields})


def test_a_struct_that_differs_from_the_c_layout_is_refused():
    kernels.require("tapconv")
    assert tapconv.load() is not None  # the real mirrors pass the check
    fields = list(tapconv.SPEC.structs[0]._fields_)
    last = fields[-1][0]
    assert fields[-1][1] is ctypes.c_int
    cases = [([*fields[:-1], (last, ctypes.c_long)], rf"sizeof\(prod_t\)|prod_t\.{last}"),  # a wider field
             ([fields[0], fields[2], fields[1], *fields[3:]], r"prod_t\.cin"),  # two fields swapped
             (fields[:-1], rf"prod_t\.{last}")]  # a field missing
    for i, (bad, match) in enumerate(cases):
        spec = native.register(native.KernelSpec(f"tapconv-bad-{i}", tapconv.SPEC.directory,
                                                 "_tapconv", "zoo_tapconv", (_mirror(bad), tapconv.SPEC.structs[1])))
        with pytest.raises(native.KernelLoadError, match=match):
            native.kernel(spec.name)
        assert native.status(spec.name).state == "error"
    leaky_only = native.register(native.KernelSpec("tapconv-unmirrored", tapconv.SPEC.directory, "_tapconv",
                                                   "zoo_tapconv", (tapconv.SPEC.structs[1],)))
    with pytest.raises(native.KernelLoadError, match="prod_t in the library has no Python mirror"):
        native.kernel(leaky_only.name)


def test_a_library_built_from_other_sources_is_refused(tmp_path):
    lib = kernels.require("tapconv")
    shutil.copy(lib.spec.path, tmp_path / "_tapconv.so")
    (tmp_path / "csrc").mkdir()
    (tmp_path / "csrc" / "tapconv.c").write_text("/* edited since the build */\n")
    record = {"status": "built", "root": ".", "sources": {"csrc/tapconv.c": "0" * 64, "csrc/absent.h": "1" * 64}}
    (tmp_path / "_tapconv.build.json").write_text(json.dumps(record))
    spec = native.register(native.KernelSpec("tapconv-stale", lambda: tmp_path, "_tapconv", "zoo_tapconv",
                                             tapconv.SPEC.structs))
    with pytest.raises(native.KernelLoadError, match=r"another version of .*tapconv\.c.*pip install -e \."):
        native.kernel(spec.name)


def test_isa_selection_and_forcing(monkeypatch):
    lib = kernels.require("tapconv")
    best = lib.isa
    with lib.use("generic"):
        assert lib.isa == "generic" and not tapconv.native_f32() and not tapconv.native_bf16()
    assert lib.isa == best
    with pytest.raises(native.KernelLoadError, match="unknown ISA level 'sse9'"):
        lib.select("sse9")
    missing = [lv for lv in native.ISA_LEVELS if lv not in lib.cpu]
    if missing:  # a level this CPU lacks is refused, naming what it needs
        with pytest.raises(native.KernelLoadError, match="which this CPU lacks"):
            lib.select(missing[-1])
    # ZOO_KERNEL_ISA forces a level when a library is loaded (same library, registered afresh)
    monkeypatch.setenv("ZOO_KERNEL_ISA", "generic")
    spec = native.register(native.KernelSpec("tapconv-forced", tapconv.SPEC.directory, "_tapconv", "zoo_tapconv",
                                             tapconv.SPEC.structs))
    try:
        forced = native.kernel(spec.name)
        assert forced is not None and forced.isa == "generic"
        assert native.status(spec.name).reason == "ZOO_KERNEL_ISA=generic"
    finally:
        lib.select(best)  # one process-wide dispatch per library: restore it for the other tests
    monkeypatch.setenv("ZOO_KERNEL_ISA", "avx9")
    spec = native.register(native.KernelSpec("tapconv-forced-bad", tapconv.SPEC.directory, "_tapconv",
                                             "zoo_tapconv", tapconv.SPEC.structs))
    with pytest.raises(native.KernelLoadError, match="ZOO_KERNEL_ISA='avx9' is not an ISA level"):
        native.kernel(spec.name)
    assert lib.isa == best
    assert "unusable (the models that use it raise this error): ZOO_KERNEL_ISA='avx9'" in \
        native.status(spec.name).summary()


def test_install_without_a_compiler_falls_back_and_says_why(tmp_path):
    """setup.py's build with the compiler hidden (``CC=false``, as ``CC=false pip install -e .`` runs it):
    the build succeeds, records why no kernel was built and leaves no library; the loader then gives the
    pure-torch path with that reason, and the kernel tests skip naming it. (The real install: see the
    commit message and docs/performance.md.)"""
    build = tmp_path / "build"
    env = {**os.environ, "CC": "false"}
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(build / "lib"),
                          "--build-temp", str(build / "temp")], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "pure-torch paths will be used" in res.stderr
    for folder, stem in [("zoo/kernels", "_tapconv"), ("zoo_plugins/wavenet", "_kernel")]:
        out = build / "lib" / folder
        record = json.loads((out / f"{stem}.build.json").read_text())
        assert record["status"] == "no-compiler" and not record["attempted"]
        assert "no working C compiler (false failed on a trivial file" in record["reason"]
        assert not (out / f"{stem}.so").exists()
        spec = native.register(native.KernelSpec(f"nocc-{stem}", lambda out=out: out, stem, "zoo_x"))
        assert native.kernel(spec.name) is None
        st = native.status(spec.name)
        assert st.state == "no-compiler"
        assert st.summary().startswith("pure-torch fallback: not built at install: no working C compiler (false")
        with pytest.raises(pytest.skip.Exception, match="not in use here: not built at install: no working C"):
            kernels.require(spec.name)


def test_a_missing_or_failed_build_fails_the_tests_that_need_it(tmp_path):
    """Where a compiler was there (the build record says the build failed, or nothing was recorded), a test
    that needs the kernel fails instead of skipping."""
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "_k.build.json").write_text(json.dumps({"status": "failed", "attempted": True,
                                                      "reason": "tapconv.c:12: error: expected ';'"}))
    for name, folder in [("failed-build", failed), ("never-built", tmp_path)]:
        native.register(native.KernelSpec(name, lambda folder=folder: folder, "_k", "zoo_x"))
        assert native.kernel(name) is None
        if name == "never-built" and not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
            continue  # no record and no compiler on this machine: the helper skips, saying so
        with pytest.raises(pytest.fail.Exception, match="did not build or load although a C compiler"):
            kernels.require(name)
    assert native.status("failed-build").reason == "its build failed at install: tapconv.c:12: error: expected ';'"


def test_zoo_info_kernels_reports_the_variant_per_kernel_and_model(capsys):
    from zoo.cli.app import main as cli_main

    libs = {name: kernels.require(name) for name in kernels.LEVELS}
    assert cli_main(["info", "--kernels"]) == 0
    out = capsys.readouterr().out
    for name, lib in libs.items():
        assert f"{name}: compiled, {lib.isa} variant (the best level this CPU runs" in out
    assert f"wavenet float32: wavenet: compiled sampling loop ({libs['wavenet'].isa} variant)" in out
    assert "hifigan bfloat16: tapconv: compiled bfloat16 convs" in out
    assert cli_main(["info", "--kernels", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k["name"]: k["isa"] for k in data["kernels"]}["tapconv"] == libs["tapconv"].isa
    assert {(m["architecture"], m["dtype"]) for m in data["models"]} >= {("wavenet", "float32"),
                                                                         ("hifigan", "float32")}


def test_zoo_info_kernels_reports_the_fallback_when_disabled():
    env = {**os.environ, "ZOO_DISABLE_KERNEL": "1"}
    res = subprocess.run([sys.executable, "-m", "zoo.cli", "info", "--kernels"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "tapconv: pure-torch fallback: disabled by ZOO_DISABLE_KERNEL" in res.stdout
    assert "wavenet float32: wavenet: TorchScript sampling step (disabled by ZOO_DISABLE_KERNEL)" in res.stdout


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_bench_records_the_kernel_path():
    from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

    from zoo.runtime.bench import bench_model, machine_info

    lib = kernels.require("tapconv")
    cfg = HiFiGANConfig(upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8), upsample_initial_channel=32,
                        resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),),
                        mel=HiFiGANConfig.v1().mel.replace(hop_length=16, win_length=64, n_fft=64))
    model = HiFiGAN(cfg).eval().to(torch.bfloat16)
    r = bench_model(model, name="tiny", seconds=0.05, runs=1, warmup=0)
    assert r.to_dict()["kernels"].startswith("tapconv: compiled bfloat16 convs") and lib.isa in r.kernels
    assert machine_info()["kernels"]["tapconv"].startswith(f"compiled, {lib.isa} variant")


@pytest.mark.parametrize("level", kernels.LEVELS["tapconv"])
@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_one_conv_backend_choice_is_what_runs_and_what_is_reported(level, monkeypatch):
    """Every model's fast path asks :func:`zoo.kernels.tapconv.conv_backend` which convs to run; per ISA
    variant the answer is what ``zoo info --kernels`` reports and what the models then call."""
    from zoo_plugins.hifigan.model import HiFiGAN, HiFiGANConfig

    import zoo
    from zoo.kernels import gated_infer
    from zoo.nn.gated import WaveNetConditioner
    from zoo.registry.plugins import get_registry, kernel_paths

    with kernels.variant("tapconv", level):
        f32 = tapconv.conv_backend(torch.float32, gated_infer.FORMS)
        assert f32.compiled == (level in ("avx2", "avx512", "avx512bf16"))
        assert tapconv.conv_backend(torch.float32, HiFiGAN.compiled_kernels["tapconv"]) == f32
        bf16 = tapconv.conv_backend(torch.bfloat16, HiFiGAN.compiled_kernels["tapconv"])
        assert bf16.compiled and ("AVX-512 BF16 tiles" in bf16.reason) == (level == "avx512bf16")
        assert tapconv.conv_backend(torch.bfloat16, gated_infer.FORMS) == bf16  # the gated stack's bfloat16 form
        # the report is the same choice, for every registered architecture's declared kernels
        paths = kernel_paths()
        reported = 0
        for arch in zoo.list_architectures():
            for kernel, forms in get_registry().architectures[arch].cls.compiled_kernels.items():
                for dtype in forms:
                    if kernel == "tapconv":
                        expected = "tapconv: " + tapconv.conv_backend(dtype, forms).describe()
                        assert expected in paths[(arch, str(dtype).replace("torch.", ""))]
                        reported += 1
        assert reported >= 8  # float32 and bfloat16 of hifigan and of the three gated-stack flows
        for arch in ("waveglow", "flowavenet", "parallel_wavenet"):
            assert "compiled bfloat16 convs" in paths[(arch, "bfloat16")]
        # the models call the kernel exactly when the choice says so
        calls: list[str] = []

        def spy(name: str):
            real = getattr(tapconv, name)
            return lambda *a, **k: calls.append(name) or real(*a, **k)

        for name in ("conv_taps", "winograd3"):
            monkeypatch.setattr(tapconv, name, spy(name))
        net = WaveNetConditioner(4, 8, 16, channels=16, num_layers=2).eval()
        cfg = HiFiGANConfig(upsample_rates=(4, 4), upsample_kernel_sizes=(8, 8), upsample_initial_channel=32,
                            resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),),
                            mel=HiFiGANConfig.v1().mel.replace(hop_length=16, win_length=64, n_fft=64))
        hifigan = HiFiGAN(cfg).eval()
        with torch.no_grad():
            net.infer(torch.randn(1, 4, 32), torch.randn(1, 16, 32))
            assert bool(calls) == f32.compiled, "the gated stack's convs"
            calls.clear()
            out = net.to(torch.bfloat16).infer(torch.randn(1, 4, 32), torch.randn(1, 16, 32, dtype=torch.bfloat16))
            assert calls and out.dtype == torch.float32, "the gated stack's bfloat16 convs"
            calls.clear()
            hifigan.vocode(torch.randn(1, 80, 5))
            assert bool(calls) == f32.compiled, "HiFi-GAN's float32 convs"
            calls.clear()
            hifigan.to(torch.bfloat16).vocode(torch.randn(1, 80, 5, dtype=torch.bfloat16))
            assert calls, "HiFi-GAN's bfloat16 convs"


def test_kept_packs_follow_their_sources_views_included():
    """``native.kept`` keeps a value until its sources change; a view made afresh on every call (``w[..., 0]``)
    matches the same view of the same weights, and not another part of them or the weights changed in place."""
    owner = torch.nn.Linear(2, 2)
    w = torch.nn.Parameter(torch.randn(4, 3, 2))
    made: list[int] = []

    def kept(source: torch.Tensor) -> int:
        return native.kept(owner, ("test",), (source,), lambda: made.append(1) or len(made))

    first = kept(w[..., 0])
    assert kept(w[..., 0]) == first and len(made) == 1  # a fresh view of the same weights: kept
    assert kept(w[..., 1]) != first  # another part of them (same shape and strides): made again
    kept(w[..., 0])
    n = len(made)
    with torch.no_grad():
        w.mul_(2.0)
    assert kept(w[..., 0]) == n + 1  # changed in place: made again
    assert kept(torch.nn.Parameter(w.detach().clone())[..., 0]) == n + 2  # other weights: made again
