"""bfloat16's cost in quality: each model's bfloat16 output against its own float32 output on eval-lj.

For each clip of a folder (default ``<repo>/../shared/data/eval-lj``) and each model: the float32 model's mel
of the recording is vocoded by the model loaded in float32 and by the same model loaded in bfloat16
(``zoo.load(name, dtype=...)``), each with a fresh ``torch.Generator`` seeded with ``--seed``, so a
stochastic model draws the same noise in both dtypes (``zoo.core.noise`` draws it by position, in float32).
Scored with the metrics of ``../shared/QUALITY.md`` (``zoo.audio.metrics``):

* the bfloat16 output against the float32 output: STOI, wideband PESQ and MR-STFT distance (the float32
  output against itself scores STOI 1, PESQ 4.64, MR-STFT 0), and the max abs and relative RMS difference;
* each output against the recording: STOI, PESQ and MR-STFT of float32 and of bfloat16, and their change.

The issue-30 verdict of each model (``benchcheck.bf16_quality_verdict``): met when bfloat16 is within PESQ 0.1
and STOI 0.01 of its float32 output, both scored against the float32 output and as the change of the scores
against the recordings. Only models with trained weights are measured (shipped or converted, loaded
offline): a name without them is recorded as not measured, never run on random weights.

    python benchmarks/bf16_quality.py                      # the default models, 16 clips
    python benchmarks/bf16_quality.py --models hifigan.universal,wavenet.trainpm --limit 2 --json /tmp/q.json
    python benchmarks/bf16_quality.py --render-only        # rewrite the docs/performance.md section from the JSON

The JSON (default ``benchmarks/results/bf16_quality.json``) records the run's CPU flags, torch's CPU
capability and the compiled kernel path each model and dtype took; the section "bfloat16 quality cost" of
``docs/performance.md`` is rendered from it (:func:`section`, also used by ``performance.py``) and replaced in
the page without touching the rest of it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchcheck import MET, PESQ_DELTA, STOI_DELTA, bf16_quality_verdict, read_cpu_flags  # noqa: E402

ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "eval-lj"
RESULT = HERE / "results" / "bf16_quality.json"
DOC = ROOT / "docs" / "performance.md"
#: Every parallel model with trained weights the zoo ships or converts (waveglow.nvidia is converted from
#: NVIDIA's checkpoint on first use: measured where it is cached, else recorded as not measured).
DEFAULT_MODELS = ("hifigan.ljspeech", "hifigan.universal", "waveglow.nvidia", "waveglow.trainpm",
                  "flowavenet.trainpm", "parallel_wavenet.trainpm")
HEADING = "## bfloat16 quality cost (`benchmarks/bf16_quality.py`)"
#: The page's section that follows this one where the page has no such section yet.
BEFORE = "## What the fast paths are"
#: Per-clip keys averaged over the clips (the ``*_vs_f32`` ones score bfloat16 against float32's output).
MEAN_KEYS = ("stoi_vs_f32", "pesq_vs_f32", "mr_stft_vs_f32", "rel_rms_vs_f32", "stoi_f32", "stoi_bf16",
             "pesq_f32", "pesq_bf16", "mr_stft_f32", "mr_stft_bf16")


def clip_scores(f32: Any, bf16: Any, recording: Any, sample_rate: int) -> dict[str, float | None]:
    """The scores of one clip: ``bf16`` (the bfloat16 model's audio) against ``f32`` (the float32 model's, same
    mel and noise), and each of them against ``recording`` (cut to the shorter length). 1-D float tensors.
    ``pesq_vs_f32`` is ``None`` where PESQ cannot score against the float32 output: its voice detector finds
    no speech there (a quiet noise-like output), so it scores 1.0 even against itself."""
    import torch

    from zoo.audio.metrics import PESQ_MAX, mr_stft_distance, pesq_wb, stoi

    if f32.shape != bf16.shape:
        raise ValueError(f"the float32 and bfloat16 outputs differ in shape: {tuple(f32.shape)} vs "
                         f"{tuple(bf16.shape)}")
    f32, bf16, recording = f32.float(), bf16.float(), recording.float()
    diff = (bf16 - f32).double()
    norm = float(torch.linalg.vector_norm(f32.double()))
    rel = float(torch.linalg.vector_norm(diff)) / norm if norm else (0.0 if not diff.any() else math.inf)
    pesq_vs_f32: float | None = pesq_wb(bf16, f32, sample_rate)
    if pesq_vs_f32 == 1.0 and pesq_wb(f32, f32, sample_rate) < PESQ_MAX - 0.01:
        pesq_vs_f32 = None  # PESQ finds no speech in the float32 output (it scores 1.0 against itself too)
    return {
        "stoi_vs_f32": stoi(bf16, f32, sample_rate), "pesq_vs_f32": pesq_vs_f32,
        "mr_stft_vs_f32": mr_stft_distance(bf16, f32), "max_abs_vs_f32": float(diff.abs().max()),
        "rel_rms_vs_f32": rel,
        "stoi_f32": stoi(f32, recording, sample_rate), "stoi_bf16": stoi(bf16, recording, sample_rate),
        "pesq_f32": pesq_wb(f32, recording, sample_rate), "pesq_bf16": pesq_wb(bf16, recording, sample_rate),
        "mr_stft_f32": mr_stft_distance(f32, recording), "mr_stft_bf16": mr_stft_distance(bf16, recording),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of :data:`MEAN_KEYS` over the clips (PESQ against the float32 output over the clips it can score,
    ``pesq_vs_f32_unscored`` counts the others; ``None`` if none), the change of each score against the
    recordings (``*_delta``: bfloat16's mean less float32's), the largest max abs difference and the worst
    clip's STOI and PESQ against float32's output."""
    if not rows:
        raise ValueError("no clips to summarize")
    out: dict[str, Any] = {k: statistics.mean(r[k] for r in rows) for k in MEAN_KEYS if k != "pesq_vs_f32"}
    scored = [r["pesq_vs_f32"] for r in rows if r["pesq_vs_f32"] is not None]
    out["pesq_vs_f32"] = statistics.mean(scored) if scored else None
    out["pesq_vs_f32_unscored"] = len(rows) - len(scored)
    for metric in ("stoi", "pesq", "mr_stft"):
        out[f"{metric}_delta"] = out[f"{metric}_bf16"] - out[f"{metric}_f32"]
    out["max_abs_vs_f32"] = max(r["max_abs_vs_f32"] for r in rows)
    out["worst_stoi_vs_f32"] = min(r["stoi_vs_f32"] for r in rows)
    out["worst_pesq_vs_f32"] = min(scored, default=None)
    return out


