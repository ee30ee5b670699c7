"""The benchmark scripts' own logic (``benchmarks/benchcheck.py``): timing, bfloat16 tolerances, CPU flags,
the issue's targets. No benchmark runs here: every input is a stand-in, so the file takes milliseconds."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import benchcheck as bc  # noqa: E402


class FakeClock:
    """A clock that each timed call advances by its own cost, so timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def callee(self, costs: list[float], calls: list[str], name: str):
        def call() -> None:
            calls.append(name)
            self.now += costs.pop(0)
        return call


def test_time_interleaved_warms_up_then_takes_medians_of_interleaved_runs():
    clock, calls = FakeClock(), []
    # the warm-ups are slow (first calls compile); the timed runs include one outlier each
    ref = clock.callee([100.0, 2.0, 9.0, 3.0], calls, "ref")
    ours = clock.callee([50.0, 1.0, 1.5, 7.0], calls, "ours")
    t = bc.time_interleaved(ref, ours, 3, clock=clock)
    assert calls == ["ref", "ours"] * 4  # one warm-up each, then interleaved
    assert t.reference == [2.0, 9.0, 3.0] and t.ours == [1.0, 1.5, 7.0]  # warm-up not timed
    assert (t.reference_s, t.ours_s) == (3.0, 1.5)  # medians, not means or the first run
    assert t.speedup == 2.0
    assert bc.run_range(t.reference) == "2-9" and bc.run_range([0.0639, 0.07961]) == "0.0639-0.0796"


def test_time_interleaved_without_warmup_and_bad_runs():
    clock, calls = FakeClock(), []
    t = bc.time_interleaved(clock.callee([4.0], calls, "ref"), clock.callee([2.0], calls, "ours"), 1,
                            warmup=False, clock=clock)
    assert calls == ["ref", "ours"] and t.speedup == 2.0
    with pytest.raises(ValueError, match="runs must be at least 1"):
        bc.time_interleaved(lambda: None, lambda: None, 0)


def test_time_interleaved_between_runs_untimed_before_each_of_ours():
    """``between`` (a measure paired with each of our runs) runs after each reference run and before ours, in
    neither side's time, and not around the warm-ups."""
    clock, calls = FakeClock(), []
    t = bc.time_interleaved(clock.callee([9.0, 4.0, 6.0], calls, "ref"), clock.callee([9.0, 2.0, 3.0], calls, "ours"),
                            2, clock=clock, between=clock.callee([100.0, 100.0], calls, "between"))
    assert calls == ["ref", "ours"] + ["ref", "between", "ours"] * 2
    assert t.reference == [4.0, 6.0] and t.ours == [2.0, 3.0]


def test_difference_is_max_abs_and_relative_rms():
    max_abs, rel = bc.difference([1.0, 2.0, 2.0, 4.0], [1.0, 2.0, 2.0, 4.5])
    assert max_abs == 0.5
    assert rel == pytest.approx(0.5 / math.sqrt(1 + 4 + 4 + 4.5 ** 2))
    assert bc.difference([0.0, 0.0], [0.0, 0.0]) == (0.0, 0.0)
    assert bc.difference([1.0], [0.0]) == (1.0, math.inf)
    with pytest.raises(ValueError, match="differ in length"):
        bc.difference([1.0], [1.0, 2.0])


def test_bf16_check_against_each_models_tolerance():
    tol = bc.bf16_tolerance("waveglow (256 ch)")
    assert tol is bc.BF16_TOLERANCES["waveglow"] and tol.why
    ok, msg = bc.check_bf16("waveglow (256 ch)", tol.max_abs / 2, tol.rel_rms / 2)
    assert ok and msg.startswith("ok")
    assert not bc.check_bf16("waveglow (256 ch)", tol.max_abs / 2, tol.rel_rms * 1.01)[0]
    assert not bc.check_bf16("waveglow (256 ch)", tol.max_abs * 1.01, tol.rel_rms / 2)[0]
    failed = bc.check_bf16("waveglow (256 ch)", float("nan"), float("nan"))
    assert not failed[0] and failed[1].startswith("FAILED")
    # the published FloWaveNet difference (0.93 max abs, 2026-12-04) fails its tolerance
    assert not bc.check_bf16("flowavenet (README)", 0.93, 0.01)[0]
    with pytest.raises(ValueError, match="no bfloat16 tolerance"):
        bc.bf16_tolerance("melgan")
    # every comparison with a bfloat16 row has a tolerance
    assert set(bc.PARALLEL) <= set(bc.BF16_TOLERANCES)


