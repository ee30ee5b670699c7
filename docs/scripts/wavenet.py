"""Does the WaveNet vocoder's transposed-convolution upsampling create noise? And how far back does a WaveNet see?

The conditioning upsamplers of ``zoo/nn/upsample.py`` turn a real mel (``LJ001-0008`` of eval-lj, r9y9
features) into one conditioning vector per audio sample. A mel changes at the frame rate (22050 / 256 =
86 Hz), so everything the upsampled conditioning carries above half of it is made by the upsampler. Two
numbers per upsampler, averaged over ``--seeds`` initialisations (training starts there) and, for every
pretrained model that loads offline and has one of these upsamplers, on its trained weights:

* checkerboard energy: the part of the conditioning's energy (each channel's mean removed) that repeats
  with the period of one frame, i.e. the same pattern stamped onto every frame, whatever the mel says.
  Estimated as the frame-average of the within-frame deviations; a nearest-neighbour repeat has none.
* image energy: the part above half the frame rate (43 Hz).

Then the receptive field of the WaveNet configurations the zoo ships, from the real modules. Writes
``docs/data/wavenet.json`` and ``docs/figures/wavenet_upsampling.png``.

    python docs/scripts/wavenet.py [--seeds 5] [--clip ../shared/data/eval-lj/LJ001-0008.wav] [--weights W ...]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_common import REPO, parser, pyplot, save_figure, write_json  # noqa: E402

import zoo  # noqa: E402
from zoo.cli.common import read_audio  # noqa: E402
from zoo.core.mel import MelConfig, mel_spectrogram  # noqa: E402
from zoo.nn.upsample import (  # noqa: E402
    RepeatConvUpsampler,
    Stretch2dUpsampler,
    TransposedConv2dUpsampler,
    TransposedConvUpsampler,
)
from zoo.registry.plugins import get_registry  # noqa: E402

HOP = 256
SR = 22050


def upsamplers(n_mels: int) -> dict[str, tuple[str, torch.nn.Module]]:
    """Label -> (kind, module) of every upsampler design, freshly initialised (call under a seed)."""
    return {
        "transposed2d_r9y9": ("transposed conv 2-D, kernel = stride 4 x4 (r9y9 2092a64)",
                              TransposedConv2dUpsampler((4, 4, 4, 4), 3, 4, activation="relu")),
        "transposed2d_clarinet": ("transposed conv 2-D, kernel 2 x stride 16 x2 (ClariNet, FloWaveNet)",
                                  TransposedConv2dUpsampler((16, 16), 3, None, activation="leaky_relu")),
        "transposed1d_waveglow": ("transposed conv 1-D, kernel 1024, stride 256 (WaveGlow)",
                                  TransposedConvUpsampler(n_mels, HOP, 1024)),
        "stretch2d_r9y9": ("nearest stretch + 2-D conv x4 (r9y9 HEAD)", Stretch2dUpsampler(n_mels, (4, 4, 4, 4), 2)),
        "repeat_conv": ("repeat + conv, 513 taps", RepeatConvUpsampler(n_mels, HOP)),
    }


def run(module: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """``[C, frames * hop]`` conditioning (r9y9's stretch gets its ``cin_pad`` edge frames, as WaveNet does)."""
    if isinstance(module, Stretch2dUpsampler):
        mel = F.pad(mel, (module.cin_pad, module.cin_pad), mode="replicate")
    with torch.no_grad():
        return module(mel)[0]


def measure(u: torch.Tensor, hop: int = HOP, sr: int = SR) -> dict[str, float]:
    """Checkerboard and image energy of conditioning ``u [C, frames * hop]`` (fractions and dB)."""
    u = u.double()
    frames = u.shape[-1] // hop
    u = u[:, : frames * hop]
    u = u - u.mean(-1, keepdim=True)
    total = u.pow(2).sum()
    if total <= 1e-20 * u.numel():  # a constant output (e.g. a ReLU stage that is zero everywhere)
        return {"dead": True}
    within = u.reshape(u.shape[0], frames, hop)
    within = within - within.mean(-1, keepdim=True)
    pattern = within.mean(1)  # [C, hop]: what every frame carries, the same in every frame
    checker = pattern.pow(2).sum() * frames
    spec = torch.fft.rfft(u * torch.hann_window(u.shape[-1], dtype=u.dtype), dim=-1).abs().pow(2).sum(0)
    freqs = torch.fft.rfftfreq(u.shape[-1], 1 / sr)
    image = spec[freqs > sr / hop / 2].sum() / spec.sum()
    frac = float(checker / total)
    return {"dead": False, "checkerboard_fraction": frac, "checkerboard_db": 10 * math.log10(max(frac, 1e-30)),
            "image_fraction": float(image), "image_db": 10 * math.log10(max(float(image), 1e-30))}


def spectrum_db(u: torch.Tensor, sr: int = SR) -> tuple[torch.Tensor, torch.Tensor]:
    u = u.double() - u.double().mean(-1, keepdim=True)
    spec = torch.fft.rfft(u * torch.hann_window(u.shape[-1], dtype=u.dtype), dim=-1).abs().pow(2).mean(0)
    return torch.fft.rfftfreq(u.shape[-1], 1 / sr), 10 * torch.log10(spec / spec.max() + 1e-20)


def _from_weights(path: Path) -> zoo.Vocoder:
    """A model from a safetensors file written by ``save_pretrained`` (its metadata holds the config)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    cls = get_registry().architecture(meta["architecture"]).cls
    model = cls(cls.config_class.from_dict(json.loads(meta["config"])))
    model.load_weights(path)
    return model.prepare_for_inference()


def trained_upsamplers(audio: torch.Tensor, extra: list[Path]) -> dict[str, tuple[str, torch.Tensor]]:
    """Conditioning from every pretrained model that loads offline and upsamples a mel on its own, and from
    the weights files in ``extra``."""
    out = {}
    models: list[tuple[str, object]] = []
    for name in zoo.list_models():
        if zoo.card(name).architecture in ("wavenet", "parallel_wavenet", "flowavenet", "waveglow"):
            models.append((name, lambda name=name: zoo.load(name, offline=True)))
    known = {n for n, _ in models}
    models += [(path.stem, lambda path=path: _from_weights(path)) for path in extra if path.stem not in known]
    for name, loader in models:
        try:
            voc = loader()
        except Exception as exc:  # noqa: BLE001 - a model whose weights are not here is reported, not fatal
            print(f"skip {name}: {exc}".splitlines()[0], file=sys.stderr)
            continue
        mel = voc.mel(audio)[None]
        with torch.no_grad():
            if hasattr(voc, "upsample_mel"):
                u = voc.upsample_mel(mel)[0]
            else:
                u = voc.upsample(mel)[0]
        out["trained_" + name.replace(".", "_")] = (f"{name} (trained)", u)
    return out


def receptive_fields() -> dict[str, dict[str, float]]:
    cls = get_registry().architecture("wavenet").cls
    cfgs = {
        "r9y9_head": ("r9y9 HEAD (4 cycles of 6, kernel 3)", cls.config_class()),
        "r9y9_2092a64": ("r9y9 LJSpeech 2092a64 (4 cycles of 6, kernel 3)", cls.config_class.r9y9_ljspeech_2092a64()),
        "clarinet_teacher": ("ClariNet teacher (2 cycles of 10, kernel 2, front conv 32)", cls.config_class.clarinet()),
    }
    out = {}
    for key, (label, cfg) in cfgs.items():
        with torch.device("meta"):
            model = cls(cfg)
        out[key] = {"label": label, "samples": model.receptive_field, "ms": model.receptive_field_ms,
                    "frames": model.receptive_field / cfg.mel.hop_length, "layers": cfg.layers}
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "wavenet", "wavenet_upsampling", clip="LJ001-0008")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--weights", type=Path, nargs="*", default=sorted(REPO.glob("plugins/*/weights/*.safetensors")),
                   help="also measure these trained weights (safetensors written by save_pretrained; default: "
                        "the seed weights under plugins/*/weights/)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    audio, sr = read_audio(args.clip)
    audio = torch.from_numpy(audio)
    assert sr == SR, sr
    mel = mel_spectrogram(audio, MelConfig.preset("r9y9"))[None]
    results: dict[str, dict] = {}
    curves: dict[str, tuple[str, torch.Tensor]] = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        for key, (label, module) in upsamplers(mel.shape[1]).items():
            u = run(module, mel)
            row = results.setdefault(key, {"label": label, "runs": []})
            row["runs"].append(measure(u))
            if key not in curves and not row["runs"][-1]["dead"]:
                curves[key] = (label, u)
    for key, (label, u) in trained_upsamplers(audio, args.weights).items():
        results[key] = {"label": label, "runs": [measure(u)]}
        curves[key] = (label, u)
    for row in results.values():
        live = [r for r in row["runs"] if not r["dead"]]
        row["dead_runs"] = len(row["runs"]) - len(live)
        for metric in ("checkerboard_db", "image_db", "checkerboard_fraction"):
            vals = [r[metric] for r in live]
            row[metric] = sum(vals) / len(vals)
            row[metric + "_min"], row[metric + "_max"] = min(vals), max(vals)
    table = ["| upsampler | checkerboard energy | image energy | constant output |", "|---|---|---|---|"]
    for row in results.values():
        table.append(f"| {row['label']} | {row['checkerboard_db']:.1f} dB | {row['image_db']:.1f} dB "
                     f"| {row['dead_runs']} of {len(row['runs'])} |")
    report = {"table": "\n".join(table), "clip": args.clip.name, "seconds": audio.shape[-1] / SR,
              "frame_rate_hz": SR / HOP, "seeds": args.seeds, "upsamplers": results,
              "receptive_field": receptive_fields()}
    write_json(report, args.json)
    plot(curves, args.figure)
    for row in results.values():
        print(f"{row['label']:<70} checkerboard {row['checkerboard_db']:7.1f} dB   image {row['image_db']:7.1f} dB"
              f"   constant outputs {row['dead_runs']}/{len(row['runs'])}")
    return 0


def plot(curves: dict[str, tuple[str, torch.Tensor]], path: Path) -> None:
    plt = pyplot()

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 2]})
    for label, u in curves.values():
        f, db = spectrum_db(u)
        ax1.semilogx(f[1:], db[1:], lw=0.8, label=label)
    for k in range(1, 129):
        ax1.axvline(k * SR / HOP, color="0.85", lw=0.4, zorder=0)
    ax1.set_xlim(10, SR / 2)
    ax1.set_ylim(-160, 5)
    ax1.set_xlabel("frequency of the conditioning signal (Hz); grey lines: multiples of the frame rate, 86 Hz")
    ax1.set_ylabel("power (dB, mean over bands)")
    ax1.set_title("Spectrum of the upsampled conditioning of LJ001-0008 (first initialisation)")
    ax1.legend(fontsize=7, loc="lower left")
    band, start, n = 20, 40 * HOP, 2 * HOP
    for i, (label, u) in enumerate(curves.values()):
        seg = u[band, start:start + n].double()
        seg = (seg - seg.mean()) / (seg.std() + 1e-12)
        ax2.plot((seg / 4 - i).numpy(), lw=0.8)
        ax2.text(n + 4, -i, label.split(" (")[0], fontsize=7, va="center")
    for k in range(3):
        ax2.axvline(k * HOP, color="0.7", lw=0.6)
    ax2.set_xlim(0, n * 1.45)
    ax2.set_yticks([])
    ax2.set_xlabel("sample (2 frames of one band, each curve standardised; grey lines: frame boundaries)")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
