"""In FloWaveNet, audio and mel are both inputs: what happens at inference?

Measured on the real model: which entry points run while ``vocode`` samples (the density direction
``FloWaveNet.flow``/``loss``, the only code that reads audio, is counted), what the noise input is, how the
output depends on the generator and the temperature, that the density direction inverts the sampling path
(``flow(reverse(z))`` gives back ``z``, the factored-out halves included), and where the time goes
(upsampler vs the inverted flows). The model is the first pretrained ``flowavenet.*`` that loads offline,
else the seed recipe's architecture (``plugins/flowavenet/recipes/trainpm.yaml``) with random weights: the
path does not depend on training (the statistics of ``z`` for real audio do). Writes
``docs/data/flowavenet_sampling.json`` and ``docs/figures/flowavenet_sampling.png``.

    python docs/scripts/flowavenet_sampling.py [--clip ../shared/data/eval-lj/LJ001-0008.wav]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import REPO, parser, pyplot, save_figure, write_json  # noqa: E402

import zoo  # noqa: E402
from zoo.cli.common import read_audio  # noqa: E402


def load_model() -> tuple[zoo.Vocoder, str]:
    for name in zoo.list_models("flowavenet.*"):
        try:
            return zoo.load(name, offline=True), name
        except Exception as exc:  # noqa: BLE001
            print(f"skip {name}: {exc}".splitlines()[0], file=sys.stderr)
    recipe = yaml.safe_load((REPO / "plugins" / "flowavenet" / "recipes" / "trainpm.yaml").read_text())
    torch.manual_seed(0)
    model = zoo.create("flowavenet", **recipe["model"]).eval()
    # A fresh FloWaveNet is the identity (zero-initialised coupling outputs): perturb every weight so that
    # every flow and prior acts.
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model, "the trainpm recipe's architecture, random weights (perturbed from the identity)"


def count_calls(cls, names: tuple[str, ...]) -> tuple[dict[str, int], list]:
    """Count calls of ``cls``'s methods ``names``; returns (counts, handles to undo)."""
    counts = dict.fromkeys(names, 0)
    undo = []
    for name in names:
        original = getattr(cls, name)

        def wrapped(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        setattr(cls, name, wrapped)
        undo.append((cls, name, original))
    return counts, undo


def timed_vocode(model, mel: torch.Tensor, **kw) -> tuple[torch.Tensor, float, float]:
    """``(audio, total seconds, seconds in the upsampler)`` of one ``vocode``."""
    spent = [0.0]

    def pre(module, args):
        spent.append(-time.perf_counter())

    def post(module, args, out):
        spent[-1] += time.perf_counter()

    h1, h2 = model.upsample.register_forward_pre_hook(pre), model.upsample.register_forward_hook(post)
    start = time.perf_counter()
    audio = model.vocode(mel, **kw)[0]
    total = time.perf_counter() - start
    h1.remove()
    h2.remove()
    return audio, total, sum(spent)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "flowavenet_sampling", "flowavenet_sampling", clip="LJ001-0008")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, which = load_model()
    cfg = model.config
    hop = cfg.mel.hop_length
    wav, _ = read_audio(args.clip)
    audio = torch.from_numpy(wav)
    mel = model.mel(audio)[None]
    model.vocode(mel[..., :8])  # warm-up
    counts, undo = count_calls(type(model), ("flow", "loss", "reverse", "synthesize"))
    out, total, up_s = timed_vocode(model, mel, generator=torch.Generator().manual_seed(0))
    for cls, name, original in undo:
        setattr(cls, name, original)
    same = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    other = model.vocode(mel, generator=torch.Generator().manual_seed(1))[0]
    cold = [model.vocode(mel, generator=torch.Generator().manual_seed(s), temperature=0.0)[0] for s in (0, 1)]
    rms = {t: float(model.vocode(mel, generator=torch.Generator().manual_seed(0), temperature=t)[0].pow(2).mean()
                    .sqrt()) for t in (0.0, 0.4, 0.8, 1.0)}
    with torch.no_grad():
        frames = 64
        c_up = model.upsample(mel[..., :frames])
        z = 0.8 * torch.randn(1, 1, frames * hop, generator=torch.Generator().manual_seed(2))
        x = model.reverse(z, c_up)
        back = model.flow(x, c_up)
        final_err = float((back["z"] - _final_part(model, z)).abs().max())
        z_real = model.flow(audio[None, None, : frames * hop], c_up)["z"]
    report = {
        "model": which, "clip": args.clip.name, "frames": int(mel.shape[-1]), "samples": int(out.shape[-1]),
        "config": {"n_block": cfg.n_block, "n_flow": cfg.n_flow, "block_per_split": cfg.block_per_split,
                   "n_layer": cfg.n_layer, "filter_size": cfg.filter_size},
        "parameters": model.num_parameters(),
        "calls_during_vocode": counts,
        "noise_shape": [1, 1, int(mel.shape[-1]) * hop],
        "same_seed_identical": bool(torch.equal(out, same)),
        "other_seed_max_abs_difference": float((out - other).abs().max()),
        "temperature_0_seed_independent": bool(torch.equal(cold[0], cold[1])),
        "output_rms_by_temperature": rms,
        "z_roundtrip_max_abs": final_err,
        "z_of_real_audio": {"mean": float(z_real.mean()), "std": float(z_real.std())},
        "seconds_total": total, "seconds_upsampler": up_s, "upsampler_share": up_s / total,
        "samples_per_second": out.shape[-1] / total,
        "blocks": block_shapes(cfg, int(mel.shape[-1]) * hop),
    }
    write_json(report, args.json)
    plot(report, args.figure)
    print(json.dumps({k: v for k, v in report.items() if k != "blocks"}, indent=2))
    return 0


def block_shapes(cfg, samples: int) -> list[dict]:
    """The tensor entering each block's inverted flows on the sampling path, from the config."""
    out, channels, steps = [], 1, samples
    for i in range(cfg.n_block):
        channels, steps = channels * 2, steps // 2
        out.append({"block": i, "channels": channels, "steps": steps, "split": cfg.is_split(i)})
        if cfg.is_split(i):
            channels //= 2
    return out


def _final_part(model, z: torch.Tensor) -> torch.Tensor:
    """The part of ``z`` that survives every split, in ``flow()``'s layout (squeezed ``n_block`` times)."""
    from zoo.nn.flows import squeeze

    x = z
    for i in range(model.config.n_block):
        x = squeeze(x, 2)
        if model.config.is_split(i):
            x = x.chunk(2, 1)[0]
    return x


def plot(report: dict, path: Path) -> None:
    plt = pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    blocks = report["blocks"][::-1]
    labels = [f"block {b['block']}" + (" (+ prior)" if b["split"] else "") for b in blocks]
    ax1.plot(labels, [b["channels"] for b in blocks], "o-", label="channels")
    ax1.plot(labels, [b["steps"] for b in blocks], "s-", label="time steps")
    ax1.set_yscale("log", base=2)
    ax1.set_title(f"Sampling order: noise {report['noise_shape']} squeezed, then inverted block by block")
    ax1.set_ylabel("tensor inside the block")
    ax1.legend(fontsize=8)
    ax1.tick_params(axis="x", labelsize=8)
    temps = list(report["output_rms_by_temperature"])
    ax2.plot([float(t) for t in temps], list(report["output_rms_by_temperature"].values()), "o-")
    ax2.set_xlabel("temperature (scale of z)")
    ax2.set_ylabel("output RMS")
    ax2.set_title("The only randomness: z", fontsize=10)
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
