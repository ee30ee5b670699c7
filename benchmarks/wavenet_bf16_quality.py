"""What WaveNet's bfloat16-weight mode costs in quality, on eval-lj (issue 30 items 2 and 4).

    python benchmarks/wavenet_bf16_quality.py [--model wavenet.trainpm] [--data ../shared/data/eval-lj]
        [--limit N] [--check-samples 2048] [--no-sampled] [--threads N] [--json out.json]

A bfloat16 WaveNet (``zoo.load(..., dtype=torch.bfloat16)``) samples with bfloat16 weights and float32
activations and sums: what it computes is exactly float32 WaveNet with the weights rounded to bfloat16 (the
compiled loop's samples are bit-identical to the float32 loop's on the rounded weights,
``tests/test_wavenet_bf16.py``). Sampled audio cannot be compared sample for sample (one different draw
and the two samplers walk apart), so the cost is measured where it is exact:

1. **Teacher-forced negative log-likelihood per sample** of every clip's recording under the model, with
   the float32 weights and with the bfloat16-rounded weights (float32 arithmetic, the full parallel
   forward), the clip's own mel features as conditioning (``voc.mel``). Reported per clip and over all
   samples of all clips (nats per sample; for the Gaussian and logistic-mixture outputs a density of the
   [-1, 1] signal, so the values are negative), with the change ``bfloat16 - float32``.
2. **The mode itself gives that function**: the bfloat16 model's incremental sampler, teacher-forced on the
   first ``--check-samples`` samples of the first clip, against the rounded model's full forward (the
   largest difference of the output parameters).
3. Unless ``--no-sampled``: every clip sampled with float32 and with bfloat16 weights from the same draws
   (seed 0), scored with STOI, wideband PESQ and the multi-resolution STFT distance against the float32
   output (the metrics of the quality issue, as for the parallel models' bfloat16 modes), next to the same
   scores of a second float32 sampling (seed 1) against the first: the spread sampling alone gives, which
   the bfloat16 row should not exceed by much.

Results are printed and written to ``--json`` (``benchmarks/performance.py`` keeps them as
``benchmarks/results/wavenet_bf16_quality.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data" / "eval-lj"


def rounded_copy(model: Any) -> Any:
    """A float32 copy of ``model`` whose weights are its own rounded to bfloat16 (what the mode computes with)."""
    return copy.deepcopy(model).to(torch.bfloat16).float().eval()


@torch.inference_mode()
def teacher_forced_nll(model: Any, audio: torch.Tensor, mel: torch.Tensor) -> tuple[float, int]:
    """``(sum, count)``: the negative log-likelihood of ``audio`` ``[B, T]`` given ``mel`` summed over every
    predicted sample (each sample after the first, as ``WaveNet.loss`` counts them), and their number."""
    audio = audio.reshape(1, -1) if audio.dim() == 1 else audio
    mel = mel.unsqueeze(0) if mel.dim() == 2 else mel
    steps = min(audio.shape[-1], mel.shape[-1] * model.hop_length)
    count = audio.shape[0] * (steps - 1)
    return float(model.loss(audio[..., :steps], mel)["loss"]) * count, count


def nll_table(clips: list[tuple[str, torch.Tensor, torch.Tensor]], model: Any, rounded: Any) -> dict:
    """Per clip and overall teacher-forced NLL per sample of ``model`` and of ``rounded`` (nats)."""
    rows, tot32, totbf, n = [], 0.0, 0.0, 0
    for name, audio, mel in clips:
        s32, count = teacher_forced_nll(model, audio, mel)
        sbf, _ = teacher_forced_nll(rounded, audio, mel)
        rows.append({"file": name, "samples": count, "nll_float32": s32 / count, "nll_bfloat16": sbf / count,
                     "delta": (sbf - s32) / count})
        tot32, totbf, n = tot32 + s32, totbf + sbf, n + count
    deltas = [r["delta"] for r in rows]
    return {"rows": rows, "samples": n, "nll_float32": tot32 / n, "nll_bfloat16": totbf / n,
            "delta_nats_per_sample": (totbf - tot32) / n, "delta_max_abs_clip": max(abs(d) for d in deltas),
            "delta_min_clip": min(deltas), "delta_max_clip": max(deltas)}


@torch.inference_mode()
def mode_check(voc_bf16: Any, rounded: Any, audio: torch.Tensor, mel: torch.Tensor, samples: int) -> float:
    """The largest difference between the bfloat16 model's incremental teacher-forced outputs and the rounded
    model's full forward on the first ``samples`` samples."""
    from zoo_plugins.wavenet.incremental import IncrementalSampler

    from zoo.nn.distributions import MuLawSoftmax

    frames = max(1, -(-samples // voc_bf16.hop_length))
    mel = mel[..., :frames].unsqueeze(0)
    c_up = voc_bf16.upsample_mel(mel)  # float32 mel: float32 upsampling with the bfloat16 weights
    steps = min(samples, c_up.shape[-1], audio.shape[-1])
    c_up = c_up[..., :steps]
    dist = rounded.distribution
    x = audio[:steps].reshape(1, -1)
    inputs = dist.input_from_sample(dist.target_from_audio(x)) if isinstance(dist, MuLawSoftmax) else x.unsqueeze(1)
    inc = IncrementalSampler(voc_bf16, 1).run(c_up, inputs=inputs.float())[1]
    full = rounded.teacher_forced(inputs.float(), c_up)
    return float((inc - full).abs().max())


def sampled_scores(voc32: Any, voc_bf16: Any, mels: list[torch.Tensor], names: list[str]) -> dict:
    """STOI, wideband PESQ and MR-STFT of bfloat16 sampling against float32 sampling (same draws), and of a
    second float32 sampling (another seed) against the first, per clip and as means."""
    from zoo.audio.metrics import mr_stft_distance, pesq_wb, stoi

    sr = voc32.sample_rate

    def scores(est: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
        return {"stoi": stoi(est, ref, sr), "pesq_wb": pesq_wb(est, ref, sr), "mr_stft": mr_stft_distance(est, ref)}

    rows, times = [], {"float32": 0.0, "bfloat16": 0.0}
    for name, mel in zip(names, mels, strict=True):
        out = {}
        for key, voc, seed in (("float32", voc32, 0), ("bfloat16", voc_bf16, 0), ("float32_seed1", voc32, 1)):
            t0 = time.perf_counter()
            out[key] = voc.vocode(mel, generator=torch.Generator().manual_seed(seed))[0].float()
            times[key.split("_")[0]] += time.perf_counter() - t0
        rows.append({"file": name, "bfloat16": scores(out["bfloat16"], out["float32"]),
                     "float32_seed1": scores(out["float32_seed1"], out["float32"])})
    means = {which: {m: statistics.fmean(r[which][m] for r in rows) for m in ("stoi", "pesq_wb", "mr_stft")}
             for which in ("bfloat16", "float32_seed1")}
    return {"rows": rows, "means": means, "seconds": times}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wavenet.trainpm")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--limit", type=int, help="use only the first N clips")
    p.add_argument("--check-samples", type=int, default=2048)
    p.add_argument("--no-sampled", action="store_true", help="leave out the sampled audio's STOI/PESQ/MR-STFT")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import zoo
    from zoo.registry.plugins import kernel_path
    from zoo.train.data import load_audio

    files = sorted(args.data.glob("*.wav"))[: args.limit]
    if not files:
        p.error(f"no .wav files in {args.data}")
    voc32 = zoo.load(args.model)
    voc_bf16 = zoo.load(args.model, dtype=torch.bfloat16)
    rounded = rounded_copy(voc32)
    if voc32.architecture != "wavenet":
        p.error(f"{args.model} is a {voc32.architecture}, not a WaveNet")
    clips = [(f.name, load_audio(f, voc32.sample_rate)) for f in files]
    data = [(name, a, voc32.mel(a)) for name, a in clips]
    t0 = time.perf_counter()
    res: dict[str, Any] = {"model": args.model, "data": str(args.data), "files": len(files),
                           "kernel_path": kernel_path("wavenet", "bfloat16"),
                           "threads": torch.get_num_threads(), "nll": nll_table(data, voc32, rounded)}
    nll = res["nll"]
    print(f"{args.model}: teacher-forced NLL per sample over {len(files)} clips ({nll['samples']:,} samples), "
          f"nats: float32 {nll['nll_float32']:.5f}, bfloat16 weights {nll['nll_bfloat16']:.5f}, "
          f"change {nll['delta_nats_per_sample']:+.2e} (per clip {nll['delta_min_clip']:+.2e} to "
          f"{nll['delta_max_clip']:+.2e}; {time.perf_counter() - t0:.0f} s)", flush=True)
    res["mode_check_samples"] = args.check_samples
    res["mode_check_max_abs_diff"] = mode_check(voc_bf16, rounded, data[0][1], data[0][2], args.check_samples)
    print(f"the bfloat16 sampler teacher-forced on {args.check_samples} samples vs the rounded model's forward: "
          f"max |diff| {res['mode_check_max_abs_diff']:.2e}", flush=True)
    if not args.no_sampled:
        res["sampled"] = sampled_scores(voc32, voc_bf16, [d[2] for d in data], [d[0] for d in data])
        for which, label in (("bfloat16", "bfloat16 vs float32, same draws"),
                             ("float32_seed1", "float32 seed 1 vs seed 0 (sampling alone)")):
            m = res["sampled"]["means"][which]
            print(f"sampled, {label}: STOI {m['stoi']:.3f}, PESQ {m['pesq_wb']:.2f}, MR-STFT {m['mr_stft']:.3f}")
        print(f"sampling seconds: {res['sampled']['seconds']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
