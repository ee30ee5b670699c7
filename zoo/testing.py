"""Conformance kit: checks every vocoder plugin must pass, for the built-in ones and third-party authors.

Use it in your own pytest::

    from zoo.testing import check_vocoder

    def test_my_vocoder_conforms(tmp_path):
        check_vocoder("myvocoder", config=MyConfig(tiny=True), tmp_path=tmp_path)

Each check raises ``AssertionError`` with a message saying what is wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.api import load
from zoo.core.config import VocoderConfig
from zoo.core.vocoder import Vocoder
from zoo.registry.plugins import get_registry


def make_mel_dependent(model: Vocoder, std: float = 0.05, seed: int = 0) -> Vocoder:
    """Give every all-zero parameter small random values (``N(0, std^2)``), in place; returns ``model``.

    Flow vocoders zero-initialise the last layer of each coupling net (WaveGlow's ``end``, FloWaveNet's
    ``ZeroConv1d``) so that an untrained flow starts as the identity: such a model turns noise into audio
    without looking at the mel, and a conformance check on it cannot tell a working conditioning path from a
    broken one. Tests use this to build untrained models whose output does depend on the mel.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.numel() and not p.any():
                p.copy_(std * torch.randn(p.shape, generator=g).to(p.dtype))
    return model.prepare_for_inference()


def _model(architecture: str | type[Vocoder] | Vocoder, config: VocoderConfig | None) -> Vocoder:
    if isinstance(architecture, Vocoder):
        if config is not None:
            raise ValueError("pass either a built model or a config, not both")
        architecture.eval()
        return architecture.prepare_for_inference()
    if isinstance(architecture, str):
        cls = get_registry().architecture(architecture).cls
    else:
        cls = architecture
    model = cls(config) if config is not None else cls()
    model.eval()
    return model.prepare_for_inference()


def _expect_value_error(fn: Callable[[], Any], what: str, must_mention: tuple[str, ...] = ()) -> None:
    try:
        fn()
    except ValueError as exc:
        msg = str(exc)
        for word in must_mention:
            assert word.lower() in msg.lower(), f"{what}: the error should mention {word!r}, got: {msg}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{what}: expected ValueError, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected ValueError, nothing was raised")