CPUINFO_X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse4_2 avx f16c fma avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu sse4_2
"""


def test_cpu_flags_parser():
    assert bc.cpu_flags(CPUINFO_X86) == ["sse4_2", "avx", "f16c", "fma", "avx2", "avx512f", "avx512dq", "avx512bw",
                                         "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile"]
    assert bc.cpu_flags("processor : 0\nFeatures : fp asimd sve bf16 i8mm\n") == ["asimd", "sve", "bf16", "i8mm"]
    assert bc.cpu_flags("processor : 0\nflags : fpu sse2\n") == []
    assert bc.cpu_flags("") == []
    assert bc.read_cpu_flags("/nonexistent/cpuinfo") is None


def _compare(threads: int, rows: list[tuple[str, str, float, float]]) -> dict:
    return {"machine": {"threads": threads},
            "rows": [{"model": m, "dtype": d, "speedup": s, "max_abs_diff": diff} for m, d, s, diff in rows]}


def _by_target(checked: list[bc.Target]) -> dict[str, bc.Target]:
    return {t.target: t for t in checked}


def test_targets_float32_and_bfloat16_verdicts():
    compares = {
        1: _compare(1, [("hifigan.universal", "float32", 1.53, 1e-5), ("hifigan.universal", "bfloat16", 2.6, 0.07),
                        ("waveglow (256 ch)", "float32", 1.6, 2e-4)]),
        2: _compare(2, [("hifigan.universal", "float32", 0.8, 1e-5), ("hifigan.universal", "bfloat16", 1.69, 0.07)]),
    }
    t = _by_target(bc.targets(compares, cpu=["avx2", "avx512f", "avx512_bf16"]))
    assert t["HiFi-GAN float32 vs its float32 reference, 1 thread(s)"].verdict == bc.MET
    assert t["HiFi-GAN float32 vs its float32 reference, 2 thread(s)"].verdict == bc.NOT_MET  # 0.80x
    assert t["WaveGlow float32 vs its float32 reference, 1 thread(s)"].verdict == bc.NOT_MET  # fast but not equal
    assert t["WaveGlow float32 vs its float32 reference, 2 thread(s)"].verdict == bc.NOT_MEASURED
    assert t["HiFi-GAN bfloat16 vs its float32 reference, 1 thread(s)"].verdict == bc.MET
    assert t["HiFi-GAN bfloat16 vs its float32 reference, 2 thread(s)"].verdict == bc.NOT_MET
    assert t["FloWaveNet bfloat16 vs its float32 reference, 1 thread(s)"].verdict == bc.NOT_MEASURED
    # without AVX-512 BF16 the bfloat16 speed target does not apply; unrecorded flags cannot say
    for cpu, why in ((["avx2", "fma"], "no AVX-512 BF16"), (None, "not recorded")):
        row = _by_target(bc.targets(compares, cpu=cpu))["HiFi-GAN bfloat16 vs its float32 reference, 1 thread(s)"]
        assert row.verdict == bc.NOT_MEASURED and why in row.measured
    # nothing measured: every target is listed, none met
    empty = bc.targets({})
    assert empty and all(x.verdict == bc.NOT_MEASURED for x in empty)


def test_targets_quality_wavenet_and_memory():
    ok = {"pesq_vs_f32": 4.62, "stoi_vs_f32": 0.9997, "pesq_delta": -0.01, "stoi_delta": -0.0004, "files": 16}
    quality = {"models": [{"model": "hifigan.universal", "architecture": "hifigan", **ok},
                          {"model": "waveglow.trainpm", "architecture": "waveglow", **ok, "pesq_vs_f32": 4.4},
                          {"model": "flowavenet.trainpm", "architecture": "flowavenet", **ok, "stoi_delta": -0.02},
                          {"model": "waveglow.nvidia", "skipped": "trained weights not available here"}]}
    ceilings = {1: {"rows": [{"ours_samples_per_s": 300.0, "ceiling_samples_per_s": 338.0}]},
                2: {"rows": [{"ours_samples_per_s": 392.0, "ceiling_samples_per_s": 546.0}]}}
    wavenet = {"rows": [{"config": "r9y9-ljspeech (24L)", "batch": 1, "incremental": 400.0},
                        {"config": "r9y9-ljspeech (24L)", "batch": 8, "incremental": 2400.0},
                        {"config": "r9y9-ljspeech (24L)", "dtype": "bfloat16", "batch": 1, "incremental": 600.0},
                        {"config": "small (6L)", "batch": 8, "incremental": 1e6}]}
    memory = {"summary": [{"model": "hifigan", "ratio": 1.23, "long_s": 60, "short_s": 5},
                          {"model": "waveglow", "ratio": 1.6, "long_s": 60, "short_s": 5}]}
    t = _by_target(bc.targets({}, quality=quality, ceilings=ceilings, wavenet=wavenet, memory=memory))
    assert t["hifigan.universal bfloat16 quality on eval-lj vs its float32 output"].verdict == bc.MET
    assert t["waveglow.trainpm bfloat16 quality on eval-lj vs its float32 output"].verdict == bc.NOT_MET  # 4.4
    assert t["flowavenet.trainpm bfloat16 quality on eval-lj vs its float32 output"].verdict == bc.NOT_MET  # STOI
    student = t["Parallel WaveNet student bfloat16 quality on eval-lj vs its float32 output"]
    assert student.verdict == bc.NOT_MEASURED and student.measured == "no bf16_quality.py row"
    assert "waveglow.nvidia bfloat16 quality on eval-lj vs its float32 output" not in t  # skipped: no row
    assert t["r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, 1 thread(s)"].verdict == bc.MET
    ceiling2 = t["r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, 2 thread(s)"]
    assert ceiling2.verdict == bc.NOT_MET and ceiling2.measured.startswith("72%")
    assert t["r9y9 LJSpeech WaveNet bfloat16 weights vs our float32 loop, batch 1"].verdict == bc.NOT_MET  # 1.5x
    assert t["r9y9 LJSpeech WaveNet batch 8 vs batch 1, float32"].verdict == bc.MET  # 6x
    assert t["peak memory hifigan, 60 s vs 5 s"].verdict == bc.MET
    assert t["peak memory waveglow, 60 s vs 5 s"].verdict == bc.NOT_MET
    assert t["peak memory griffinlim, 60 s vs 5 s"].verdict == bc.NOT_MEASURED
    # PESQ/STOI missing: not measured, not met; an architecture whose only model was skipped says why
    bare = {"models": [{"model": "hifigan.universal", "architecture": "hifigan", "mr_stft_vs_f32": 0.1},
                       {"model": "waveglow.nvidia", "skipped": "trained weights not available here"}]}
    row = _by_target(bc.targets({}, quality=bare))
    assert row["hifigan.universal bfloat16 quality on eval-lj vs its float32 output"].verdict == bc.NOT_MEASURED
    assert row["WaveGlow bfloat16 quality on eval-lj vs its float32 output"].measured == (
        "waveglow.nvidia: trained weights not available here")


def test_performance_page_states_the_method_the_scripts_use():
    import performance

    page = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    section = "\n".join(performance.method())
    assert section in page  # the tolerances on the page are those of BF16_TOLERANCES
    for key, tol in bc.BF16_TOLERANCES.items():
        assert f"{bc.PARALLEL[key]} {tol.rel_rms:g} and {tol.max_abs:g}" in section


def test_wavenet_batch_target_states_the_compute_ceiling():
    """The batch-8 target's detail names the compute ceiling ``wavenet_sampling.py`` recorded (the rate at the
    float32 matmul peak, as a multiple of batch 1); the verdict stays the target's own."""
    wavenet = {"rows": [{"config": "r9y9-ljspeech (24L)", "batch": 1, "incremental": 700.0},
                        {"config": "r9y9-ljspeech (24L)", "batch": 8, "incremental": 2100.0,
                         "ceiling_vs_batch1": 6.5}]}
    target = _by_target(bc.targets({}, wavenet=wavenet))["r9y9 LJSpeech WaveNet batch 8 vs batch 1, float32"]
    assert target.verdict == bc.NOT_MET
    assert target.measured == "3.00x (2,100 vs 700 samples/s); compute ceiling 4,550 samples/s = 6.50x batch 1"


