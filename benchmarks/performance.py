"""Rerun every speed and memory benchmark and rewrite ``docs/performance.md`` from their JSON results.

    python benchmarks/performance.py --ref-dir refs [--threads 2] [--compare-threads 1,2] [--runs 5]
        [--seconds 5] [--quick] [--skip STEP,...] [--render-only] [--results DIR] [--doc PATH]

Steps (each writes ``<results>/<step>.json``, by default ``benchmarks/results/``; ``--skip`` keeps an earlier
result):

* ``compare``: ``compare_reference.py`` (ours vs the reference implementations, ``--seconds`` of audio,
  batch 1, float32 and bfloat16 rows, the median of ``--runs`` interleaved runs) once per thread count of
  ``--compare-threads`` (``compare_threads<n>.json``; the issue's targets are on 1 and 2 threads);
* ``wavenet``: ``wavenet_sampling.py`` (incremental vs naive sampling, batch 1 and 8, and the LJSpeech size
  with bfloat16 weights, in ``--runs`` interleaved rounds);
* ``wavenet_ceiling``: ``compare_reference.py --only wavenet-ljspeech`` on 1 and on 2 threads, each row with
  the weight bytes read per sample and the read bandwidth measured in the same run, hence the most samples
  per second (and the largest speed-up over r9y9) a float32 loop reading every weight once per sample allows;
* ``roofline``: ``roofline.py`` (FLOPs per second of audio, the matmul peak, the ceiling of each speed-up);
* ``memory``, ``memory_glibc``: ``memory.py`` (peak memory at 5 s and 60 s for every parallel model, with
  freed blocks returned to the OS and with glibc's default heap);
* ``length`` / ``batch``: ``zoo bench`` sweeps of utterance length (1 to 60 s) and batch size, with the
  PNG plot ``docs/performance_length.png`` of time and memory against length;
* ``bf16_quality``: ``bf16_quality.py`` on ``../shared/data/eval-lj`` for every parallel model with trained
  weights (STOI, PESQ, MR-STFT of its bfloat16 output against its float32 output on the same noise, and the
  change of each against the recordings; its section of the page comes from ``bf16_quality.section``).

Every table of ``docs/performance.md`` is rendered from these results (``--render-only`` renders without
running anything; ``--doc`` writes elsewhere, e.g. to try the pipeline with ``--quick --results /tmp/r``).
``--quick`` shortens everything (for checking the pipeline, not for publishing). The page records the
machine, its CPU flags (the vector extensions that choose the compiled kernels' and torch's code), the
compiled kernel path each model and dtype takes (``zoo.kernels.native``, as ``zoo info --kernels``; each
comparison row also records its own), library versions, thread count, date and the load on the machine
while it ran (other processes running skew absolute times; the ratios come from interleaved runs in one
process). It then prints issue 30's targets, each met, not met or not measured (``benchcheck.targets``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bf16_quality  # noqa: E402
from benchcheck import (  # noqa: E402
    BF16_TOLERANCES,
    MET,
    NOT_MEASURED,
    PARALLEL,
    Target,
    ceiling_share,
    read_cpu_flags,
    run_range,
    targets,
)

ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "performance.md"
PLOT = ROOT / "docs" / "performance_length.png"
STEPS = ("compare", "roofline", "wavenet", "wavenet_ceiling", "memory", "memory_glibc", "length",
         "batch", "bf16_quality", "wavenet_bf16_quality")
CEILING_THREADS = (1, 2)
COMPARE_THREADS = (1, 2)
SWEEP_MODELS = ["hifigan.universal", "griffinlim.hifigan", "waveglow.trainpm", "flowavenet", "parallel_wavenet"]


def _busy() -> list[str]:
    try:
        out = subprocess.run(["pgrep", "-af", "zoo (train|distill)"], capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line for line in out.splitlines() if "pgrep" not in line]


def run_steps(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    py, t = sys.executable, str(args.threads)
    q = args.quick
    length = ["1", "5"] if q else ["1", "5", "15", "30", "60"]
    roof_threads = args.threads if args.threads in args.compare_threads else args.compare_threads[0]
    commands = {
        "compare": [[py, str(HERE / "compare_reference.py"), "--ref-dir", str(args.ref_dir), "--threads", str(n),
                     "--seconds", "1" if q else f"{args.seconds:g}", "--runs", "2" if q else str(args.runs),
                     "--wavenet-samples", "256" if q else "2048",
                     "--json", str(RESULTS / f"compare_threads{n}.json")] for n in args.compare_threads],
        "roofline": [py, str(HERE / "roofline.py"), "--threads", str(roof_threads),
                     "--compare", str(RESULTS / f"compare_threads{roof_threads}.json"),
                     "--json", str(RESULTS / "roofline.json")],
        "wavenet": [py, str(HERE / "wavenet_sampling.py"), "--steps", "256" if q else "2048",
                    "--runs", "2" if q else str(args.runs),
                    "--json", str(RESULTS / "wavenet.json")],
        "wavenet_ceiling": [[py, str(HERE / "compare_reference.py"), "--ref-dir", str(args.ref_dir),
                             "--threads", str(n), "--only", "wavenet-ljspeech", "--runs", "2" if q else str(args.runs),
                             "--wavenet-samples", "256" if q else "2048",
                             "--json", str(RESULTS / f"wavenet_ceiling_{n}.json")] for n in CEILING_THREADS],
        "memory": [py, str(HERE / "memory.py"), "--threads", t, "--seconds", "1" if q else "5", "5" if q else "60",
                   "--json", str(RESULTS / "memory.json")],
        "memory_glibc": [py, str(HERE / "memory.py"), "--threads", t, "--seconds", "1" if q else "5",
                         "5" if q else "60", "--malloc", "default", "--json", str(RESULTS / "memory_glibc.json")],
        "length": [py, "-m", "zoo.cli", "bench", *SWEEP_MODELS, "--threads", t, "--runs", "1", "--warmup-seconds", "1",
                   *[a for s in length for a in ("--seconds", s)], "--json", str(RESULTS / "length.json"),
                   "--plot", str(PLOT)],
        "bf16_quality": [py, str(HERE / "bf16_quality.py"), "--threads", t, *(["--limit", "2"] if q else []),
                         "--json", str(RESULTS / "bf16_quality.json"), "--doc", "-"],
        "wavenet_bf16_quality": [py, str(HERE / "wavenet_bf16_quality.py"), "--threads", t,
                                 *(["--limit", "2", "--no-sampled"] if q else []),
                                 "--json", str(RESULTS / "wavenet_bf16_quality.json")],
        "batch": [py, "-m", "zoo.cli", "bench", "hifigan.universal", "waveglow.trainpm", "--threads", t,
                  "--runs", "1" if q else "3",
                  "--warmup-seconds", "1", "--seconds", "1" if q else "5",
                  *[a for b in (["1", "2"] if q else ["1", "2", "4", "8"]) for a in ("--batch", b)],
                  "--json", str(RESULTS / "batch.json")],
    }
    if args.ref_dir is None:
        for step in ("compare", "roofline", "wavenet_ceiling"):
            commands.pop(step)
    conditions = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average_start": os.getloadavg(),
                  "other_jobs": _busy(), "quick": q, **machine_paths()}
    for step in STEPS:
        if step in args.skip or step not in commands:
            continue
        cmds = commands[step]
        for cmd in cmds if isinstance(cmds[0], list) else [cmds]:
            print(f"== {step}: {' '.join(cmd)}", flush=True)
            # a comparison exits 1 when a row fails its check: the row is kept and shown as failed
            subprocess.run(cmd, check=not step.startswith(("compare", "wavenet_ceiling")), cwd=ROOT)
    conditions["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    conditions["load_average_end"] = os.getloadavg()
    (RESULTS / "conditions.json").write_text(json.dumps(conditions, indent=2))


def machine_paths() -> dict:
    """The CPU's flags (``benchcheck.cpu_flags``), torch's CPU capability, and each compiled kernel's state
    and the path each model/dtype takes (``zoo.kernels.native``, the same as ``zoo info --kernels``)."""
    import torch

    import zoo
    from zoo.kernels import native
    from zoo.registry.plugins import kernel_paths

    zoo.list_architectures()  # load the plugins: their kernels register with zoo.kernels.native
    return {"cpu_flags": read_cpu_flags(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernels": {k.name: k.summary() for k in native.statuses()},
            "kernel_paths": [{"architecture": a, "dtype": d, "path": p}
                             for (a, d), p in sorted(kernel_paths().items())]}


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _loads(values: list[float] | None) -> str:
    return ", ".join(f"{v:.1f}" for v in values) if values else "?"


NOTES = """## What the fast paths are

