"""Bad inputs: zero and negative lengths, Inf in audio, an empty and a stereo WAV through the CLI, mel files
carrying a pickle, malformed and wrong-version lock files, a card and a config with every field of the
wrong type. Each gives a clear one-line error naming what was expected (or, for stereo, a documented
downmix), never a traceback from deep inside torch, and never runs a pickle's payload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from zoo.cli.app import main as cli_main
from zoo.core.stream import stream, vocode_long
from zoo.hub.lock import LockError, make_lock, read_lock
from zoo.registry.cards import CardError, parse_card
from zoo.registry.plugins import get_registry


@pytest.fixture(scope="module")
def voc():
    return zoo.create("griffinlim", n_iter=2)


def _mel(voc, frames: int = 6) -> torch.Tensor:
    return voc.mel(0.1 * torch.sin(torch.arange(frames * voc.hop_length) * 0.05))[:, :frames]


@pytest.mark.parametrize("lengths", [[0], [-1], [-100]])
def test_zero_and_negative_lengths(voc, lengths):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 6\]"):
        voc.vocode(_mel(voc), lengths=lengths)


@pytest.mark.parametrize("call,match", [
    (lambda v, m: vocode_long(v, m, chunk_frames=0), "chunk_frames"),
    (lambda v, m: vocode_long(v, m, chunk_frames=-4), "chunk_frames"),
    (lambda v, m: list(stream(v, [m], min_emit_frames=0)), "min_emit_frames"),
    (lambda v, m: list(stream(v, [m], context=-1)), "context"),
    (lambda v, m: list(stream(v, [m], context=(2, -1))), "context"),
    (lambda v, m: list(stream(v, [m[:, :0]])), "empty"),
    (lambda v, m: v.vocode(m[:, :0]), "empty"),
    (lambda v, m: v.mel(torch.zeros(0)), "empty"),
], ids=["vocode_long-0", "vocode_long-negative", "stream-min_emit-0", "stream-context-negative",
        "stream-context-pair-negative", "stream-0-frames", "vocode-0-frames", "mel-0-samples"])
def test_zero_and_negative_sizes(voc, call, match):
    with pytest.raises(ValueError, match=match):
        call(voc, _mel(voc))


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_inf_or_nan_in_audio(voc, value):
    audio = 0.1 * torch.randn(4 * voc.hop_length, generator=torch.Generator().manual_seed(0))
    audio[100] = value
    with pytest.raises(ValueError, match="NaN or Inf"):
        voc.mel(audio)


def _cli_vocode(tmp_path, inp, capsys) -> tuple[int, str]:
    code = cli_main(["vocode", str(inp), "-o", str(tmp_path / "out.wav"), "--model", "griffinlim"])
    return code, capsys.readouterr().err.strip()


def test_cli_refuses_an_empty_wav(tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 22050)
    code, err = _cli_vocode(tmp_path, empty, capsys)
    assert code == 2 and "holds no samples" in err and "empty.wav" in err and "\n" not in err, err
    assert not (tmp_path / "out.wav").exists()


def test_cli_downmixes_a_stereo_wav(tmp_path, capsys):
    """Stereo input is averaged to mono (read_mono): the output is mono, as long as the input, and equals
    vocoding the channel mean."""
    t = np.arange(22050 // 2) / 22050
    left, right = 0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([left, right], 1).astype(np.float32), 22050, subtype="FLOAT")
    code, err = _cli_vocode(tmp_path, stereo, capsys)
    assert code == 0, err
    out, sr = sf.read(str(tmp_path / "out.wav"), dtype="float32", always_2d=True)
    assert sr == 22050 and out.shape[1] == 1 and abs(out.shape[0] - t.size) < 256
    voc = zoo.load("griffinlim")
    mono = torch.from_numpy(((left + right) / 2).astype(np.float32))
    expected = voc.vocode(voc.mel(mono))[0].numpy()[: out.shape[0]]
    assert np.abs(out[:, 0] - np.clip(expected, -1, 1)).max() < 2e-4  # 16-bit PCM rounding


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: a payload with a visible effect."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_mel_files_carrying_a_pickle_are_refused_unrun(tmp_path, capsys, suffix):
    marker = tmp_path / "pwned"
    bad = tmp_path / f"mel{suffix}"
    if suffix == ".pt":
        torch.save({"mel": torch.zeros(80, 4), "x": _Payload(marker)}, str(bad))
    else:
        np.save(str(bad), np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    assert not marker.exists()
    code = cli_main(["vocode", str(bad), "-o", str(tmp_path / "out.wav"), "--model", "griffinlim"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cannot read mel" in err and bad.name in err, err
    assert not marker.exists(), "the pickle's payload ran"
    assert not (tmp_path / "out.wav").exists()
    with bad.open("rb") as f:  # the control: the payload is real (numpy's and torch's loaders may run it)
        if suffix == ".pt":
            torch.load(f, weights_only=False)
        else:
            np.load(f, allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("content,match", [
    ("{not json", "not valid JSON"),
    ("[]", "not a vocoder-zoo lock file"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": 1}), "not a vocoder-zoo lock file"),
    (json.dumps({"format": "something-else", "version": 1, "models": {}}), "not a vocoder-zoo lock file"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": 2, "models": {}}), "version 2"),
    (json.dumps({"format": "vocoder-zoo-lock", "models": {}}), "version None"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": "1", "models": {}}), "version '1'"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": 1, "models": {"hifigan": "x"}}), "malformed"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": 1, "models": {"hifigan": {"sources": "x"}}}),
     "malformed"),
    (json.dumps({"format": "vocoder-zoo-lock", "version": 1, "models": {"hifigan": {"sources": [3]}}}),
     "malformed"),
], ids=["bad-json", "list", "no-models", "other-format", "version-2", "no-version", "version-string",
        "entry-string", "sources-string", "source-int"])
def test_malformed_and_wrong_version_lock_files(tmp_path, content, match):
    path = tmp_path / "zoo.lock"
    path.write_text(content)
    with pytest.raises(LockError, match=match) as info:
        read_lock(path)
    assert "\n" not in str(info.value)
    path.write_text(json.dumps(make_lock({})))
    assert read_lock(path)["models"] == {}


def test_load_with_a_wrong_version_lock_names_it(tmp_path):
    path = tmp_path / "zoo.lock"
    path.write_text(json.dumps({"format": "vocoder-zoo-lock", "version": 7, "models": {}}))
    with pytest.raises(LockError, match="version 7"):
        zoo.load("griffinlim", lock=path)


_CARD = get_registry().card("hifigan.ljspeech").to_markdown()
_WRONG = {  # a value of the wrong type for each field of a card's front matter
    "name": 12, "architecture": ["hifigan"], "default": "yes", "license": 3, "library_name": {"a": 1},
    "tags": "hifigan", "sample_rate": "fast", "config": ["resblock"], "mel": 12.5, "training_data": [1, 2],
    "quality": ["eval-lj"], "sources": "hf://x", "mel_fingerprint": 42,
}


@pytest.mark.parametrize("field", sorted(_WRONG))
def test_card_field_of_the_wrong_type(field):
    import yaml

    from zoo.registry.cards import _KNOWN, split_front_matter

    assert set(_WRONG) == _KNOWN, "every known card field has a wrong-type case"
    data, body = split_front_matter(_CARD, "card.md")
    data[field] = _WRONG[field]
    text = "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + body
    with pytest.raises(CardError) as info:
        parse_card(text, "card.md")
    message = str(info.value)
    assert "card.md" in message and (field in message or (field == "architecture" and "name" in message))


def test_source_field_of_the_wrong_type():
    import yaml

    from zoo.registry.cards import split_front_matter

    data, body = split_front_matter(_CARD, "card.md")
    good = dict(data["sources"][0])
    for key, value in [("kind", 3), ("sha256", ["a"]), ("package", None), ("path", {})]:
        data["sources"] = [dict(good, **{key: value})]
        text = "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n" + body
        with pytest.raises(CardError, match=rf"sources\[0\]\.{key}"):
            parse_card(text, "card.md")


@pytest.mark.parametrize("arch", sorted(zoo.list_architectures()))
def test_config_field_of_the_wrong_type(arch):
    """Every field of every architecture's config, given a value of the wrong type, is refused with a
    ValueError naming the field (never a TypeError from arithmetic in __post_init__ or the model)."""
    cls = get_registry().architecture(arch).cls.config_class
    defaults = cls().to_dict()
    assert cls.from_dict(defaults) == cls()
    for key, value in defaults.items():
        wrong = [{"x": 1}] if isinstance(value, str) else ["text", [[1]]] if not isinstance(value, bool) else [1]
        for bad in wrong:
            with pytest.raises(ValueError, match=key):
                cls.from_dict({key: bad})