def test_wavenet_batch_target_from_interleaved_rounds_and_above_the_ceiling():
    """With rounds recorded, the ratio is the median of the per-round ratios (``vs_batch1``), not the ratio of
    the medians; a ceiling below the target is said to be one (no loop can meet it on this machine)."""
    wavenet = {"rows": [{"config": "r9y9-ljspeech (24L)", "batch": 1, "incremental": 1000.0, "runs": [900, 1000, 1100]},
                        {"config": "r9y9-ljspeech (24L)", "batch": 8, "incremental": 2000.0, "runs": [2000, 1900, 2600],
                         "vs_batch1": 2.2, "ceiling_vs_batch1": 3.5}]}
    target = _by_target(bc.targets({}, wavenet=wavenet))["r9y9 LJSpeech WaveNet batch 8 vs batch 1, float32"]
    assert target.verdict == bc.NOT_MET
    assert target.measured.startswith("2.20x (2,000 vs 1,000 samples/s, median of 3 interleaved rounds); compute "
                                      "ceiling 3,500 samples/s = 3.50x batch 1: the target is above it")
    assert "63% of the ceiling" in target.measured
    wavenet["rows"][1].update(vs_batch1=5.1, ceiling_vs_batch1=6.0)
    target = _by_target(bc.targets({}, wavenet=wavenet))["r9y9 LJSpeech WaveNet batch 8 vs batch 1, float32"]
    assert target.verdict == bc.MET and "above it" not in target.measured


