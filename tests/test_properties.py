"""Property-based tests (hypothesis) of the input parsers: the card parser, the mel config, the lock file
reader, the lengths handling of ``vocode`` and the safetensors reader behind ``load_weights``. Whatever the
input, the result is a valid object or the parser's own clear error, never another exception, a crash or
a huge allocation. Examples are bounded (a few dozen each, no deadline) to keep the suite fast."""

from __future__ import annotations

import json
import resource
import struct

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.core.mel import MelConfig
from zoo.hub.lock import LockError, check_card, locked_hf_sha, read_lock
from zoo.registry.cards import CardError, ModelCard, parse_card, split_front_matter
from zoo.registry.plugins import get_registry

FEW = settings(max_examples=40, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

_CARD = get_registry().card("hifigan.ljspeech").to_markdown()
_FRONT, _BODY = split_front_matter(_CARD, "card.md")


@FEW
@given(changes=st.dictionaries(st.sampled_from(sorted(_FRONT) + ["extra_field"]), json_values, max_size=4))
def test_card_parser_gives_a_card_or_a_card_error(changes):
    data = {**_FRONT, **changes}
    try:
        text = "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n" + _BODY
    except yaml.YAMLError:
        return
    try:
        card = parse_card(text, "card.md")
    except CardError as exc:
        assert str(exc).startswith("card.md: field ")
        return
    assert isinstance(card, ModelCard) and card.name == data["name"]


@FEW
@given(text=st.text(max_size=300))
def test_card_parser_on_arbitrary_text(text):
    try:
        parse_card(text, "x.md")
    except CardError:
        pass
    try:
        parse_card("---\n" + text + "\n---\nbody\n", "x.md")
    except CardError:
        pass


_MEL_FIELDS = {f: v for f, v in MelConfig.preset("hifigan").to_dict().items()}


@FEW
@given(changes=st.dictionaries(st.sampled_from(sorted(_MEL_FIELDS)), json_values, max_size=3))
def test_mel_config_from_dict_gives_a_config_or_a_value_error(changes):
    try:
        cfg = MelConfig.from_dict({**_MEL_FIELDS, **changes})
    except ValueError:
        return
    assert MelConfig.from_dict(cfg.to_dict()) == cfg


@FEW
@given(data=st.one_of(json_values, st.fixed_dictionaries(
    {"format": st.just("vocoder-zoo-lock"), "version": st.one_of(st.just(1), json_scalars),
     "models": st.dictionaries(st.text(max_size=10), json_values, max_size=3)})))
def test_lock_reader_gives_a_lock_or_a_lock_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("lock") / "zoo.lock"
    try:
        path.write_text(json.dumps(data))
    except ValueError:
        return
    try:
        lock = read_lock(path)
    except LockError as exc:
        assert "\n" not in str(exc)
        return
    # A lock that reads must also be usable: its checks give LockError, never AttributeError / TypeError.
    card = get_registry().card("hifigan.ljspeech")
    for name in list(lock["models"])[:2] + ["hifigan.ljspeech"]:
        try:
            check_card(lock, card, name)
        except LockError:
            pass
        try:
            locked_hf_sha(lock, name, "a" * 40)
        except LockError:
            pass


@pytest.fixture(scope="module")
def voc():
    return zoo.create("hifigan", upsample_initial_channel=16)


@FEW
@given(batch=st.integers(1, 3), frames=st.integers(1, 6),
       lengths=st.one_of(st.none(), st.lists(st.integers(-3, 8), min_size=0, max_size=4),
                         st.lists(st.floats(-2, 8), min_size=1, max_size=3), st.lists(st.booleans(), max_size=3),
                         st.text(max_size=3)))
def test_vocode_lengths(voc, batch, frames, lengths):
    """Valid lengths give audio zero past each length and equal to vocoding the item alone; anything else
    gives a ValueError naming lengths."""
    mel = torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(frames)) - 4.0
    try:
        audio, out_len = voc.vocode(mel, lengths)
    except ValueError as exc:
        assert "lengths" in str(exc)
        assert lengths is not None
        return
    hop = voc.hop_length
    expected = [frames] * batch if lengths is None else [int(n) for n in lengths]
    assert out_len.tolist() == [n * hop for n in expected]
    for i, n in enumerate(expected):
        assert 1 <= n <= frames
        assert torch.all(audio[i, n * hop:] == 0)
        alone = voc.vocode(mel[i, :, :n])[0]
        assert (audio[i, : n * hop] - alone).abs().max() < 1e-4


_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "X9", ""]


@st.composite
def safetensors_files(draw) -> bytes:
    """A safetensors-like file: an 8-byte little-endian header length (sometimes a lie), a JSON header
    naming tensors with random dtypes, shapes and offsets (sometimes huge), then some bytes of data."""
    tensors = draw(st.dictionaries(st.text(min_size=1, max_size=6), st.fixed_dictionaries({
        "dtype": st.sampled_from(_DTYPES),
        "shape": st.lists(st.one_of(st.integers(0, 8), st.integers(2**31, 2**62)), max_size=3),
        "data_offsets": st.lists(st.one_of(st.integers(0, 64), st.integers(2**40, 2**63 - 1)), min_size=0,
                                 max_size=3)}), max_size=3))
    header = draw(st.one_of(st.just(json.dumps(tensors)), st.text(max_size=40),
                            st.just(json.dumps({"__metadata__": {"architecture": 1}, **tensors}))))
    raw = header.encode()
    length = draw(st.one_of(st.just(len(raw)), st.integers(0, 2**64 - 1)))
    data = draw(st.binary(max_size=64))
    return struct.pack("<Q", length) + raw + data


@FEW
@given(blob=safetensors_files())
def test_fuzzed_safetensors_headers_are_refused_cleanly(voc, tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    path.write_bytes(blob)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="model.safetensors"):
        voc.load_weights(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"reading a {len(blob)}-byte file grew the process by {grown_mib:.0f} MiB"