- **Flows (WaveGlow, FloWaveNet, the Parallel WaveNet student's upsampler)**: weight norm folded at conversion;
  the 1x1-conv inverses computed once in float64 and cached; ActNorm inverted in place. Without autograd
  the coupling WaveNets run time-major (`zoo.kernels.gated_infer.infer_conditioner`): each conv is matrix products
  on the parameters' own memory (no weight copies), the dilated taps read as shifted row ranges of one
  zero-padded residual buffer, the conditioning through a transposed view (FloWaveNet's halves of the
  conditioning are never swapped or copied), `tanh(a) sigmoid(b)` as one sigmoid pass, WaveGlow's `end`
  folded into every layer's skip conv and its `start` into the first dilated conv. The same layer loop
  (`zoo.kernels.gated_infer.infer_layers`, causal or not) runs the Parallel WaveNet student's flows: one `[T, gate]`
  buffer reused by every layer (a fresh one per layer was page-faulted in each time, costing as much as a
  product), and no `[B, layers * gate, T]` conditioning tensor (each layer adds its own product).
- **Winograd F(4, 3)** for the 3-tap dilated convs of stacks at least 64 channels wide (WaveGlow,
  FloWaveNet, the student; `zoo.kernels.timemajor.winograd_conv3`): the outputs are tiled in fours `d` steps
  apart, each tile reads six input rows (points 0, 1, -1, 2, -2, infinity), the inputs are transformed
  with additions, multiplied by the transformed filters in 6 products of a quarter of the rows (the
  direct taps make 3 products of all the rows, 12 per tile), and combined with additions: half the
  arithmetic of those convs, in calls of about 4096 rows (`WINOGRAD_CHUNK_ROWS`; 1024 until 2026-12-02,
  when the 128-channel HiFi-GAN stage's transforms fell below torch's elementwise grain and ran on one
  thread: 2-thread A/B HiFi-GAN 0.98 -> 0.77 s for 2 s, WaveGlow 3.04 -> 2.80 s for 1 s). WaveGlow then
  does about 300 GFLOP per second of audio where the reference does 448 (the dilated convs were about
  half of it; the conditioning 1x1, 640 -> 512 per layer, about 40%, is untouched). The outputs stay within float32
  rounding of the reference (max abs difference 1.9e-6 for WaveGlow; tests compare the tiles with the
  direct taps and the stack's forward, partial tiles and chunk edges included). In-process A/B runs on the
  converted reference weights (2 s): WaveGlow 13.2 -> 10.8 s, FloWaveNet 11.9 -> 10.3 s, the student
  9.2 -> 8.0 s.
- **On AVX-512 CPUs** (this machine since 2026-12-04) the flows' dilated convs run on `zoo.kernels.tapconv`'s
  compiled kernel (the same tiles as HiFi-GAN's, below): its Winograd does the input transform (AVX-512),
  the six products and the output transform on blocks of 48 tiles in L2, where `zoo.kernels.timemajor` made one
  pass over memory per transform step. WaveGlow 1.43x -> 1.61x the reference (5 s, 1 thread); 1.60x on
  2 threads (1.46x in a run on a busier machine), where both sides run near the float32 peak
  (the roofline's ceiling is 1.10x at equal FLOPs:
  the rest is the FLOPs we do not do). Until 2026-12-07 the bfloat16 rows of the flows cast the whole
  model (torch's bfloat16 convs, every output rounded; FloWaveNet's 8 x 6 flows amplified that to a max
  difference of 0.93 against float32 on the same noise). Since then a stack with bfloat16 weights runs
  the compiled kernel's bfloat16 form (`zoo.kernels.gated_infer`, `FORMS`): bfloat16 operands, every sum,
  the gate, the residual stream and the skips in float32, the gate in one pass
  (`zoo.kernels.tapconv.gate`, which rounds it into the 1x1 convs' operand; in-process A/B, 2 s, 1
  thread: FloWaveNet 4.94 -> 4.75 s, WaveGlow 4.35 -> 4.32 s). No Winograd in that form (its transforms
  rounded to bfloat16 cost about 1% of a layer's output), so the bfloat16 convs do the reference's
  FLOPs and make 85% of WaveGlow's bfloat16 time (cProfile, 2 s, 1 thread): what is left to gain there is
  in the conv tiles, not around them. Each trained model's bfloat16 cost in quality is measured in
  "bfloat16 quality cost" above. Since 2026-12-07 evening a ReLU head's first 1x1 (FloWaveNet's couplings
  and priors: skips to skips, a tenth of its bfloat16 time as a float32 product) also takes bfloat16
  operands on the kernel (FloWaveNet 2 s, 1 thread, in-process: 4.49 -> 4.24 s; relative RMS difference to
  float32 unchanged at 7.2e-3). Those tiles run at 180-225 GFLOP/s on one core (`vdpbf16ps` peaks at 234
  in a register-only loop; torch's bfloat16 `mm` at 212). FloWaveNet in bfloat16 on one thread did 178
  GFLOP/s of the reference's count in the 2026-12-07 evening run (5 s in 10.9 s), 84% of that product
  peak, so its ratio can grow by about a fifth at most: its ceiling over the float32 reference was 2.5-2.9x
  within that run, the reference's own time moving between 23 and 27 s (the roofline table gives the
  two-thread ceilings of each run).
- **On AVX2 CPUs** (AVX2 and FMA, no AVX-512; since 2026-12-08) every model's float32 convs run on
  `zoo.kernels.tapconv`'s `avx2` variant too, where they were torch's per-tap products: the same tile code at
  8 floats per vector (6 rows x 16 columns of sums in 12 of the 16 registers; 12 x 8 for a last 8 columns),
  the same Winograd fused on blocks in cache. Read in place, a tile's weight rows are `C_out` floats apart (a
  power of two in most layers) and evict each other from L1 and L2: a 512 -> 512 3-tap conv ran at 0.65-0.75x
  torch's per-tap products, and copying each panel per block of rows took a fifth of the time (perf). So each
  thread copies a call's weights once into 16-column panels, one contiguous stream per tile
  (`panel_weights` in `tapconv.c`; the same sums in the same order). One thread on an AMD EPYC with AVX2 only
  (the machine of "On another class of CPU: `avx2`" above), min of 9 interleaved: 22016 rows x 256 -> 512, 3
  taps 87-91 GFLOP/s against torch's per-tap 74-80; 4096 x 512 -> 512 83-88 vs 77-80; 128 -> 128 81-89 vs
  60-68; 32 -> 32, 7 taps 82-89 vs 50-53. Whole models, the kernel against torch's convs in one process (2 s,
  1 thread, medians of 3-5 interleaved): HiFi-GAN 1.98 -> 1.34 s, WaveGlow 12.9 -> 11.2 s, FloWaveNet
  9.69 -> 9.70 s, the student 10.6 -> 9.5 s. Against the references on that machine, before (torch's convs:
  the code before on 1 thread, `ZOO_KERNEL_ISA=generic` on 2; `benchmarks/results/avx2/before_*.json`) and
  after: 1 thread HiFi-GAN 1.15x -> 1.71x, WaveGlow 1.66x -> 1.49x (our time 11.6 -> 10.6 s; the
  reference's 19.2 -> 15.9 s, its runs spread over 15.6-20.5 s in the first), FloWaveNet 1.36x -> 1.57x, the
  student 1.44x -> 1.58x (before: median of 3 runs, after: of 5); 2 threads HiFi-GAN 1.37x -> 1.79x, WaveGlow
  1.55x -> 1.62x, FloWaveNet 1.44x -> 1.53x (measured again alone: a busy spell put one of our runs at 18.1 s
  in the first), the student 1.54x -> 1.68x. In one process, 2 threads, FloWaveNet 4.76 -> 4.43 s.
  Tried and dropped: K-blocking the panels to L1 size (no gain once they are contiguous), software prefetch of
  the weight rows (none).
- **Long inputs** (`chunk_frames` in each config; one noise draw, output equal to one-shot): WaveGlow is
  inverted flow by flow, each coupling on windows of 512 frames plus its own receptive field (255 grouped
  steps each side, about 3% extra work) with the conditioning of each window upsampled from only the frames
  it needs, so only audio-sized tensors span the utterance; HiFi-GAN runs windows of 512 frames plus its
  receptive field (16 frames each side, from the layer geometry and checked against autograd); FloWaveNet
  and the Parallel WaveNet student run whole-model windows with their receptive field as context.
- **WaveNet sampling**: the conditioning of every layer projected once per block of 2048 steps (bias
  folded in; `2048 // batch`, at least 256, for a batch, so a block's conditioning stays near 100 MB),
  made by one product straight in the loop's `[steps, batch, layers, gate]` layout (until 2026-12-07 the
  `[batch, layers * gate, steps]` projection was copied transposed: a quarter of the time at batch 8),
  ring buffers preallocated, random draws pre-drawn from the `torch.Generator`, and the whole
  loop (front conv, layers, head, sampling) compiled C on CPU float32 (`zoo_plugins.wavenet.kernel`,
  built at install, dispatched on the CPU's features; a TorchScript step otherwise and on GPU). In the compiled
  loop a dilated tap that reaches `o >= 2` steps back already has its inputs for the next `m = min(o, 64)`
  steps in the ring buffer, so its products for those steps are made in one pass over its weights: they
  are read from memory once per `m` steps instead of every step. The weights are packed in column tiles
  of 64 so that each product streams its tiles once with the 64 outputs in registers (the same sums, in
  the same order, as a row-by-row `y += x[i] * W[i]`, which loads and stores `y` for every row): about
  1.7x the read rate of that form in isolation, 1.2x on the whole loop (LJSpeech config: 2.73x -> 3.22x
  the reference). With more than one torch thread the loop shares every product's column tiles among
  that many threads of its own (a barrier twice per layer where a whole vector is the next input; each
  output made by one thread with the same sums, so the samples are bit-identical for any thread count):
  on both cores the LJSpeech config reads its weights at about 1.7-1.8x the one-core rate (in-process,
  same weights: 216-225 -> 370-388 samples/s; 530 in the comparison run, on a faster moment of the
  machine), while r9y9's loop gains nothing from the second core (60-83 samples/s at 2 threads against
  65 at 1, varying with the machine), so the 2-thread ratio is 6.4x (1 thread: 3.3x). Since 2026-12-07 the
  streamed matrices sit in transparent huge pages (`zoo.kernels.native.huge_page_copies`; with 4 KiB pages every
  4 KiB of the 56 MB read per sample is a TLB miss), a past tap's products take three input vectors per
  32-column half of each weight row (AVX2 FMA, twelve accumulators; one vector at a time read the 128 KB
  tile from L2 once per vector), and the last layer's residual 1x1, whose output nothing reads, is skipped.
  All three keep the sums and their order, so the samples are bit-identical. In-process A/Bs on the AVX2
  EPYC of 2026-12-07, 1 thread: huge pages 252 -> 285 samples/s, blocked past taps 281 -> 293 (medians of
  6-8 interleaved rounds; on 2 threads huge pages gave +4%). An earlier try at register blocking (4 inputs
  x 16 outputs, on the AVX-512 machine) had shown no gain. Later on 2026-12-07 (AVX-512 EPYC): a batch's
  items go through the same three-vector product (the same sums again), and the gate runs vectorised
  (`zoo/kernels/csrc/zoo_math.h`, an exp in plain arithmetic where libm's `tanhf`/`expf` were scalar
  calls); with the time-major conditioning, in one process, 1024 steps, random weights: 1 thread batch 1
  471 -> 546 samples/s and batch 8 737 -> 1167; 2 threads batch 8 1325 -> 1959 (single runs vary by
  about 15%). Batch 8 then did about 55 GFLOP/s on one core, half the FMA peak. Since 2026-12-07 evening the
  AVX-512 build has its own tile kernels (`wavenet_tiles.h`, `zmm_block`): eight vectors share each
  32-column half of a weight row in 16 zmm accumulators with `x` broadcast into the FMAs, a remainder of
  one to six takes all 64 columns at once, bfloat16 weights are widened as even and odd columns (one
  shift, one mask, no shuffles), and the first group over a tile prefetches the next one into L2 (from
  three vectors on; for one or two it measured slower). The same sums in the same order (tested: batches
  of 2, 7, 8 and 17 equal each item alone, float32 and bfloat16 weights, every ISA variant). In-process,
  1024 steps, this machine varying 15-30% between runs: 1 thread batch 8 1134 -> 1452-1597 samples/s,
  bfloat16 weights at batch 1 791 -> 1006-1049; 2 threads batch 8 1857 -> 2306-2396. A batch is bound by
  arithmetic, not by reading the weights: one sample is 49.0 MFLOP (two per weight the step multiplies),
  so the float32 matmul peak on two cores (178-198 GFLOP/s) allows at most 3,600-4,000 samples/s.
  Since the night of 2026-12-07 the last tile of each product also prefetches the first tile of the product
  the thread runs next (the next tap reading this step's inputs, the skip, residual or head 1x1): perf had
  put the hottest instructions on the weight loads of each layer's first tiles. The same sums. Batch 8,
  processes interleaved, 1024 steps: 2 threads 2,288-2,514 -> 2,620-3,063 samples/s, 1 thread 1,515-1,567
  -> 1,659-1,697 (batch 1 takes no software prefetch and is unchanged). How far batch 8 is from batch 1
  depends on the spell the batch-1 run falls in: that loop is bound by memory, which this shared host
  delivers unevenly (the same batch-1 loop ran 590 and 1,150-1,220 samples/s on 2 threads within the day,
  the read-bandwidth measure 34-70 GB/s), so `wavenet_sampling.py` now times batch 1, batch 8 and bfloat16
  in interleaved rounds. In its 2026-12-07 night run batch 1 made 1,198 samples/s (67 GB/s of weights: part
  of them stays in the 32 MB L3), which puts the compute ceiling at 3.37x batch 1: the issue's 5x target is
  above what any batch-8 loop can do on this machine; ours runs at 2.14x, 64% of that ceiling.
- **WaveGlow in bfloat16** (2026-12-07 night): its linear head folded into every skip conv leaves skip products
  of 8, 6 or 4 columns, too narrow for the bfloat16 tiles; they were torch float32 products at about 15 GFLOP/s
  (8% of the dilated convs' time) and now run on the kernel's float32 tiles with the columns zero-padded to 16
  (float32 sums of the float32 gate, as before). The packs of those folds were remade on every call (the
  head's weight was passed as a fresh view, which no kept pack matched) and are now kept; the flows share one
  time-major copy of the conditioning. 2 s, old and new in interleaved processes: 2 threads 2.31 -> 2.17-2.22
  s, 1 thread within noise (4.06-4.28 -> 4.12-4.15 s); the convs then make about 90% of the time, at the
  bfloat16 peak. Its quality row was measured again (the same scores to four digits).
- **FloWaveNet's conditioning in bfloat16**: each half of a block's conditioning is rounded once into a
  time-major bfloat16 copy that the three flows reading it share (`gated_infer.time_major_cond`); each
  flow's net made its own transposing copy before (6 per block). Same output bits; 2 s, 2 threads,
  in-process A/B, median of 4: 2.41 -> 2.33 s.
- **The bfloat16 flows, 2026-12-07 late evening** (each measured 2 s, in one process, A/B or before/after):
  - *Casts under `torch.inference_mode`*: parameters made there are inference tensors, which have no version
    counter, so every kept pack of the kernels was made again on every call. `compare_reference.py` casts its
    bfloat16 copies under inference mode, so its bfloat16 rows until this run timed that (WaveGlow 1 thread
    4.25 s against 3.90 s for the same model cast outside); a user loading there paid the same. A `Vocoder`
    now replaces such tensors by ordinary ones when it is cast or prepared.
  - *Conv and gate in one pass* (`tapconv.conv_gate`): the dilated conv's outputs are packed in 64-column
    panels of 32 tanh-half and the matching 32 sigmoid-half columns, so each register tile stores the gate
    (bfloat16, and float32 where a float32 skip product reads it) instead of `h`, which is never written or
    read back (FloWaveNet's first block wrote and read 45 MB per layer, page-faulting 66,000 fresh pages per
    call). The conditioning product joins the taps' sums in the same call (`conv_taps(plus=...)`). Same bits.
    FloWaveNet 1 thread 4.26 -> 4.02 s, 2 threads 2.27 -> 2.14 s; WaveGlow 3.92 -> 3.90 s, 2.07 -> 2.02 s.
  - *Prefetch in the tiles*: each tile prefetches the input rows and output lines of the next; past the L2 the
    tiles waited on both (a 256 -> 256 1x1 over 22,016 rows ran at 169-175 GFLOP/s against 216-219 over 1,376
    rows; now 191-214 at every size, 1 thread; float32 89 -> 110). FloWaveNet 4.30 -> 4.08 s, WaveGlow 4.13 ->
    3.93 s. The kernel's 256 x 3 + 640 -> 512 product runs at 211-217 GFLOP/s on one core, against 227-231 for
    a loop of independent `vdpbf16ps` on registers alone: the bfloat16 convs are within 10% of the hardware.
  - *WaveGlow's upsampler* (the transposed conv, 80 channels, kernel 1024, stride 256) is one batched matrix
    product over the 4 frames that reach each sample (`TransposedConvUpsampler`): torch's `conv_transpose1d`
    took 106 ms (float32) / 71 ms (bfloat16) for 2 s on 1 thread, the product 26 / 15 ms.
- At batch 1 the published 24-layer LJSpeech WaveNet reads about 99 MB of float32 weights per sample in
  r9y9's loop: every tap, the conditioning 1x1, and the residual and skip convs of 24 layers. Ours reads
  48.0 MB every step (the taps reaching 0 or 1 steps back, the residual and skip convs, the head) and
  8.2 MB of past taps per sample amortised (`zoo_plugins.wavenet.kernel.weight_bytes_per_sample`). That
  is 56.2 MB per sample, more than the caches hold, so both loops are bound by memory bandwidth. Their
  ratio is far below the small configuration's, where r9y9's loop is bound by per-operation overhead. The
  bandwidth table above measures the consequence on one machine in one run. The read bandwidth divided by
  56.2 MB bounds any float32 loop that reads each weight once per sample. On the AVX2 EPYC that bound is
  4.3x r9y9 on 1 thread and 7.5x on 2 threads, and our loop reaches 79% and 72% of it (3.4x and 5.4x).
  10x would need about 2.3x (1 thread) or 1.3x (2 threads) more bandwidth than the machine delivers.
  Alternatively, it would need fewer bytes per sample: bfloat16 weights would halve them, but then the
  samples would not be identical to the reference's.
  A microbenchmark read a cyclic buffer at 55-60 GB/s up to 12 MB and at 21 GB/s for 48 MB. Reading part
  of the weights with non-temporal prefetch, so that the rest would stay in the 32 MB L3, did not help (on
  both machines). On the AVX-512 machine of 2026-12-04, the code before these changes reached 389
  samples/s on 1 thread (4.36x r9y9's 89) and 615-671 on 2 (8.59-8.72x r9y9's 72-77, in two runs). Its
  bandwidth was not recorded.
- **Griffin-Lim** runs long mels in windows of 256 frames plus 106 frames of context on each side
  (`GriffinLim.context_frames`). Each iteration's inverse STFT and STFT spread a change by at most
  `ceil(n_fft / hop) - 1` frames, and the phase starts at zero rather than at random. So after 32
  iterations a frame depends only on the frames within that reach, and the windows reproduce the one-shot
  output bit for bit (tests check this and show that a shorter context differs). A mel of at most one
  window (468 frames, 5.4 s) runs in one piece. Longer ones cost about 1.8x the one-shot arithmetic:
  Griffin-Lim's state per frame (several complex spectra of 513 bins) is much larger than the mel's.
  The window size is set so that the peak at 60 s, one window plus the 5.3 MiB of audio returned, stays
  within 1.5x of a one-shot 5 s call. Before windowing, the 60 s peak was 158 MiB against 13 MiB at 5 s
  (11.9x).
- **How far float32 can go**: WaveGlow at 256 channels does about 448 GFLOP per second of audio by the
  reference's count; the roofline table divides that count by each side's time, so "ours GFLOP/s" above
  the matmul peak means fewer FLOPs, not faster kernels (ours: about 300 GFLOP, the `end` conv folded into
  the skip convs and the dilated convs by Winograd). The best float32 matmul rate of this core was 84
  GFLOP/s at 12:03 and 65-67 GFLOP/s at 17:27 on the same day (the shared host runs slower at times), so
  absolute times and the roofline's ceiling move with the machine; only the interleaved ratios compare
  like with like. Before Winograd, in-process A/B runs of two versions of the direct time-major code gave
  equal WaveGlow times while its ratio to NVIDIA moved between 1.40x and 1.28x from run to run: the
  machine, not the code. The reference FloWaveNet's time varied the most (40.8-52.1 s for 5 s in one day's
  runs).
- **HiFi-GAN** on CPU runs time-major without autograd (`HiFiGAN.generate_time_major`, taken by `vocode`):
  every activation is a `[T, C]` buffer with zero rows for the padding, the residual updates accumulate in
  place, the three blocks of a stage share the LeakyReLU of their input, and the transposed convs are
  polyphase (one product per tap gives `rate` output rows in time order). From 128 channels (the first two
  stages of V1, most of its arithmetic) the residual blocks' convs take their taps three at a time through
  Winograd F(4, 3) (a 7-tap conv is two 3-tap groups plus one direct tap, an 11-tap one three groups plus
  two: 12 instead of 21 tap-products per set of blocks). Until 2026-12-08 an AVX2 CPU ran every conv as one
  torch product per tap on shifted row ranges (`zoo.kernels.timemajor`; 1.56x the reference on one AVX2 machine,
  whose oneDNN convolutions ran below the matmul peak at these widths, 1.15x on another); since then it runs
  the compiled kernel's AVX2 tiles (below, "On AVX2 CPUs"). On this AVX-512 machine oneDNN's convolutions run at the
  float32 peak (about 90 GFLOP/s, every width), and the per-tap products, which write each conv's output
  once per tap, tied with them (0.95-0.99x). So every conv now runs on `zoo.kernels.tapconv`, a small compiled
  kernel (built at install for each ISA level, `zoo info --kernels`): tiles of 6 rows x 64 columns (12 x 32 for
  narrower outputs) keep all the taps' sums in registers and store once (or add once, for a residual
  update); its Winograd F(4, 3) does the input transform, the six products and the output transform on
  blocks of 48 tiles that stay in L2, where `zoo.kernels.timemajor` made a pass over memory for every transform
  step. On 1 thread, 5 s in-process: 3.26 s with torch's products, 2.38 s on the kernel.
- **bfloat16** (HiFi-GAN): rounding the convs' outputs to bfloat16 is what costs quality. HiFi-GAN V1 run
  all in bfloat16 (`model.bfloat16()` through torch, or autocast on the reference) measured 1.117 against
  1.096 MR-STFT on eval-lj (+1.9%); rounding only the convs' inputs and weights left it at 1.096, and
  rounding the returned audio alone cost +1.3%. The bfloat16 path therefore keeps conv inputs and weights
  in bfloat16, sums every conv in float32 (`vdpbf16ps`, about 216 GFLOP/s on one core against about 96 for
  float32 products), keeps the residual stream in float32 and returns float32 audio (`Vocoder.audio_dtype`
  is at least float32 for every model). torch has no bfloat16 x bfloat16 -> float32 product on CPU
  (`mm.dtype` is CUDA-only; oneDNN's fused conv+sum refuses a float32 accumulator), hence the kernel. Its
  Winograd transforms run in float32 and round `B^T d` and the transformed filters to bfloat16: 10x the
  error of a direct bfloat16 conv per product, and still no measurable cost (MR-STFT below). Without AVX-512
  BF16 the same kernel runs in plain C (correct, slower: built here without AVX-512 it took 2.4 s per
  second of audio on 1 thread, about 3x float32, where torch's bfloat16 took 34.5 s on the AVX2-only
  machine); without a compiler a bfloat16 model falls back to torch's bfloat16 convs.
- Not done: CUDA graphs and half precision for the autoregressive loop on GPU (no GPU was available to
  test them), `torch.compile` (measured on the gate: no gain over the one-sigmoid form on this CPU).
"""


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _threads(compare: dict) -> int | str:
    return compare.get("machine", {}).get("threads", "?")


def _ceiling_runs() -> list[tuple[dict, dict]]:
    """``(run, row)`` of each ``wavenet_ceiling`` run found (1 and 2 threads)."""
    runs = [_load(f"wavenet_ceiling_{n}") for n in CEILING_THREADS]
    return [(run, row) for run in runs if run for row in run.get("rows", []) if "ceiling" in row
            and row.get("dtype", "float32") == "float32"]


def method() -> list[str]:
    """The page's section on how the numbers are made (the bfloat16 tolerances from ``BF16_TOLERANCES``)."""
    tolerances = "; ".join(f"{PARALLEL[k]} {t.rel_rms:g} and {t.max_abs:g}" for k, t in BF16_TOLERANCES.items())
    return ["## Method", "",
            "- **Timing** (`benchmarks/compare_reference.py`): every row, the WaveNet rows included, calls each "
            "side once untimed (the first call compiles, faults pages in and fills caches), then times `--runs` "
            "interleaved runs (reference, ours, reference, ...) and reports the median of each side; the JSON "
            "keeps every run's time. (Until 2026-12-07 each WaveNet side was timed once without a warm-up, "
            "which let the small WaveNet's ratio swing from 59x to 112x between runs.)",
            "- **float32 rows** must equal the reference within a max abs difference of 1e-4 on shared noise or "
            "uniform draws.",
            "- **bfloat16 rows** (our model in bfloat16 against the float32 reference, same input and draws) are "
            "checked against a tolerance per model (`benchmarks/benchcheck.py`, `BF16_TOLERANCES`): the RMS of "
            "the difference relative to the reference output's, and the max abs difference, each set at a few "
            "times the rounding cost measured for that model's path and far below what a broken path gives "
            f"(relative RMS and max abs: {tolerances}). A row outside its tolerance is marked FAILED and the "
            "script exits 1.",
            "- **WaveNet rows** print the read-bandwidth ceiling beside the LJSpeech size: the weight bytes our "
            "loop reads per sample and the read bandwidth measured on the same threads, untimed, before each of "
            "our timed runs give the most samples per second a float32 loop reading every weight once per sample "
            "can make, and our share of it (the median over our runs of each against the bandwidth measured just "
            "before it: this shared machine's bandwidth moves by a third within minutes). The small size's "
            "weights stay in cache: no such ceiling applies.",
            "- **Machine**: each run records the CPU's flags (the vector extensions that choose the compiled "
            "kernels' and torch's code: `avx2`, `avx512f`, `avx512_bf16`, `amx_*` ...) and the compiled kernel "
            "path each model and dtype took (`zoo.kernels.native`, as `zoo info --kernels` prints it); each "
            "comparison row records its own.",
            "- **Targets**: issue 30's targets, checked from these results by `benchcheck.targets`: met, not met, "
            "or not measured (no result for it, or it does not apply to this CPU, as the bfloat16 speed target "
            "without AVX-512 BF16). `python benchmarks/performance.py --render-only` prints them.", ""]


def _compare_runs(folder: Path | None = None) -> dict[int, dict]:
    """One ``compare_reference.py`` result per thread count in ``folder`` (the results): ``compare_threads<n>.json``,
    and the older ``compare.json`` (whatever its thread count); the most recent run of each thread count wins."""
    folder = RESULTS if folder is None else folder
    found: dict[int, dict] = {}
    paths = sorted(folder.glob("compare_threads*.json")) + [folder / "compare.json"]
    for path in paths:
        if not path.exists():
            continue
        run = json.loads(path.read_text())
        n = run.get("machine", {}).get("threads")
        newer = n not in found or run["machine"].get("date", "") > found[n]["machine"].get("date", "")
        if isinstance(n, int) and newer:  # dates are "YYYY-MM-DD HH:MM:SS": their text order is their order
            found[n] = run
    return dict(sorted(found.items()))


def _targets(compares: dict[int, dict], cond: dict, memory: dict | None, wavenet: dict | None,
             quality: dict | None) -> list[Target]:
    """Issue 30's targets (``benchcheck.targets``) from the results found."""
    ceilings = {_threads(run): run for run in (_load(f"wavenet_ceiling_{n}") for n in CEILING_THREADS) if run}
    cpu = cond.get("cpu_flags")
    if cpu is None:  # results from before the flags were recorded: the comparison's own machine record
        cpu = next((run["machine"]["simd"] for run in compares.values() if "simd" in run.get("machine", {})), None)
    return targets(compares, cpu=cpu, ceilings=ceilings, wavenet=wavenet, memory=memory, quality=quality)


def _target_table(checked: list[Target]) -> list[str]:
    """The targets as a table: each with what it needs, what was measured and its verdict."""
    mark = {MET: "met", NOT_MEASURED: "not measured"}
    return ["| target | needed | measured | |", "|---|---|---|---|",
            *[f"| {t.target} | {t.needed} | {t.measured} | {mark.get(t.verdict, '**' + t.verdict + '**')} |"
              for t in checked], ""]


def _target_lines(checked: list[Target]) -> list[str]:
    if not checked:
        return []
    count = {v: sum(t.verdict == v for t in checked) for v in {t.verdict for t in checked}}
    summary = ", ".join(f"{n} {v}" for v, n in sorted(count.items()))
    return ["## Targets (issue 30)", "", f"Checked by `benchmarks/benchcheck.py` from the results below: {summary}.",
            "", *_target_table(checked)]


def _compare_tables(compares: dict[int, dict], heading: str = "##") -> list[str]:
    """A table per thread count of ``compare_reference.py`` results, each under a ``heading`` title."""
    out: list[str] = []
    for compare in compares.values():
        when = compare.get("machine", {}).get("date", "?")
        out += [f"{heading} Ours against the reference implementations, {_threads(compare)} thread(s) "
                "(`benchmarks/compare_reference.py`)", "",
                f"Same weights (the reference's seeded state dict through our converter), same input, batch 1, "
                f"{compare['seconds']:g} s of audio, {compare.get('runs', '?')} interleaved runs (median) after a "
                f"warm-up, {compare.get('clock', 'wall')} clock, {_threads(compare)} torch thread(s) for both "
                f"sides (finished {when}). Outputs are compared on shared noise or shared "
                f"uniform draws (max abs difference; float32 rows must be at most {compare.get('atol', 1e-4):g}, "
                "bfloat16 rows within their model's tolerance, `benchcheck.BF16_TOLERANCES`).", "",
                "| model | dtype | reference (s) | ours (s) | speed-up | max abs diff | kernel path | note |",
                "|---|---|---|---|---|---|---|---|"]
        for r in compare["rows"]:
            note = ""
            if "extrapolated_from_samples" in r:
                note = (f"timed on {r['extrapolated_from_samples']} samples, extrapolated "
                        f"({_fmt(r['ref_samples_per_s'], 0)} vs {_fmt(r['ours_samples_per_s'], 0)} samples/s)")
            elif "ours_samples_per_s" in r:
                note = f"{_fmt(r['ref_samples_per_s'], 0)} vs {_fmt(r['ours_samples_per_s'], 0)} samples/s"
            if r["dtype"] == "bfloat16":
                note = (f"our bfloat16 model vs the float32 reference: {r['check']}" if "bf16_ok" in r else
                        "our bfloat16 model vs the float32 reference (difference reported, not checked)")
            if "ceiling_samples_per_s" in r:
                note += (f"; read-bandwidth ceiling {_fmt(r['ceiling_samples_per_s'], 0)} samples/s, ours at "
                         f"{ceiling_share(r):.0%} of it")
            if len(r.get("ours_runs_s", [])) > 1 and "reference_runs_s" in r:
                note += f"; timed runs {run_range(r['reference_runs_s'])} vs {run_range(r['ours_runs_s'])} s"
            if r.get("remeasured"):  # a row run again alone after a change (conditions.json says why)
                note += f"; measured again {r['remeasured']}"
            elif len(r.get("ours_runs_s", [])) > 1 and "float32_runs_s" in r:  # timed against our float32 loop
                note += (f"; {r['vs_float32']:.2f}x our float32 loop (timed runs {run_range(r['float32_runs_s'])} "
                         f"vs {run_range(r['ours_runs_s'])} s)")
            out.append(f"| {r['model']} | {r['dtype']} | {_fmt(r['reference_s'])} | {_fmt(r['ours_s'])} | "
                       f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | {r.get('kernel_path', 'not recorded')} | "
                       f"{note.removeprefix('; ')} |")
        out.append("")
    return out


def _other_cpus() -> list[str]:
    """A section per subfolder of the results holding comparison runs made on a CPU of another class than the
    page's (on that machine, ``compare_reference.py --json <results>/<folder>/compare_threads<n>.json``, and
    optionally ``--only wavenet-ljspeech --json <results>/<folder>/wavenet_ceiling_<n>.json``): its machine,
    the float32 and WaveNet bandwidth targets checked on it (the bfloat16 speed targets need AVX-512 BF16) and
    its tables."""
    out: list[str] = []
    for folder in sorted(p for p in RESULTS.iterdir() if p.is_dir() and any(p.glob("compare_threads*.json"))):
        compares = _compare_runs(folder)
        ceilings = {_threads(run): run for run in (json.loads(path.read_text()) for path in
                                                    sorted(folder.glob("wavenet_ceiling_*.json")))}
        machine = next(iter(compares.values()))["machine"]
        flags = machine.get("simd")
        wanted = (" float32 vs ", "read-bandwidth ceiling", "bfloat16 weights vs our float32 loop, batch 1,")
        checked = [t for t in targets(compares, cpu=flags, ceilings=ceilings)
                   if any(w in t.target for w in wanted) and (ceilings or " float32 vs " in t.target)]
        met = sum(t.verdict == MET for t in checked)
        out += [f"## On another class of CPU: `{folder.name}` (`benchmarks/results/{folder.name}/`)", "",
                f"Comparisons on another machine, {machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores; "
                f"vector extensions {', '.join(flags) if flags else 'not recorded'}; "
                f"torch {machine.get('torch', '?')}), "
                "another class of CPU than the rest of this page, where the compiled kernels run another variant "
                f"(`tapconv`: {machine.get('kernels', {}).get('tapconv', 'not recorded')}). Issue 30's targets "
                f"that apply to it: {met} of {len(checked)} met.", "", *_target_table(checked)]
        out += _compare_tables(compares, "###")
        out += _compare_tables(ceilings, "###")
    return out


def render() -> str:
    cond = _load("conditions") or {}
    wavenet, memory = _load("wavenet"), _load("memory")
    compares = _compare_runs()
    roofline, glibc = _load("roofline"), _load("memory_glibc") or {}
    length, batch = _load("length"), _load("batch")
    machine = next((r["machine"] for r in (*compares.values(), memory, length, batch) if r and "machine" in r), {})
    out = ["# Performance", "",
           "Generated by `python benchmarks/performance.py --ref-dir DIR` from the JSON results in "
           "`benchmarks/results/` (every table below; do not edit by hand). Reference implementations are "
           "cloned under `DIR` at the commits of `../shared/parity/*/reference.json` and never committed.", ""]
    out += method()
    out += ["## Conditions", "",
            f"- machine: {machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores; "
            f"torch {machine.get('torch', '?')}, torchaudio {machine.get('torchaudio', '?')}, "
            f"Python {machine.get('python', '?')}, vocoder-zoo {machine.get('vocoder_zoo', '?')}",
            f"- torch threads: {', '.join(map(str, compares)) or machine.get('threads', '?')} (each table names "
            f"its own); run {cond.get('started', '?')} to "
            f"{cond.get('finished', '?')}",
            f"- load average (1/5/15 min) at start / end: {_loads(cond.get('load_average_start'))} / "
            f"{_loads(cond.get('load_average_end'))}"]
    flags = cond.get("cpu_flags")
    if flags is not None:
        out.append(f"- CPU flags: {', '.join(flags) or 'none of those the kernels use'}; torch's CPU capability: "
                   f"{cond.get('torch_cpu_capability', '?')}")
    elif machine.get("simd"):
        out.append(f"- CPU flags: {', '.join(machine['simd'])} (from the comparison run's machine record)")
    if cond.get("note"):
        out.append(f"- {cond['note']}")
    jobs = cond.get("other_jobs") or []
    if jobs:
        out.append(f"- **other jobs were running** ({'; '.join(jobs)}): absolute times are upper bounds; the "
                   "speed-ups come from interleaved runs in one process")
    else:
        out.append("- no other training jobs were running")
    if cond.get("quick"):
        out.append("- **quick run** (`--quick`: short inputs, single runs): a pipeline check, not published numbers")
    out.append("")
    if cond.get("kernel_paths"):
        out += ["The compiled kernels and the path each model and dtype takes on this CPU "
                "(`zoo info --kernels`; a model and dtype not listed runs on torch alone):", "",
                *[f"- `{name}`: {summary}" for name, summary in cond.get("kernels", {}).items()], "",
                "| architecture | dtype | path |", "|---|---|---|",
                *[f"| {k['architecture']} | {k['dtype']} | {k['path']} |" for k in cond["kernel_paths"]], ""]
    quality = _load("bf16_quality")
    out += _target_lines(_targets(compares, cond, memory, wavenet, quality))
    out += _compare_tables(compares)
    out += _other_cpus()
    if roofline:
        peaks = ", ".join(f"{k} {v:,.0f}" for k, v in roofline["matmul_gflops"].items())
        bf16_peaks = ", ".join(f"{k} {v:,.0f}" for k, v in (roofline.get("bf16_product_gflops") or {}).items())
        out += ["## Against the matmul peaks (`benchmarks/roofline.py`)", "",
                f"Float32 matrix products on {roofline['threads']} thread(s): {peaks} GFLOP/s"
                + (f"; bfloat16 operands, float32 sums: {bf16_peaks} GFLOP/s" if bf16_peaks else "")
                + ". Work counted by `torch.utils.flop_counter` on the convolution path (the references' "
                "arithmetic). A ceiling is the speed-up over the float32 reference that running every FLOP at "
                "the best float32 (or bfloat16) product rate would give: a target above it cannot be met without "
                "doing less arithmetic.", "",
                "| model | GFLOP per second of audio | reference GFLOP/s | ours GFLOP/s | speed-up | ceiling | "
                "ours bfloat16 GFLOP/s | bfloat16 speed-up | bfloat16 ceiling |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in roofline["rows"]:
            bf16 = (f"{_fmt(r.get('ours_bf16_gflops'), 1)} | {_fmt(r.get('bf16_speedup'))}x | "
                    f"{_fmt(r.get('bf16_ceiling'))}x" if "bf16_ceiling" in r else "- | - | -")
            out.append(f"| {r['model']} | {r['gflop_per_audio_s']:,.0f} | {_fmt(r.get('reference_gflops'), 1)} | "
                       f"{_fmt(r.get('ours_gflops'), 1)} | {_fmt(r.get('speedup'))}x | {_fmt(r.get('ceiling'))}x | "
                       f"{bf16} |")
        out.append("")
    ceiling_runs = _ceiling_runs()
    if ceiling_runs:
        m = ceiling_runs[0][0].get("machine", {})
        out += ["## WaveNet LJSpeech sampling against the read bandwidth (`compare_reference.py --only "
                "wavenet-ljspeech`)", "",
                f"Batch 1, the published r9y9 LJSpeech size, {ceiling_runs[0][1].get('timed_samples', '?')} samples "
                f"per side with identical draws, on {m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores; "
                f"{', '.join(m.get('simd', [])) or 'vector extensions not recorded'}), finished "
                f"{m.get('date', '?')}. Our loop reads the float32 weights below once per sample (the past taps' "
                "share amortised); the read bandwidth is measured on the same threads before each of our timed runs "
                "(\"ours / ceiling\": the median over our runs of each against the bandwidth measured just before "
                "it; \"read GB/s\": the median) "
                "(`roofline.read_bandwidth`: the fastest pass of `sum` and `amax` over 256 MB in huge pages, "
                "as the loop's weights are, a DRAM rate; "
                "this CPU's last-level cache can hold part of the weights, and then the loop reads faster "
                "than it). Their quotient, the "
                "ceiling, is the most samples per second any float32 loop that reads every weight once per "
                "sample can make here; over the reference's rate it is the largest speed-up such a loop can "
                "show.", "",
                "| threads | reference samples/s | ours samples/s | speed-up | MB per sample | read GB/s | "
                "ceiling samples/s | ceiling speed-up | ours / ceiling |", "|---|---|---|---|---|---|---|---|---|"]
        for run, r in ceiling_runs:
            out.append(f"| {_threads(run)} | {_fmt(r['ref_samples_per_s'], 0)} | {_fmt(r['ours_samples_per_s'], 0)} | "
                       f"{r['speedup']:.2f}x | {r['weight_mb_per_sample']:.1f} | {r['read_gbs']:.1f} | "
                       f"{_fmt(r['ceiling_samples_per_s'], 0)} | {r['ceiling']:.2f}x | "
                       f"{ceiling_share(r):.0%} |")
        out.append("")
    out += wavenet_bf16_section([{**row, "threads": _threads(run), "clock": run.get("clock", "wall")} for run in
                                 (_load(f"wavenet_ceiling_{n}") for n in CEILING_THREADS) if run
                                 for row in run.get("rows", []) if row.get("dtype") == "bfloat16"
                                 and "vs_float32" in row], _load("wavenet_bf16_quality"))
    if wavenet:
        out += ["## WaveNet incremental sampling (`benchmarks/wavenet_sampling.py`)", "",
                f"Samples per second, {wavenet.get('threads', '?')} threads, "
                + (f"the median of {wavenet['runs']} interleaved rounds (batch 1, batch 8, bfloat16, then again: "
                   "batch 1 is bound by memory bandwidth, which this shared machine delivers unevenly; \"vs batch "
                   "1\" is the median of the per-round ratios). " if wavenet.get("runs") else
                   "one run per row, one after the other. ")
                + "\"Naive\" recomputes the network over "
                "the receptive field for every sample (not run for the bfloat16 row). The LJSpeech float32 rows "
                "also show the arithmetic they run (GFLOP/s: two FLOPs per weight per sample) and the compute "
                "ceiling, the float32 matmul peak on the same threads over one sample's FLOPs: batch 1 is bound by "
                "reading the weights, a batch reads them once per step for all its items, and no batch can sample "
                "faster than this ceiling (\"ceiling / batch 1\": the largest batch speed-up this machine allows).",
                "", "| config | weights | batch | incremental | rounds | vs batch 1 | naive | speed-up | GFLOP/s | "
                "compute ceiling (samples/s) | ceiling / batch 1 | kernel path |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in wavenet["rows"]:
            speedup = "-" if r.get("speedup") is None else f"{r['speedup']:.1f}x"
            vs = "-" if r.get("ceiling_vs_batch1") is None else f"{r['ceiling_vs_batch1']:.2f}x"
            rounds = f"{min(r['runs']):,.0f}-{max(r['runs']):,.0f}" if r.get("runs") else "-"
            vs1 = "-" if r.get("vs_batch1") is None else f"{r['vs_batch1']:.2f}x"
            out.append(f"| {r['config']} | {r.get('dtype', 'float32')} | {r['batch']} | {_fmt(r['incremental'], 0)} | "
                       f"{rounds} | {vs1} | {_fmt(r.get('naive'), 0)} | {speedup} | {_fmt(r.get('gflops'), 1)} | "
                       f"{_fmt(r.get('compute_ceiling_samples_per_s'), 0)} | {vs} | "
                       f"{r.get('kernel_path', 'not recorded')} |")
        out.append("")
    if memory:
        heap = {(r["model"], r["seconds"]): r["peak_mem_mb"] for r in glibc.get("rows", [])}
        heap_ratio = {s["model"]: s["ratio"] for s in glibc.get("summary", [])}
        out += ["## Peak memory against length (`benchmarks/memory.py`)", "",
                "Peak resident set size above the pre-call baseline for one `vocode` call, published model sizes, "
                "each point in a fresh process. Target: the longest input at most 1.5x the shortest. "
                "\"returned\" runs with `MALLOC_MMAP_THRESHOLD_=65536`, so that RSS follows the tensors "
                "actually held; \"glibc default\" keeps glibc's adaptive threshold, under which the heap "
                "keeps freed blocks and RSS counts them too. Windowed synthesis hands freed pages back between "
                "windows (`zoo.core.stream.release_freed_memory`), but within one call the heap still fragments, so "
                "in that mode even a one-shot 5 s call reads well above its \"returned\" figure and the ratio "
                "measures the allocator as much as the model.", "",
                "| model | length (s) | peak, returned (MiB) | peak, glibc default (MiB) |", "|---|---|---|---|"]
        for r in memory["rows"]:
            out.append(f"| {r['model']} | {r['seconds']:g} | {_fmt(r['peak_mem_mb'], 1)} | "
                       f"{_fmt(heap.get((r['model'], r['seconds'])), 1)} |")
        if memory.get("incomplete"):
            out += ["", f"Not measured: {memory['incomplete']}."]
        out += ["", "| model | ratio, returned | flat (<= 1.5x) | ratio, glibc default |", "|---|---|---|---|"]
        for s in memory["summary"]:
            g = heap_ratio.get(s["model"])
            out.append(f"| {s['model']} | {s['ratio']:.2f}x ({s['long_s']:g} s / {s['short_s']:g} s) | "
                       f"{'yes' if s['flat'] else '**no**'} | {'-' if g is None else f'{g:.2f}x'} |")
        out.append("")
    for title, data in (("Utterance length sweep (`zoo bench`)", length), ("Batch size sweep (`zoo bench`)", batch)):
        if not data:
            continue
        out += [f"## {title}", "", "Real-time factor is compute seconds per second of audio (lower is faster). "
                "Models without shipped weights are built at their default (published) size with random weights.",
                "", "| model | dtype | batch | length (s) | RTF | samples/s | peak MiB |",
                "|---|---|---|---|---|---|---|"]
        for r in data["results"]:
            out.append(f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['seconds']:.1f} | {r['rtf']:.3f} | "
                       f"{_fmt(r['samples_per_s'], 0)} | {_fmt(r['peak_mem_mb'], 1)} |")
        out.append("")
        if data is length and PLOT.exists():
            out += [f"![time and memory against utterance length]({PLOT.name})", ""]
    out += bf16_quality.section(quality)
    out.append(NOTES)
    return "\n".join(out)


def wavenet_bf16_section(speed: list[dict], quality: dict | None) -> list[str]:
    """The section on WaveNet's bfloat16-weight mode: its speed against our float32 loop (the ``bfloat16`` rows
    of the ``wavenet_ceiling`` runs) and its cost in teacher-forced likelihood and sampled audio
    (``wavenet_bf16_quality.py``)."""
    if not speed and not quality:
        return []
    out = ["## WaveNet with bfloat16 weights (`compare_reference.py --only wavenet-ljspeech`, "
           "`benchmarks/wavenet_bf16_quality.py`)", "",
           "`zoo.load(name, dtype=torch.bfloat16)` (or `.to(torch.bfloat16)`) samples a WaveNet with bfloat16 "
           "weights and float32 activations and sums; float32 stays the default. The compiled loop streams its "
           "matrices in bfloat16 (half the bytes per sample) and widens each weight to float32 as it loads it, "
           "summing in the float32 loop's order: its samples are bit-identical to the float32 loop's on the "
           "bfloat16-rounded weights (`tests/test_wavenet_bf16.py`, every ISA variant), so the rounding of the "
           "weights is its only cost. (AVX-512 BF16's `vdpbf16ps` would also round every layer's input to "
           "bfloat16 and sum input pairs in another order; in a micro-benchmark of the loop's tile product over "
           "105 MB of bfloat16 weights in huge pages, 1 thread, CPU clock, 2026-12-07, it took 3.9-4.0 ms per "
           "pass against the widening load's 4.2-4.3 ms and float32 weights' 7.8-8.3 ms: both read the weights "
           "at about 25 GB/s, so the loop keeps the widening load, float32 activations and the float32 "
           "summation order. The loop as a whole gains less than its weight stream: the past taps' products, "
           "made ahead from cache, cost the same per sample either way; the same size with every tap at most "
           "one step back, so that every weight streams each step, samples 1.95x faster with bfloat16 "
           "weights, 1 thread, CPU clock.)", ""]
    if speed:
        out += ["Speed, batch 1, the r9y9 LJSpeech size, timed interleaved with our float32 loop on the same "
                "draws (median of the runs). Both loops are bound by memory, which this shared host delivers "
                "unevenly: where the float32 loop gets more bandwidth, halving the bytes gains less, so the "
                "ratio moves between runs minutes apart (conditions above):", "",
                "| threads | float32 samples/s | bfloat16 samples/s | vs float32 (target >= "
                f"{speed[0].get('target_vs_float32', '?')}x) | MB per sample | read GB/s | ceiling samples/s | "
                "ours / ceiling | check |", "|---|---|---|---|---|---|---|---|---|"]
        for r in speed:
            wall = r.get("clock", "wall") == "wall"  # CPU-clock rates are not comparable with a read bandwidth
            share = (f"{r['ours_samples_per_s'] / r['ceiling_samples_per_s']:.0%}"
                     if r.get("ceiling_samples_per_s") and wall else "-")
            out.append(f"| {r.get('threads', '?')} ({r.get('clock', 'wall')} clock) | "
                       f"{_fmt(r['float32_samples_per_s'], 0)} | {_fmt(r['ours_samples_per_s'], 0)} | "
                       f"{r['vs_float32']:.2f}x | {_fmt(r.get('weight_mb_per_sample'), 1)} | "
                       f"{_fmt(r.get('read_gbs') if wall else None, 1)} | "
                       f"{_fmt(r.get('ceiling_samples_per_s') if wall else None, 0)} | {share} | "
                       f"{'ok' if r.get('bf16_ok') else 'FAILED'} |")
        out.append("")
    if quality:
        nll = quality["nll"]
        out += [f"Quality cost on eval-lj ({quality['files']} clips, `{quality['model']}`, trained weights, "
                f"{nll['samples']:,} samples): the teacher-forced negative log-likelihood per sample of the "
                "recordings given their own mel features, float32 weights against the same weights rounded to "
                "bfloat16 (float32 arithmetic, the full forward: what the mode computes; the bfloat16 "
                "sampler teacher-forced on the first "
                f"{quality['mode_check_samples']} samples of the first clip gives the rounded model's outputs "
                f"within {quality['mode_check_max_abs_diff']:.1e}).", "",
                "| weights | NLL per sample (nats) |", "|---|---|",
                f"| float32 | {nll['nll_float32']:.5f} |", f"| bfloat16 | {nll['nll_bfloat16']:.5f} |",
                f"| change | {nll['delta_nats_per_sample']:+.2e} (clips {nll['delta_min_clip']:+.2e} to "
                f"{nll['delta_max_clip']:+.2e}) |", ""]
        sampled = quality.get("sampled")
        if sampled:
            m = sampled["means"]
            out += ["Sampled audio need not match sample for sample (a rounding that moves one sample feeds "
                    "back into every later one): each clip sampled with bfloat16 weights is scored against the "
                    "float32 sample from "
                    "the same draws, next to a second float32 sample (another seed) against the first, the "
                    "spread sampling alone gives (means over the clips):", "",
                    "| against the float32 sample (seed 0) | STOI | PESQ (wb) | MR-STFT |", "|---|---|---|---|",
                    *[f"| {label} | {m[k]['stoi']:.3f} | {m[k]['pesq_wb']:.2f} | {m[k]['mr_stft']:.3f} |"
                      for k, label in (("bfloat16", "bfloat16 weights, seed 0"),
                                       ("float32_seed1", "float32, seed 1"))], ""]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref-dir", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int, default=5,
                   help="interleaved runs per comparison row and rounds of the WaveNet sampling rows (median)")
    p.add_argument("--seconds", type=float, default=5.0, help="audio per comparison row")
    p.add_argument("--skip", default="", help=f"comma-separated steps to keep from earlier runs ({','.join(STEPS)})")
    p.add_argument("--render-only", action="store_true")
    p.add_argument("--compare-threads", default=",".join(map(str, COMPARE_THREADS)),
                   help="thread counts of the comparison step (comma-separated)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON results")
    p.add_argument("--doc", type=Path, default=DOC, help="the page to write")
    args = p.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    unknown = sorted(args.skip - set(STEPS))
    if unknown:
        p.error(f"unknown steps {unknown} (steps: {', '.join(STEPS)})")
    try:
        args.compare_threads = [int(n) for n in args.compare_threads.split(",") if n]
    except ValueError:
        p.error(f"--compare-threads takes comma-separated thread counts, got {args.compare_threads!r}")
    if not args.compare_threads or min(args.compare_threads) < 1:
        p.error(f"--compare-threads needs thread counts of at least 1, got {args.compare_threads}")
    set_results(args.results, args.doc)
    if not args.render_only:
        run_steps(args)
    args.doc.write_text(render())
    print(f"wrote {args.doc}")
    cond = _load("conditions") or {}
    quality = _load("bf16_quality")
    checked = _targets(_compare_runs(), cond, _load("memory"), _load("wavenet"), quality)
    width = max((len(t.target) for t in checked), default=0)
    print("\nissue 30 targets:")
    for t in checked:
        print(f"  {t.target:<{width}}  {t.verdict.upper():<12}  {t.measured} (needed {t.needed})")
    return 0


def set_results(folder: Path, doc: Path = DOC) -> None:
    """Read and write the JSON results in ``folder`` (``--results``), and the length sweep's plot beside the
    page ``doc`` (``--doc``), so that a trial run leaves the committed ones alone."""
    global RESULTS, PLOT
    RESULTS, PLOT = folder, doc.with_name(PLOT.name)


if __name__ == "__main__":
    sys.exit(main())