def test_wavenet_bandwidth_target_pairs_each_run_with_its_own_bandwidth():
    """The read-bandwidth target takes the median of the per-run shares (each run against the bandwidth measured
    just before it) where the run recorded them, not our median rate over the ceiling of the median bandwidth;
    an older row without them falls back to that quotient."""
    row = {"model": "wavenet r9y9 LJSpeech", "dtype": "float32", "ours_samples_per_s": 919.0,
           "ceiling_samples_per_s": 1141.0, "ceiling_share": 1.0, "ceiling_share_runs": [0.9, 1.0, 1.1]}
    name = "r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, 2 thread(s)"
    target = _by_target(bc.targets({}, ceilings={2: {"rows": [row]}}))[name]
    assert target.verdict == bc.MET
    assert target.measured == ("100% (median of 3 runs, each against the bandwidth measured before it; medians "
                               "919 samples/s, ceiling 1,141)")
    del row["ceiling_share"], row["ceiling_share_runs"]
    target = _by_target(bc.targets({}, ceilings={2: {"rows": [row]}}))[name]
    assert target.verdict == bc.NOT_MET and target.measured == "81% (919 of 1,141 samples/s)"


def test_wavenet_sampling_rounds_interleave_every_row():
    """Every round calls every row once, in order, after one warm-up call of each; the ratio to batch 1 is the
    median over rounds of the per-round ratios."""
    import wavenet_sampling

    calls = []

    def runner(name, rates):
        it = iter(rates)
        return lambda: calls.append(name) or next(it)

    rates = bc.interleaved_rounds(
        {"b1": runner("b1", [0, 100, 50, 200]), "b8": runner("b8", [0, 300, 200, 500])}, 3)
    assert calls == ["b1", "b8"] * 4
    assert rates == {"b1": [100, 50, 200], "b8": [300, 200, 500]}
    assert wavenet_sampling.median_ratio(rates["b8"], rates["b1"]) == 3.0  # ratios 3, 4, 2.5
    with pytest.raises(ValueError):
        bc.interleaved_rounds({"b1": lambda: 1.0}, 0)


def test_wavenet_flop_count_of_the_published_size():
    """Two FLOPs per weight the sampling step multiplies, counted by hand for r9y9's LJSpeech layout: the front
    (512 x 1), 24 dilated convs (512 x 512 x 3), 23 residual convs (the last layer's is never used, 512 x 256),
    24 skip convs (256 x 256), the conditioning projection (24 x 512 x 80) and the head (256 x 256, 30 x 256)."""
    import wavenet_sampling
    from zoo_plugins.wavenet import WaveNet, WaveNetConfig

    weights = 512 + 24 * 512 * 512 * 3 + 23 * 512 * 256 + 24 * 256 * 256 + 24 * 512 * 80 + 256 * 256 + 30 * 256
    model = WaveNet(WaveNetConfig.r9y9_ljspeech_2092a64())
    assert wavenet_sampling.flop_per_sample(model) == 2 * weights