def _first_clause(exc: Exception) -> str:
    """The first clause of an error's message (up to its first ``": "`` or ``". "``), for a table cell."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    cut = min((i for i in (text.find(": "), text.find(". ")) if i > 0), default=len(text))
    return text[:cut].rstrip(".")


def weights_of(name: str) -> str:
    """What trained weights a model card names: a seed model trained here, or published weights."""
    import zoo

    card = zoo.card(name)
    if "seed-model" in card.tags:
        return "seed (trained on train-pm)"
    return f"published ({card.name})"


def measure_model(name: str, files: list[Path], *, seed: int = 0, seconds: float | None = None,
                  offline: bool = True) -> dict[str, Any]:
    """One model's row: :func:`summarize` of :func:`clip_scores` over ``files`` (each cut to its first
    ``seconds`` if given), with the kernel path of each dtype, or ``{"model", "skipped"}`` where the model
    has no trained weights here (not a card of shipped or converted weights, or not cached offline)."""
    import torch

    import zoo
    from zoo.registry.plugins import kernel_path
    from zoo.train.data import load_audio

    try:
        name = zoo.card(name).name  # an architecture's name stands for its default model
    except zoo.RegistryError:
        return {"model": name, "skipped": "no trained weights (no model card): random weights are not measured"}
    try:
        f32 = zoo.load(name, dtype="float32", offline=offline)
        bf16 = zoo.load(name, dtype="bfloat16", offline=offline)
    except Exception as exc:  # noqa: BLE001 - weights that are not here are reported, not fatal
        return {"model": name, "skipped": f"trained weights not available here ({_first_clause(exc)})"}
    rows = []
    for path in files:
        recording = load_audio(path, f32.sample_rate)
        if seconds is not None:
            recording = recording[: int(seconds * f32.sample_rate)]
        mel = f32.mel(recording)
        with torch.inference_mode():
            a = f32.vocode(mel, generator=torch.Generator().manual_seed(seed))[0]
            b = bf16.vocode(mel, generator=torch.Generator().manual_seed(seed))[0]
        rows.append({"file": path.name, **clip_scores(a, b, recording, f32.sample_rate)})
        r = rows[-1]
        pesq = "not scorable" if r["pesq_vs_f32"] is None else f"{r['pesq_vs_f32']:.3f}"
        print(f"  {name} {path.name}: STOI {r['stoi_vs_f32']:.4f}, PESQ {pesq} vs float32; max abs "
              f"{r['max_abs_vs_f32']:.2e}", flush=True)
    arch = f32.architecture
    return {"model": name, "architecture": arch, "weights": weights_of(name), "files": len(rows),
            "kernel_path": {dt: kernel_path(arch, dt) for dt in ("float32", "bfloat16")},
            **summarize(rows), "per_file": rows}


def machine_record() -> dict[str, Any]:
    """The machine (``zoo.runtime.bench.machine_info``), its CPU flags (``benchcheck.read_cpu_flags``),
    torch's CPU capability and each compiled kernel's state."""
    import torch

    import zoo
    from zoo.kernels import native
    from zoo.runtime.bench import machine_info

    zoo.list_architectures()  # load the plugins: their kernels register with zoo.kernels.native
    return {"machine": machine_info(), "cpu_flags": read_cpu_flags(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "kernels": {k.name: k.summary() for k in native.statuses()}}


# ------------------------------------------------------------------------------------------ the page section


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _pesq_cell(m: dict[str, Any]) -> str:
    n = m.get("pesq_vs_f32_unscored", 0)
    if not n:
        return _f(m["pesq_vs_f32"], 3)
    return (f"{_f(m['pesq_vs_f32'], 3)} (on {m['files'] - n} clips: PESQ finds no speech in "
            f"the float32 output of {n})")


def _row(m: dict[str, Any]) -> str:
    if "skipped" in m:
        return f"| {m['model']} | not measured: {m['skipped']} | | | | | | | | | |"
    verdict, _ = bf16_quality_verdict(m)
    mark = "met" if verdict == MET else f"**{verdict}**"
    return (f"| {m['model']} | {m['weights']} | {m['kernel_path']['bfloat16']} | {_f(m['stoi_vs_f32'], 4)} | "
            f"{_pesq_cell(m)} | {_f(m['mr_stft_vs_f32'], 3)} | {m['max_abs_vs_f32']:.1e} | "
            f"{_f(m['stoi_f32'], 4)} / {_f(m['stoi_bf16'], 4)} ({m['stoi_delta']:+.4f}) | "
            f"{_f(m['pesq_f32'], 3)} / {_f(m['pesq_bf16'], 3)} ({m['pesq_delta']:+.3f}) | "
            f"{_f(m['mr_stft_f32'], 3)} / {_f(m['mr_stft_bf16'], 3)} ({m['mr_stft_delta']:+.3f}) | {mark} |")


def section(result: dict[str, Any] | None) -> list[str]:
    """The "bfloat16 quality cost" section of ``docs/performance.md`` from a result of this script (no
    section for ``None``)."""
    if not result:
        return []
    machine = result.get("machine", {})
    flags = result.get("cpu_flags")
    measured = [m for m in result["models"] if "skipped" not in m]
    not_small = [m["model"] for m in measured if bf16_quality_verdict(m)[0] != MET]
    out = [HEADING, "",
           f"Each model's bfloat16 output against its own float32 output on the same mel and the same noise "
           f"(a fresh generator seeded {result['seed']} for each clip and dtype), {result['files']} clips of "
           f"{Path(result['data']).name}, with the metrics of the quality cards (`zoo.audio.metrics`): STOI, "
           "wideband PESQ and MR-STFT distance of the bfloat16 output scored against the float32 output (the "
           "float32 output against itself scores 1, 4.64 and 0), the largest absolute sample difference, and "
           "each dtype's STOI, PESQ and MR-STFT against the recording (float32 / bfloat16, change in "
           f"brackets). Target (issue 30): within PESQ {PESQ_DELTA:g} and STOI {STOI_DELTA:g} of the float32 "
           "output, both scored against it and as the change against the recordings "
           "(`benchcheck.bf16_quality_verdict`). Only trained weights are measured.", "",
           f"- run: `{result['command']}`, {result['date']}, {machine.get('threads', '?')} torch thread(s), on "
           f"{machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores); the machine was shared, so no "
           "times are reported (the scores do not depend on load)",
           *[f"- re-measured later: {', '.join(a['models'])} (`{a['command']}`, {a['date']}): {a['why']}"
             for a in result.get("amended", [])],
           f"- CPU flags: {', '.join(flags) if flags else 'not recorded'}; torch's CPU capability: "
           f"{result.get('torch_cpu_capability', '?')}",
           *[f"- kernel `{k}`: {v}" for k, v in result.get("kernels", {}).items()],
           f"- metric packages: {', '.join(f'{k} {v}' for k, v in result.get('versions', {}).items())}", "",
           "| model | weights | kernel path (bfloat16) | STOI vs float32 | PESQ-wb vs float32 | MR-STFT vs float32 "
           "| max abs diff | STOI vs recording | PESQ-wb vs recording | MR-STFT vs recording | target |",
           "|---|---|---|---|---|---|---|---|---|---|---|",
           *[_row(m) for m in result["models"]], ""]
    out += ["bfloat16 is opt-in only: `zoo.load` without `dtype=` gives float32 (seed weights stored in float16 "
            "included), and every command's `--dtype` (`zoo vocode`, `zoo bench`, `zoo compare`) defaults to "
            "float32 (`tests/test_bf16_quality.py` checks both)"
            + (f"; the models whose cost above is not small: {', '.join(not_small)}." if not_small else ".")]
    if any(m["kernel_path"]["bfloat16"].startswith("torch only") for m in measured if m["model"] in not_small):
        out[-1] += (f" {'Those run' if len(not_small) > 1 else 'It runs'} the whole model in torch's bfloat16 "
                    "(every layer's output rounded to 8 significant bits), where HiFi-GAN's compiled path rounds "
                    "only its convs' inputs and weights and sums in float32.")
    out += ["", "**FloWaveNet's bfloat16 is not offered as a default anywhere.** The trained seed above is small "
            "(4 blocks of 4 flows, 64 channels). At the published size (ksw0306's README: 8 blocks of 6 flows, "
            "256 channels), for which the zoo has no trained weights, the whole-model bfloat16 cast (torch's "
            "bfloat16 convs, every flow's output rounded) fails its tolerance against float32 on the same noise "
            "(`compare_reference.py` on seeded random weights, `benchcheck.BF16_TOLERANCES`: relative RMS 0.019 "
            "but max abs 0.42 on 0.5 s and 0.93 on 5 s, where 0.2 is allowed): its 48 affine flows compound "
            "each flow's rounding. With the kernel, the gated stacks now sum bfloat16 operands in float32 "
            "and keep the flow arithmetic in float32 (`zoo.kernels.gated_infer`): on the same random weights "
            "the max abs difference fell to 0.145 on 2 s (inside the tolerance; one helper's run, 2026-12-07). "
            "Its cost at that size on trained weights is unmeasured, so its bfloat16 "
            "stays an explicit opt-in for speed.", ""]
    return out


def write_section(page: str, lines: list[str]) -> str:
    """``page`` with its "bfloat16 quality cost" section (from :data:`HEADING` to the next ``## `` heading)
    replaced by ``lines``, or inserted before :data:`BEFORE` (at the end where that is missing too)."""
    text = "\n".join(lines)
    rows = page.split("\n")
    if HEADING in rows:
        start = rows.index(HEADING)
        end = next((i for i in range(start + 1, len(rows)) if rows[i].startswith("## ")), len(rows))
        return "\n".join(rows[:start] + text.split("\n") + rows[end:])
    if BEFORE in rows:
        at = rows.index(BEFORE)
        return "\n".join(rows[:at] + text.split("\n") + rows[at:])
    return page.rstrip("\n") + "\n\n" + text + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, help="use only the first N clips")
    p.add_argument("--seconds", type=float, help="cut each clip to its first SECONDS (quick checks)")
    p.add_argument("--seed", type=int, default=0, help="the noise seed of the stochastic models (both dtypes)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=RESULT, help=f"the result (default {RESULT.relative_to(ROOT)})")
    p.add_argument("--doc", type=Path, default=DOC,
                   help="the page whose 'bfloat16 quality cost' section is rewritten ('-' for none)")
    p.add_argument("--render-only", action="store_true", help="rewrite the section from --json, measure nothing")
    args = p.parse_args(argv)
    if str(args.doc) != "-" and not args.doc.is_file():
        p.error(f"--doc {args.doc}: no such page (pass '-' to write none)")
    if not args.render_only:
        import torch

        from zoo.audio.metrics import metric_versions, quality_available

        if not quality_available():
            p.error('STOI and PESQ need the quality extra: pip install -e ".[quality]"')
        files = sorted(args.data.glob("*.wav"))[: args.limit]
        if not files:
            p.error(f"no wav files in {args.data}")
        if args.threads:
            torch.set_num_threads(args.threads)
        started = datetime.datetime.now(datetime.timezone.utc)
        models = []
        for name in filter(None, args.models.split(",")):
            print(f"== {name}", flush=True)
            models.append(measure_model(name, files, seed=args.seed, seconds=args.seconds))
            if "skipped" in models[-1]:
                print(f"  not measured: {models[-1]['skipped']}", flush=True)
        result = {"command": "python benchmarks/bf16_quality.py " + shlex.join(argv if argv is not None
                                                                                 else sys.argv[1:]),
                  "date": started.isoformat(timespec="seconds"), "data": str(args.data), "files": len(files),
                  "seconds": args.seconds, "seed": args.seed, **machine_record(), "versions": metric_versions(),
                  "models": models}
        result["command"] = result["command"].strip()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    elif not args.json.is_file():
        p.error(f"--render-only needs a result of this script at {args.json}")
    else:
        result = json.loads(args.json.read_text())
    for m in result["models"]:
        if "skipped" not in m:
            verdict, text = bf16_quality_verdict(m)
            print(f"{m['model']:<28} {verdict.upper():<8} {text}")
    if str(args.doc) != "-":
        args.doc.write_text(write_section(args.doc.read_text(), section(result)))
        print(f"wrote the section '{HEADING}' of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