def _sample_mel(model: Vocoder, batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """Plausible features: the model's own front-end applied to a short noisy chirp."""
    m = model.mel_config
    g = torch.Generator().manual_seed(seed)
    n = frames * m.hop_length
    t = torch.arange(n, dtype=torch.float32) / m.sample_rate
    audio = []
    for b in range(batch):
        f0 = 120.0 + 40.0 * b
        x = 0.3 * torch.sin(2 * torch.pi * f0 * t * (1 + t)) + 0.02 * torch.randn(n, generator=g)
        audio.append(x)
    mel = model.mel(torch.stack(audio))
    return mel[..., :frames] if mel.shape[-1] >= frames else torch.nn.functional.pad(
        mel, (0, frames - mel.shape[-1]), mode="replicate")


def check_config_roundtrip(model: Vocoder) -> None:
    cfg = model.config
    again = type(cfg).from_json(cfg.to_json())
    assert again == cfg, f"config JSON round trip changed the config: {cfg} -> {again}"
    assert type(cfg).from_dict(cfg.to_dict()) == cfg


def check_vocode_shapes(model: Vocoder) -> None:
    hop = model.hop_length
    mel = _sample_mel(model, 2, 6)
    before = mel.clone()
    gen = torch.Generator().manual_seed(0)
    audio, lengths = model.vocode(mel, generator=gen)
    assert torch.equal(mel, before), "vocode changed the caller's mel in place"
    assert audio.shape == (2, 6 * hop), f"vocode gave {tuple(audio.shape)}, expected (2, {6 * hop})"
    assert lengths.tolist() == [6 * hop] * 2, f"lengths {lengths.tolist()}"
    assert torch.isfinite(audio).all(), "vocoded audio has NaN/Inf"
    single, single_len = model.vocode(mel[0], generator=torch.Generator().manual_seed(0))
    assert single.shape == (6 * hop,) and int(single_len) == 6 * hop, "unbatched input must give [frames*hop]"
    out = model(mel, generator=torch.Generator().manual_seed(0))
    assert out.shape == audio.shape, "voc(mel) must return the audio of vocode()"


def check_batch_matches_single(model: Vocoder, atol: float = 1e-4) -> None:
    """Items of a padded batch equal vocoding each alone; padding never leaks."""
    hop = model.hop_length
    mel = _sample_mel(model, 2, 7)
    mel[1, :, 4:] = 5.0  # garbage in the padding of the shorter item
    lengths = torch.tensor([7, 4])
    before = mel.clone()
    batch, out_len = model.vocode(mel, lengths, generator=torch.Generator().manual_seed(0))
    assert torch.equal(mel, before) and lengths.tolist() == [7, 4], "vocode changed the caller's mel or lengths"
    assert out_len.tolist() == [7 * hop, 4 * hop], f"audio lengths {out_len.tolist()}"
    assert torch.all(batch[1, 4 * hop:] == 0), "audio past an item's length must be zero"
    if model.deterministic:
        alone, _ = model.vocode(mel[1:2, :, :4])
        diff = (batch[1, : 4 * hop] - alone[0]).abs().max().item()
        assert diff <= atol, f"batched item differs from vocoding it alone by {diff:g} (> {atol:g})"
        alone0, _ = model.vocode(mel[0:1])
        diff0 = (batch[0] - alone0[0]).abs().max().item()
        assert diff0 <= atol, f"batched item 0 differs from vocoding it alone by {diff0:g}"
        # Items of one length go through synthesize together: neither may change the other.
        pair, _ = model.vocode(mel[:, :, :4])
        for i in range(2):
            one, _ = model.vocode(mel[i:i + 1, :, :4])
            diff = (pair[i] - one[0]).abs().max().item()
            assert diff <= atol, (f"item {i} of an equal-length batch differs from vocoding it alone by {diff:g} "
                                  f"(> {atol:g}): batch items must not influence each other")


def check_generator_reproducible(model: Vocoder) -> None:
    mel = _sample_mel(model, 1, 5)
    a = model.vocode(mel, generator=torch.Generator().manual_seed(123))[0]
    b = model.vocode(mel, generator=torch.Generator().manual_seed(123))[0]
    assert torch.equal(a, b), "the same generator seed must give the same audio"
    if not model.deterministic:
        c = model.vocode(mel, generator=torch.Generator().manual_seed(124))[0]
        assert not torch.equal(a, c), "a stochastic model gave identical audio for different seeds"


def check_output_depends_on_mel(model: Vocoder) -> None:
    """Two different mels (same length, same generator seed) give different audio; so does changing the mel
    of one item of a batch for that item. A model that ignores its conditioning (an untrained flow with
    zero-initialised end layers, a broken upsampler) fails here."""
    a = _sample_mel(model, 1, 6, seed=0)
    b = _sample_mel(model, 2, 6, seed=1)[1:]  # another chirp (f0 160 Hz against 120 Hz), other noise
    assert not torch.equal(a, b)
    out_a = model.vocode(a, generator=torch.Generator().manual_seed(0))[0]
    out_b = model.vocode(b, generator=torch.Generator().manual_seed(0))[0]
    diff = (out_a - out_b).abs().max().item()
    scale = max(out_a.abs().max().item(), 1e-12)
    assert diff > 1e-5 * scale, (f"the output does not depend on the mel: two different mels gave audio "
                                 f"differing by only {diff:g} (peak {scale:g}); is the conditioning wired "
                                 "in (or the end layers still zero-initialised)?")


def check_save_load(model: Vocoder, tmp_path: Path) -> None:
    folder = model.save_pretrained(tmp_path / "saved")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    loaded = load(folder)
    assert type(loaded) is type(model) and loaded.config == model.config, "save/load changed the model"
    mel = _sample_mel(model, 1, 5)
    a = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    b = loaded.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    diff = (a - b).abs().max().item()
    assert diff <= 1e-5, f"reloaded model's output differs by {diff:g}"


def check_dtypes(model: Vocoder) -> None:
    """float64 runs and stays close to float32; bfloat16 runs and stays finite."""
    mel = _sample_mel(model, 1, 5)
    ref = model.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    m64 = model.to(torch.float64).prepare_for_inference()
    try:
        out64 = m64.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
        assert out64.dtype == torch.float64, "float64 model gave non-float64 audio"
        if model.deterministic:
            diff = (out64.float() - ref).abs().max().item()
            assert diff <= 1e-3, f"float64 output differs from float32 by {diff:g}"
        mbf = model.to(torch.bfloat16).prepare_for_inference()
        outbf = mbf.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
        assert outbf.dtype == torch.float32, f"bfloat16 model gave {outbf.dtype} audio, not float32 (audio_dtype)"
        assert torch.isfinite(outbf).all(), "bfloat16 output has NaN/Inf"
    finally:
        model.to(torch.float32).prepare_for_inference()


def check_bad_inputs(model: Vocoder) -> None:
    n = model.mel_config.n_mels
    good = _sample_mel(model, 1, 4)
    _expect_value_error(lambda: model.vocode(torch.zeros(4)), "1-D mel", ("n_mels",))
    _expect_value_error(lambda: model.vocode(torch.zeros(1, 1, n, 4)), "4-D mel", ("n_mels",))
    _expect_value_error(lambda: model.vocode(torch.zeros(1, n + 1, 4)), "wrong n_mels", (str(n),))
    _expect_value_error(lambda: model.vocode(torch.zeros(1, n, 0)), "empty mel", ("empty",))
    nan = good.clone()
    nan[0, 0, 0] = float("nan")
    _expect_value_error(lambda: model.vocode(nan), "NaN mel", ("nan",))
    inf = good.clone()
    inf[0, 1, 1] = float("inf")
    _expect_value_error(lambda: model.vocode(inf), "Inf mel", ("inf",))
    _expect_value_error(lambda: model.vocode(good.long()), "integer mel", ("float",))
    _expect_value_error(lambda: model.vocode(good, lengths=[9]), "lengths too long", ("lengths",))
    _expect_value_error(lambda: model.vocode(good, lengths=[1, 2]), "lengths count", ("lengths",))
    sr = model.sample_rate
    _expect_value_error(lambda: model.mel(torch.zeros(sr), sample_rate=sr // 2), "wrong sample rate",
                        (str(sr),))


def check_mel_frontend(model: Vocoder) -> None:
    m = model.mel_config
    n = 5 * m.hop_length + 17
    mel = model.mel(torch.zeros(n) + 0.01 * torch.randn(n, generator=torch.Generator().manual_seed(0)))
    assert mel.shape == (m.n_mels, m.num_frames(n)), f"mel(audio) shape {tuple(mel.shape)}"


def check_vocoder(
    architecture: str | type[Vocoder] | Vocoder,
    config: VocoderConfig | None = None,
    tmp_path: str | Path | None = None,
    *,
    batch_atol: float = 1e-4,
) -> Vocoder:
    """Run every conformance check on a freshly built model of ``architecture`` (a registered name or a
    class, built from ``config``), or on a model already built; returns the model.

    Checks: config JSON round trip, output shapes and lengths, the caller's mel and lengths left as they
    were, the output depending on the mel, batch vs single (padding never leaks),
    generator reproducibility, save/load, float64/bfloat16, the mel front-end, and clear ``ValueError``s
    for bad input (rank, n_mels, empty, NaN/Inf, dtype, lengths, sample rate).
    """
    model = _model(architecture, config)
    check_config_roundtrip(model)
    check_vocode_shapes(model)
    check_output_depends_on_mel(model)
    check_batch_matches_single(model, atol=batch_atol)
    check_generator_reproducible(model)
    check_bad_inputs(model)
    check_mel_frontend(model)
    if tmp_path is None:
        with tempfile.TemporaryDirectory() as tmp:
            check_save_load(model, Path(tmp))
    else:
        check_save_load(model, Path(tmp_path))
    check_dtypes(model)
    return model


__all__ = ["check_vocoder", "check_config_roundtrip", "check_vocode_shapes", "check_batch_matches_single",
           "check_generator_reproducible", "check_save_load", "check_dtypes", "check_bad_inputs",
           "check_mel_frontend", "check_output_depends_on_mel", "make_mel_dependent"]