def test_roofline_ceilings_float32_and_bfloat16(tmp_path, monkeypatch):
    """A ceiling is the peak product rate over the reference's achieved rate (float32 and bfloat16 peaks, both
    against the float32 reference); ours in GFLOP/s is the counted work over our time."""
    import json

    import roofline

    monkeypatch.setattr(roofline, "matmul_peak", lambda: {"a": 80.0, "b": 100.0})
    monkeypatch.setattr(roofline, "bf16_product_peak", lambda: {"c": 200.0})
    monkeypatch.setattr(roofline, "flops_per_audio_second", lambda arch: 50e9)
    compare = {"seconds": 5, "rows": [
        {"model": "waveglow (256)", "dtype": "float32", "reference_s": 10.0, "ours_s": 5.0, "speedup": 2.0},
        {"model": "waveglow (256)", "dtype": "bfloat16", "reference_s": 10.0, "ours_s": 2.5, "speedup": 4.0}]}
    (tmp_path / "c.json").write_text(json.dumps(compare))
    assert roofline.main(["--compare", str(tmp_path / "c.json"), "--json", str(tmp_path / "r.json")]) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["peak_gflops"] == 100.0 and out["bf16_peak_gflops"] == 200.0
    row = next(r for r in out["rows"] if r["model"] == "waveglow")
    assert row["reference_gflops"] == pytest.approx(25.0) and row["ours_gflops"] == pytest.approx(50.0)
    assert row["ceiling"] == pytest.approx(4.0) and row["bf16_ceiling"] == pytest.approx(8.0)
    assert row["ours_bf16_gflops"] == pytest.approx(100.0) and row["bf16_speedup"] == 4.0
    flow = next(r for r in out["rows"] if r["model"] == "flowavenet")
    assert "ceiling" not in flow and "bf16_ceiling" not in flow  # no comparison row for it


def test_performance_page_adds_a_section_per_other_cpu_folder(tmp_path, monkeypatch):
    """Comparison runs kept in a subfolder of the results (another class of CPU) get their own section: the
    machine, issue 30's float32 targets checked on them, and their tables; the page's own results and
    targets are not mixed with them."""
    import json

    import performance

    monkeypatch.setattr(performance, "RESULTS", tmp_path)
    assert performance._other_cpus() == []  # no such folder: no section

    def row(model: str, ref: float, ours: float) -> dict:
        return {"model": model, "dtype": "float32", "reference_s": ref, "ours_s": ours, "speedup": ref / ours,
                "max_abs_diff": 1e-5, "kernel_path": "tapconv: compiled float32 AVX2 FMA tiles (avx2 variant)"}

    machine = {"threads": 1, "cpu": "AMD EPYC", "cpu_count": 2, "simd": ["avx2", "fma"], "torch": "2.11",
               "date": "2026-12-08 02:00:00 UTC", "kernels": {"tapconv": "compiled, avx2 variant"}}
    (tmp_path / "avx2").mkdir()
    (tmp_path / "avx2" / "compare_threads1.json").write_text(json.dumps(
        {"machine": machine, "seconds": 2, "runs": 5, "rows": [row("hifigan.universal", 2.2, 1.3),
                                                               row("waveglow (256 ch)", 19.0, 15.0)]}))
    text = "\n".join(performance._other_cpus())
    assert "## On another class of CPU: `avx2`" in text and "avx2, fma" in text and "compiled, avx2 variant" in text
    assert "| HiFi-GAN float32 vs its float32 reference, 1 thread(s) | >= 1.3x, max abs diff <= 0.0001 | 1.69x" in text
    assert "| WaveGlow float32 vs its float32 reference, 1 thread(s) | >= 1.3x, max abs diff <= 0.0001 | 1.27x, " \
           "1.0e-05 | **not met** |" in text
    assert "bfloat16 vs" not in text  # the bfloat16 targets need AVX-512 BF16: not listed for this CPU
    assert "### Ours against the reference implementations, 1 thread(s)" in text
    assert "r9y9" not in text  # no bandwidth run kept for that CPU: its WaveNet targets are not listed
    assert performance._compare_runs() == {}  # the page's own comparisons are the top folder's only
    wavenet = {"model": "r9y9 wavenet (LJSpeech)", "dtype": "float32", "reference_s": 40.0, "ours_s": 10.0,
               "speedup": 4.0, "max_abs_diff": 0.0, "ref_samples_per_s": 75.0, "ours_samples_per_s": 300.0,
               "ceiling_samples_per_s": 400.0,
               "ceiling_share": 0.8}
    (tmp_path / "avx2" / "wavenet_ceiling_1.json").write_text(json.dumps(
        {"machine": machine, "seconds": 2, "runs": 5, "rows": [wavenet]}))
    text = "\n".join(performance._other_cpus())
    assert ("| r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, 1 thread(s) | >= 85% of the ceiling "
            "| 80% (300 of 400 samples/s) | **not met** |") in text
    assert "| r9y9 wavenet (LJSpeech) | float32 |" in text
