"""The pure logic of the benchmark scripts: timing, the bfloat16 tolerances, CPU flags, the issue's targets.

Nothing here imports torch or the library, so ``tests/test_benchmarks.py`` checks it in milliseconds:

* :func:`interleaved_rounds`: one warm-up call of each of several measures, then ``runs`` rounds calling each once
  in order (every row sees the same spells of a shared machine); :func:`time_interleaved` times a reference and
  ours that way, medians;
* :data:`BF16_TOLERANCES` and :func:`check_bf16`: the tolerance each model's bfloat16 row is held to;
* :func:`cpu_flags`: the vector extensions of ``/proc/cpuinfo`` that choose the kernels' code paths;
* :func:`bf16_quality_verdict`: whether a model's bfloat16 output is within the target of its float32 output;
* :func:`targets`: issue 30's targets, each ``met``, ``not met`` or ``not measured``, from the JSON results.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# ------------------------------------------------------------------------------------------------ timing


@dataclasses.dataclass(frozen=True)
class PairTiming:
    """Seconds of each timed run of the two sides of a row (warm-up excluded), and their medians."""

    reference: list[float]
    ours: list[float]

    @property
    def reference_s(self) -> float:
        return statistics.median(self.reference)

    @property
    def ours_s(self) -> float:
        return statistics.median(self.ours)

    @property
    def speedup(self) -> float:
        return self.reference_s / self.ours_s


def interleaved_rounds(calls: dict[str, Callable[[], T]], runs: int, *, warmup: bool = True) -> dict[str, list[T]]:
    """What each of ``calls`` returns in ``runs`` rounds, every round calling every one once in order, after one
    warm-up call of each (first calls compile, fault pages in and fill caches; their results are dropped), so
    that all of them see the same spells of a shared machine."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if warmup:
        for fn in calls.values():
            fn()
    results: dict[str, list[T]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, fn in calls.items():
            results[name].append(fn())
    return results


def time_interleaved(ref: Callable[[], Any], ours: Callable[[], Any], runs: int, *, warmup: bool = True,
                     clock: Callable[[], float] = time.perf_counter,
                     between: Callable[[], Any] | None = None) -> PairTiming:
    """Time ``ref`` and ``ours`` ``runs`` times each, interleaved (reference, ours, reference, ...), after one
    untimed warm-up call of each: :func:`interleaved_rounds` of the two timed calls. ``between``, when given,
    runs untimed before each timed call of ``ours`` (e.g. a measure of the machine to pair with that run), not
    around the warm-ups."""

    def timed(fn: Callable[[], Any], before: Callable[[], Any] | None = None) -> Callable[[], float]:
        def call() -> float:
            if before is not None:
                before()
            t0 = clock()
            fn()
            return clock() - t0
        return call

    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if warmup:
        ref()
        ours()
    t = interleaved_rounds({"ref": timed(ref), "ours": timed(ours, between)}, runs, warmup=False)
    return PairTiming(t["ref"], t["ours"])


def ceiling_share(r: dict[str, Any]) -> float:
    """Our share of a WaveNet row's read-bandwidth ceiling: the median over our timed runs of each run's rate
    over the ceiling of the bandwidth measured just before it (``ceiling_share``), or for rows recorded before
    that pairing, our median rate over the ceiling of one measure."""
    return r["ceiling_share"] if "ceiling_share" in r else r["ours_samples_per_s"] / r["ceiling_samples_per_s"]


def run_range(seconds: Sequence[float]) -> str:
    """The spread of a row's timed runs, ``"fastest-slowest"`` (3 significant digits)."""
    if not seconds:
        raise ValueError("no timed runs")
    return f"{min(seconds):.3g}-{max(seconds):.3g}"


# ------------------------------------------------------------------------------------- bfloat16 tolerances


@dataclasses.dataclass(frozen=True)
class Bf16Tolerance:
    """How far a model's bfloat16 output may be from the float32 reference's on the same input and draws:
    ``rel_rms`` bounds the RMS of the difference over the RMS of the reference output (a length-independent
    measure of the rounding's total cost), ``max_abs`` the largest single difference."""

    rel_rms: float
    max_abs: float
    why: str


#: The tolerance of each comparison's bfloat16 row (keyed by the first word of its model name). bfloat16
#: keeps 8 significant bits (a relative rounding error up to 2^-9 = 0.2% per value) and a deep network
#: compounds that over its layers, so each bound is set at a few times the rounding cost measured for the
#: model's path (on the AVX-512 BF16 EPYC, 2026-12-07, 1 thread), and far below what a wrong path gives (a
#: broken layout, a lost conditioning input or a wrong flow leaves a relative RMS difference near 1 or above).
BF16_TOLERANCES: dict[str, Bf16Tolerance] = {
    "hifigan.universal": Bf16Tolerance(
        0.15, 0.15, "float32 sums, bfloat16 conv inputs and weights, trained weights on a real mel: measured "
                    "relative RMS 0.064 and max abs 0.069 on 2 s (0.093 on the quiet first 0.25 s); a GAN's fine "
                    "waveform detail moves with the rounding while its spectrum does not (eval-lj MR-STFT within "
                    "0.03% of float32's)"),
    "waveglow": Bf16Tolerance(
        0.05, 0.1, "the whole model in bfloat16 (torch's convs), 12 flows of 8 layers, random weights: measured "
                   "relative RMS 0.010, max abs 0.031 (0.5 s; 0.042 on 5 s, 2026-12-04)"),
    "clarinet": Bf16Tolerance(
        0.05, 0.2, "the whole student in bfloat16, 6 flows of 10 layers, random weights: measured relative RMS "
                   "0.009, max abs 0.11 (0.5 s; 0.11 on 5 s, 2026-12-04)"),
    "flowavenet": Bf16Tolerance(
        0.05, 0.2, "the whole model in bfloat16, 8 blocks of 6 flows, random weights; the same bounds as the "
                   "other flows': measured relative RMS 0.019 but max abs 0.42 (0.5 s; 0.93 on 5 s, 2026-12-04), "
                   "which fails (issue 30: its bfloat16 mode needs a quality check before it is offered)"),
}
#: The LJSpeech WaveNet's bfloat16 row (bfloat16 weights, float32 activations) is checked against our float32
#: loop on the bfloat16-rounded weights, not against the reference (sampled audio is not comparable once one
#: draw differs): the loop widens each weight to float32 as it loads it and sums in the float32 loop's order,
#: so the samples are identical. Any difference is a bug (one changed sample changes every later one, so no
#: bound between 0 and "anything" means something).
WAVENET_BF16_TOLERANCE = Bf16Tolerance(
    0.0, 0.0, "bfloat16 weights, float32 activations and sums, against our float32 loop on the bfloat16-rounded "
              "weights from the same draws: identical samples by construction")


def bf16_tolerance(model: str) -> Bf16Tolerance:
    """The tolerance of a comparison row's model (``"waveglow (256 ch)"`` -> ``waveglow``)."""
    key = model.split(" ")[0]
    if key not in BF16_TOLERANCES:
        raise ValueError(f"no bfloat16 tolerance for {model!r}: add one to BF16_TOLERANCES "
                         f"(known: {', '.join(BF16_TOLERANCES)})")
    return BF16_TOLERANCES[key]


def difference(got: Sequence[float], expected: Sequence[float]) -> tuple[float, float]:
    """``(max abs difference, RMS of the difference / RMS of expected)`` of two equal-length sequences."""
    if len(got) != len(expected):
        raise ValueError(f"outputs differ in length: {len(got)} vs {len(expected)}")
    if not len(got):
        raise ValueError("empty outputs")
    diffs = [g - e for g, e in zip(got, expected, strict=True)]
    max_abs = max(abs(d) for d in diffs)
    norm = math.sqrt(sum(e * e for e in expected))
    rel = math.sqrt(sum(d * d for d in diffs)) / norm if norm else (0.0 if max_abs == 0 else math.inf)
    return max_abs, rel


def check_bf16(model: str, max_abs: float, rel_rms: float) -> tuple[bool, str]:
    """``(ok, message)``: a bfloat16 row's differences against its model's tolerance (NaN fails)."""
    tol = bf16_tolerance(model)
    ok = rel_rms <= tol.rel_rms and max_abs <= tol.max_abs  # False for NaN
    verdict = "ok" if ok else "FAILED"
    return ok, (f"{verdict}: relative RMS difference {rel_rms:.2e} (<= {tol.rel_rms:g}), max abs "
                f"{max_abs:.2e} (<= {tol.max_abs:g})")


# ---------------------------------------------------------------------------------------------- CPU flags

#: The ``/proc/cpuinfo`` flags that choose code paths here (the compiled kernels' ISA levels, oneDNN's).
CPU_FLAGS = ("sse4_2", "avx", "f16c", "fma", "avx2", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
             "sve2", "bf16", "i8mm")


def cpu_flags(cpuinfo: str) -> list[str]:
    """The flags of :data:`CPU_FLAGS` that the first processor of a ``/proc/cpuinfo`` text has, in that order
    (x86 ``flags``, ARM ``Features``); empty when the text names none."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            have = set(value.split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def read_cpu_flags(path: str = "/proc/cpuinfo") -> list[str] | None:
    """:func:`cpu_flags` of this machine, or ``None`` where ``/proc/cpuinfo`` cannot be read."""
    try:
        with open(path) as f:
            return cpu_flags(f.read())
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------- targets

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"
#: The parallel models of the targets: the first word of their comparison rows' model names -> label.
PARALLEL = {"hifigan.universal": "HiFi-GAN", "waveglow": "WaveGlow", "flowavenet": "FloWaveNet",
            "clarinet": "Parallel WaveNet student"}
#: The zoo architecture of each parallel model (``bf16_quality.py``'s rows name their architecture).
ARCHITECTURES = {"hifigan.universal": "hifigan", "waveglow": "waveglow", "flowavenet": "flowavenet",
                 "clarinet": "parallel_wavenet"}
#: memory.py's models (the parallel ones, and Griffin-Lim).
MEMORY_MODELS = ("hifigan", "waveglow", "flowavenet", "parallel_wavenet", "griffinlim")
THREADS = (1, 2)
FLOAT32_SPEEDUP, FLOAT32_DIFF = 1.3, 1e-4
BF16_SPEEDUP, PESQ_DELTA, STOI_DELTA = 2.5, 0.1, 0.01
#: Wideband PESQ of a signal against itself (``zoo.audio.metrics.PESQ_MAX``; torch-free copy, a test ties them).
PESQ_MAX = 4.643888
CEILING_SHARE, WAVENET_BF16_SPEEDUP, WAVENET_BATCH, WAVENET_BATCH_SPEEDUP = 0.85, 1.7, 8, 5.0
MEMORY_RATIO = 1.5


@dataclasses.dataclass(frozen=True)
class Target:
    """One checked target: what, the bound, what was measured (or why nothing was), the verdict."""

    target: str
    needed: str
    measured: str
    verdict: str


def _rows(runs: dict[int, dict], threads: int) -> dict[tuple[str, str], dict]:
    run = runs.get(threads) or {}
    return {(r["model"].split(" ")[0], r["dtype"]): r for r in run.get("rows", [])}


def targets(compares: dict[int, dict], *, cpu: Iterable[str] | None = None, ceilings: dict[int, dict] | None = None,
            wavenet: dict | None = None, memory: dict | None = None,
            quality: dict | None = None) -> list[Target]:
    """Issue 30's targets checked against the results: ``compares`` maps a thread count to a
    ``compare_reference.py`` result, ``ceilings`` a thread count to its ``--only wavenet-ljspeech`` result,
    ``wavenet`` is ``wavenet_sampling.py``'s, ``memory`` ``memory.py``'s and ``quality`` ``bf16_quality.py``'s;
    ``cpu`` the CPU's flags (``None``: not recorded)."""
    has_bf16 = None if cpu is None else "avx512_bf16" in set(cpu)
    out = [_speed_target(f"{label} {dtype} vs its float32 reference, {n} thread(s)", dtype,
                         _rows(compares, n).get((key, dtype)), has_bf16)
           for dtype in ("float32", "bfloat16") for key, label in PARALLEL.items() for n in THREADS]
    out += _quality_targets(quality)
    out += _wavenet_targets(ceilings or {}, wavenet)
    out += _memory_targets(memory)
    return out


def _speed_target(name: str, dtype: str, r: dict | None, has_bf16: bool | None) -> Target:
    """A parallel model's speed-up target: float32 equal to the reference within ``FLOAT32_DIFF``; bfloat16
    only on a CPU with AVX-512 BF16 (``has_bf16``; ``None``: the flags were not recorded)."""
    if dtype == "float32":
        need = f">= {FLOAT32_SPEEDUP}x, max abs diff <= {FLOAT32_DIFF:g}"
        if r is None:
            return Target(name, need, "no comparison row", NOT_MEASURED)
        ok = r["speedup"] >= FLOAT32_SPEEDUP and r["max_abs_diff"] <= FLOAT32_DIFF
        return Target(name, need, f"{r['speedup']:.2f}x, {r['max_abs_diff']:.1e}", MET if ok else NOT_MET)
    need = f">= {BF16_SPEEDUP}x on AVX-512 BF16"
    if has_bf16 is False:
        return Target(name, need, "this CPU has no AVX-512 BF16", NOT_MEASURED)
    if r is None:
        return Target(name, need, "no bfloat16 row", NOT_MEASURED)
    if has_bf16 is None:
        return Target(name, need, f"{r['speedup']:.2f}x, CPU flags not recorded", NOT_MEASURED)
    return Target(name, need, f"{r['speedup']:.2f}x", MET if r["speedup"] >= BF16_SPEEDUP else NOT_MET)


def bf16_quality_verdict(row: dict) -> tuple[str, str]:
    """``(verdict, measured)`` of one model's row of ``bf16_quality.py``: met when its bfloat16 output is within
    ``PESQ_DELTA`` and ``STOI_DELTA`` of its float32 output both ways: scored against the float32 output (mean
    PESQ at least ``PESQ_MAX - PESQ_DELTA``, mean STOI at least ``1 - STOI_DELTA``: the float32 output against
    itself scores ``PESQ_MAX`` and 1), and as the change of the mean scores against the recordings."""
    keys = ("pesq_vs_f32", "stoi_vs_f32", "pesq_delta", "stoi_delta")
    if any(not isinstance(row.get(k), (int, float)) or math.isnan(row[k]) for k in keys):
        return NOT_MEASURED, "PESQ/STOI missing"
    ok = (row["pesq_vs_f32"] >= PESQ_MAX - PESQ_DELTA and row["stoi_vs_f32"] >= 1 - STOI_DELTA
          and abs(row["pesq_delta"]) <= PESQ_DELTA and abs(row["stoi_delta"]) <= STOI_DELTA)
    text = (f"vs float32: PESQ {row['pesq_vs_f32']:.3f}, STOI {row['stoi_vs_f32']:.4f}; vs the recordings: "
            f"PESQ {row['pesq_delta']:+.3f}, STOI {row['stoi_delta']:+.4f} ({row.get('files', '?')} clips"
            + (f"; PESQ against float32 on {row['files'] - row['pesq_vs_f32_unscored']}: it finds no speech in "
               f"{row['pesq_vs_f32_unscored']} float32 output(s))" if row.get("pesq_vs_f32_unscored") else ")"))
    return (MET if ok else NOT_MET), text


def _quality_targets(result: dict | None) -> list[Target]:
    """The bfloat16 quality target of every model ``bf16_quality.py`` measured (trained weights), and a not
    measured one for each parallel architecture it measured no model of (with why, where it recorded a skip)."""
    models = (result or {}).get("models", [])
    need = f"PESQ within {PESQ_DELTA}, STOI within {STOI_DELTA} of float32's output"
    out = []
    for m in models:
        if "skipped" not in m:
            verdict, measured = bf16_quality_verdict(m)
            out.append(Target(f"{m['model']} bfloat16 quality on eval-lj vs its float32 output", need, measured,
                              verdict))
    for key, arch in ARCHITECTURES.items():
        if not any(m.get("architecture") == arch for m in models if "skipped" not in m):
            why = "; ".join(f"{m['model']}: {m['skipped']}" for m in models
                            if "skipped" in m and m["model"].split(".")[0] == arch)
            out.append(Target(f"{PARALLEL[key]} bfloat16 quality on eval-lj vs its float32 output", need,
                              why or "no bf16_quality.py row", NOT_MEASURED))
    return out


def _wavenet_targets(ceilings: dict[int, dict], wavenet: dict | None) -> list[Target]:
    out = []
    for n in THREADS:
        rows = [r for r in (ceilings.get(n) or {}).get("rows", []) if "ceiling_samples_per_s" in r
                and r.get("dtype", "float32") == "float32"]
        name = f"r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, {n} thread(s)"
        need = f">= {CEILING_SHARE:.0%} of the ceiling"
        if not rows:
            out.append(Target(name, need, "no bandwidth run", NOT_MEASURED))
            continue
        r = rows[0]
        share = ceiling_share(r)
        paired = (f"median of {len(r['ceiling_share_runs'])} runs, each against the bandwidth measured before it; "
                  f"medians {r['ours_samples_per_s']:,.0f} samples/s, ceiling {r['ceiling_samples_per_s']:,.0f}"
                  if "ceiling_share_runs" in r else
                  f"{r['ours_samples_per_s']:,.0f} of {r['ceiling_samples_per_s']:,.0f} samples/s")
        out.append(Target(name, need, f"{share:.0%} ({paired})", MET if share >= CEILING_SHARE else NOT_MET))
    interleaved = _wavenet_bf16_interleaved(ceilings)
    out += interleaved
    rows = {(r["config"].split(" ")[0], r.get("dtype", "float32"), r["batch"]): r
            for r in (wavenet or {}).get("rows", [])}
    f32 = rows.get(("r9y9-ljspeech", "float32", 1))
    for name, need, other, bound in (
            ("r9y9 LJSpeech WaveNet bfloat16 weights vs our float32 loop, batch 1",
             f">= {WAVENET_BF16_SPEEDUP}x the samples/s", ("r9y9-ljspeech", "bfloat16", 1), WAVENET_BF16_SPEEDUP),
            (f"r9y9 LJSpeech WaveNet batch {WAVENET_BATCH} vs batch 1, float32",
             f">= {WAVENET_BATCH_SPEEDUP}x the samples/s", ("r9y9-ljspeech", "float32", WAVENET_BATCH),
             WAVENET_BATCH_SPEEDUP)):
        got = rows.get(other)
        if interleaved and other[1] == "bfloat16":
            continue  # measured interleaved above
        if f32 is None or got is None:
            out.append(Target(name, need, "no wavenet_sampling.py row", NOT_MEASURED))
            continue
        # the median of the per-round ratios where the rows were timed in interleaved rounds
        ratio = got.get("vs_batch1") or got["incremental"] / f32["incremental"]
        measured = f"{ratio:.2f}x ({got['incremental']:,.0f} vs {f32['incremental']:,.0f} samples/s"
        measured += f", median of {len(got['runs'])} interleaved rounds)" if got.get("runs") else ")"
        ceiling = got.get("ceiling_vs_batch1")
        if ceiling:
            measured += (f"; compute ceiling {ceiling * f32['incremental']:,.0f} samples/s = {ceiling:.2f}x batch 1"
                         + (f": the target is above it on this machine, no loop can reach {bound:g}x here; this "
                            f"one runs at {ratio / ceiling:.0%} of the ceiling" if ceiling < bound else ""))
        out.append(Target(name, need, measured, MET if ratio >= bound else NOT_MET))
    return out


def _wavenet_bf16_interleaved(ceilings: dict[int, dict]) -> list[Target]:
    """The bfloat16-weight target from the ``bfloat16`` rows of the ``--only wavenet-ljspeech`` runs (timed
    interleaved with our float32 loop), one per thread count; none where no run has such a row."""
    out = []
    for n in THREADS:
        for r in (ceilings.get(n) or {}).get("rows", []):
            if r.get("dtype") == "bfloat16" and "vs_float32" in r:
                ok = r["vs_float32"] >= WAVENET_BF16_SPEEDUP and r.get("bf16_ok", False)
                out.append(Target(f"r9y9 LJSpeech WaveNet bfloat16 weights vs our float32 loop, batch 1, {n} "
                                  "thread(s)", f">= {WAVENET_BF16_SPEEDUP}x the samples/s (interleaved)",
                                  f"{r['vs_float32']:.2f}x ({r['ours_samples_per_s']:,.0f} vs "
                                  f"{r['float32_samples_per_s']:,.0f} samples/s)"
                                  + ("" if r.get("bf16_ok", False) else "; its check FAILED"),
                                  MET if ok else NOT_MET))
    return out


def _memory_targets(memory: dict | None) -> list[Target]:
    summary = {s["model"]: s for s in (memory or {}).get("summary", [])}
    out = []
    for model in MEMORY_MODELS:
        s = summary.get(model)
        name = f"peak memory {model}, 60 s vs 5 s"
        if s is None:
            out.append(Target(name, f"<= {MEMORY_RATIO}x", "no memory.py run", NOT_MEASURED))
            continue
        name = f"peak memory {model}, {s['long_s']:g} s vs {s['short_s']:g} s"
        out.append(Target(name, f"<= {MEMORY_RATIO}x", f"{s['ratio']:.2f}x",
                          MET if s["ratio"] <= MEMORY_RATIO else NOT_MET))
    return out
