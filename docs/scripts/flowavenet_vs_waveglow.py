"""FloWaveNet vs WaveGlow at (about) equal parameter count: parameters, held-out NLL after the same
training budget, and sampling speed on this CPU. Writes the numbers of docs/theory/flowavenet_vs_waveglow.md.

    python docs/scripts/flowavenet_vs_waveglow.py [--steps 150] [--out docs/data/flowavenet_vs_waveglow.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from zoo_plugins.flowavenet import FloWaveNet, FloWaveNetConfig  # noqa: E402
from zoo_plugins.waveglow import WaveGlow, WaveGlowConfig  # noqa: E402

from zoo.core.mel import MelConfig  # noqa: E402
from zoo.train.data import SegmentDataset, StepBatcher, list_audio  # noqa: E402


def nats_per_sample(model, audio, mel) -> float:
    out = model.loss(audio, mel)
    if isinstance(model, WaveGlow):
        return float(out["nll_nats_per_sample"])
    return float(out["loss"])


def run(model, data: Path, steps: int, seed: int = 0) -> dict:
    files = list_audio(data)
    train = SegmentDataset(files[:-3], model.mel_config, 4096)
    val = SegmentDataset(files[-3:], model.mel_config, 4096)
    batcher = StepBatcher(train, 4, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        audio, mel = batcher.batch(step)
        loss = model.loss(audio, mel)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vals = [nats_per_sample(model, a[None], m[None]) for a, m in (val.segment(i, g) for i in range(len(val)))]
        mel = torch.rand(1, 80, 431) - 0.5 if model.mel_config.normalize == "none" else torch.rand(1, 80, 431)
        model.vocode(mel[..., :20])
        t0 = time.perf_counter()
        model.vocode(mel, generator=torch.Generator().manual_seed(0))
        sample_s = time.perf_counter() - t0
    return {"parameters": model.num_parameters(), "val_nll_nats_per_sample": sum(vals) / len(vals),
            "train_seconds": train_s, "samples_per_s": 431 * 256 / sample_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "train-pm")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "data" / "flowavenet_vs_waveglow.json")
    args = p.parse_args(argv)
    mel = MelConfig.preset("tacotron2")
    torch.manual_seed(0)
    wg = WaveGlow(WaveGlowConfig(mel=mel, n_flows=6, n_group=8, n_early_every=2, n_early_size=2, n_layers=4,
                                 n_channels=32, upsample_kernel=256, chunk_frames=0))
    torch.manual_seed(0)
    fw = FloWaveNet(FloWaveNetConfig(mel=mel, n_block=4, n_flow=3, n_layer=3, block_per_split=2, filter_size=64,
                                     chunk_frames=0))
    results = {"steps": args.steps, "threads": torch.get_num_threads(),
               "waveglow": run(wg, args.data, args.steps), "flowavenet": run(fw, args.data, args.steps)}
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0 if all(math.isfinite(results[k]["val_nll_nats_per_sample"]) for k in ("waveglow", "flowavenet")) else 1


if __name__ == "__main__":
    sys.exit(main())
