"""The real huggingface_hub download path against a local Hub server: download, cache hit, revision pin,
offline mode, tampered and truncated files, concurrent processes, and lock -> pull -> offline vocode.
Also: every shipped model card validates and prints; a malformed card names its file and field."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from zoo_plugins.hifigan import HiFiGAN, HiFiGANConfig

import zoo
from tests.hubserver import FakeHub
from zoo.cli.app import main as cli_main
from zoo.hub.sources import ChecksumError
from zoo.registry.cards import CardError, ModelCard, Source, load_card, parse_card
from zoo.registry.plugins import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
SHA_A = "a" * 39 + "1"
SHA_B = "b" * 39 + "2"


def _publish(hub: FakeHub, tmp: Path, repo: str, sha: str, seed: int) -> tuple[HiFiGAN, str]:
    torch.manual_seed(seed)
    model = HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).eval()
    folder = tmp / f"{repo.replace('/', '_')}-{sha[:4]}"
    model.save_pretrained(folder)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    card = ModelCard(name="hifigan.tiny", architecture="hifigan", config={}, mel=model.mel_config,
                     sources=[Source(kind="hf", repo=repo, revision=sha, filename="model.safetensors", sha256=digest)],
                     license="mit", body="A tiny random HiFi-GAN for tests.\n")
    (folder / "README.md").write_text(card.to_markdown())
    hub.commit_folder(repo, sha, folder)
    return model, digest


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_download_cache_hit_and_revision_pin(hub, tmp_path):
    model_a, _ = _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    model_b, _ = _publish(hub, tmp_path, "zoo/tiny", SHA_B, 1)
    a = zoo.load(f"hf://zoo/tiny@{SHA_A}")
    assert _same(a, model_a) and hub.count("GET", "model.safetensors") == 1
    again = zoo.load(f"hf://zoo/tiny@{SHA_A}")
    assert _same(again, model_a) and hub.count("GET", "model.safetensors") == 1, "a cache hit downloads nothing"
    b = zoo.load(f"hf://zoo/tiny@{SHA_B}")
    assert _same(b, model_b) and not _same(a, b)
    with pytest.raises(ValueError, match="pin a revision"):
        zoo.load("hf://zoo/tiny")
    with pytest.raises(ValueError, match="40-hex"):
        zoo.load("hf://zoo/tiny@main")
    with pytest.raises(FileNotFoundError):
        zoo.load(f"hf://zoo/tiny@{'c' * 40}")


def test_offline_uses_cache_and_says_what_is_missing(hub, tmp_path, monkeypatch):
    model_a, _ = _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    zoo.load(f"hf://zoo/tiny@{SHA_A}")
    hub.stop()  # the network is gone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _same(zoo.load(f"hf://zoo/tiny@{SHA_A}"), model_a)
    assert _same(zoo.load(f"hf://zoo/tiny@{SHA_A}", offline=True), model_a)
    with pytest.raises(FileNotFoundError, match="offline"):
        zoo.load(f"hf://zoo/tiny@{SHA_B}")
    hub.server = types.SimpleNamespace(shutdown=lambda: None, server_close=lambda: None)  # already stopped


def test_tampered_file_is_refused_and_not_cached(hub, tmp_path):
    model_a, _ = _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    hub.tamper.add("model.safetensors")
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        zoo.load(f"hf://zoo/tiny@{SHA_A}")
    blobs = list((tmp_path / "hf-cache").rglob("blobs/*"))
    assert not any(b.stat().st_size > 10_000 for b in blobs), "the bad weights must not stay in the cache"
    hub.tamper.clear()
    assert _same(zoo.load(f"hf://zoo/tiny@{SHA_A}"), model_a), "a clean retry works"


def test_truncated_download_is_refused_then_retried_cleanly(hub, tmp_path):
    model_a, digest = _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    hub.truncate_once.add("model.safetensors")
    try:
        loaded = zoo.load(f"hf://zoo/tiny@{SHA_A}")
    except Exception:  # noqa: BLE001 - huggingface_hub may give up on the cut connection: retry once
        loaded = zoo.load(f"hf://zoo/tiny@{SHA_A}")
    assert _same(loaded, model_a)
    assert hub.count("GET", "model.safetensors") >= 2, "the truncated transfer was not accepted as complete"
    cached = next((tmp_path / "hf-cache").rglob("snapshots/*/model.safetensors"))
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_two_processes_one_download(hub, tmp_path):
    _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    hub.delay = 1.0
    code = f"import zoo; zoo.load('hf://zoo/tiny@{SHA_A}'); print('ok')"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.strip().endswith("ok")
    assert hub.count("GET", "model.safetensors") == 1, "the Hub cache's lock lets one process download"


def test_lock_pull_then_offline_vocode(hub, tmp_path, monkeypatch, capsys):
    _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    name = f"hf://zoo/tiny@{SHA_A}"
    lock = tmp_path / "zoo.lock"
    assert cli_main(["lock", name, "-o", str(lock)]) == 0
    data = json.loads(lock.read_text())
    assert data["models"][name]["revision"] == SHA_A and len(data["models"][name]["sha256"]) == 64
    # A new machine: empty caches, the lock file, network for `zoo pull` only.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "new-hf"))
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "new-zoo"))
    assert cli_main(["pull", "--lock", str(lock)]) == 0
    hub.delay = 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("ZOO_LOCK", str(lock))
    gets = hub.count("GET", "model.safetensors")
    out = tmp_path / "out.wav"
    assert cli_main(["vocode", str(REPO_ROOT / "examples" / "LJ001-0001.wav"), "-o", str(out), "--model", name]) == 0
    assert out.is_file() and hub.count("GET", "model.safetensors") == gets


def test_lock_enforces_card_contents(tmp_path, monkeypatch):
    lock = tmp_path / "zoo.lock"
    assert cli_main(["lock", "hifigan.universal", "-o", str(lock)]) == 0
    monkeypatch.setenv("ZOO_LOCK", str(lock))
    assert zoo.load("hifigan.universal").architecture == "hifigan"
    with pytest.raises(ValueError, match="not in the lock file"):
        zoo.load("hifigan.ljspeech")
    data = json.loads(lock.read_text())
    data["models"]["hifigan.universal"]["sources"][0]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not match the lock file"):
        zoo.load("hifigan.universal")


def test_every_shipped_card_validates_and_prints(capsys):
    cards = sorted((REPO_ROOT / "model_cards").glob("*.*.md"))
    assert cards, "no model cards shipped"
    for path in cards:
        card = load_card(path)
        assert card.name == path.name[: -len(".md")]
        assert parse_card(card.to_markdown(), "round-trip").front_matter() == card.front_matter()
        assert cli_main(["info", card.name]) == 0
        assert f"name: {card.name}" in capsys.readouterr().out
        assert card.name in zoo.list_models()


def test_malformed_card_names_file_and_field_without_breaking_others(tmp_path):
    good = (REPO_ROOT / "model_cards" / "hifigan.universal.md").read_text()
    bad = good.replace("name: hifigan.universal", "name: hifigan.broken").replace(
        "sha256: 771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60", "sha256: nothex")
    path = tmp_path / "hifigan.broken.md"
    path.write_text(bad)
    with pytest.raises(CardError, match=r"hifigan.broken.md: field 'sources\[0\].sha256'"):
        load_card(path)
    plugin = types.SimpleNamespace(zoo_register_model_cards=zoo.hookimpl(lambda register: register(path)))
    with pytest.warns(UserWarning, match="sources"):
        reg = Registry(extra_plugins=[("bad-cards", plugin)])
    assert "hifigan.universal" in reg.cards and "hifigan.broken" not in reg.cards
    assert any("hifigan.broken.md" in f.error for f in reg.failures)


@pytest.mark.parametrize("old,new,field", [
    ("name: hifigan.universal", "name: hifigan", "name"),  # a bare architecture name would shadow its default
    ("license: mit", "license: [1, 2]", "license"),
])
def test_card_fields_are_validated(old, new, field):
    text = (REPO_ROOT / "model_cards" / "hifigan.universal.md").read_text()
    assert old in text
    with pytest.raises(CardError, match=f"field '{field}'"):
        parse_card(text.replace(old, new), "card.md")


def test_card_with_an_unknown_converter_is_reported_not_registered():
    import dataclasses

    card = zoo.card("hifigan.ljspeech")
    bad = dataclasses.replace(card, name="hifigan.badformat",
                              sources=[dataclasses.replace(card.sources[0], format="nosuch")])
    plugin = types.SimpleNamespace(zoo_register_model_cards=zoo.hookimpl(lambda register: register(bad)))
    with pytest.warns(UserWarning, match="'nosuch' is neither 'safetensors' nor a registered converter"):
        reg = Registry(extra_plugins=[("odd-cards", plugin)])
    assert "hifigan.badformat" not in reg.cards and "hifigan.ljspeech" in reg.cards
    assert any(f.plugin == "odd-cards" and "nosuch" in f.error for f in reg.failures)


def test_card_at_another_revision_and_expect_mel(hub, tmp_path, monkeypatch):
    """`name@<sha>` loads a registered card's Hub repo at another commit; expect_mel guards the features."""
    from zoo.registry import plugins as registry

    model_a, digest_a = _publish(hub, tmp_path, "zoo/tiny", SHA_A, 0)
    model_b, _ = _publish(hub, tmp_path, "zoo/tiny", SHA_B, 1)
    card = ModelCard(name="hifigan.hubtiny", architecture="hifigan",
                     config={k: v for k, v in model_a.config.to_dict().items() if k != "mel"},
                     mel=model_a.mel_config, sources=[Source(kind="hf", repo="zoo/tiny", revision=SHA_A,
                                                             filename="model.safetensors", sha256=digest_a)])
    plugin = types.SimpleNamespace(zoo_register_model_cards=zoo.hookimpl(lambda register: register(card)))
    monkeypatch.setattr(registry, "_registry", Registry(extra_plugins=[("hub-cards", plugin)]))
    assert _same(zoo.load("hifigan.hubtiny"), model_a)
    assert _same(zoo.load(f"hifigan.hubtiny@{SHA_B}"), model_b)
    assert zoo.load("hifigan.hubtiny", expect_mel=zoo.MelConfig.preset("hifigan")).architecture == "hifigan"
    with pytest.raises(zoo.MelMismatchError, match="f_max"):
        zoo.load("hifigan.hubtiny", expect_mel=zoo.MelConfig.preset("hifigan").replace(f_max=7600.0))
    # Under a lock the card's revision passes, another one only with its own entry (and its sha256).
    lock = tmp_path / "zoo.lock"
    assert cli_main(["lock", "hifigan.hubtiny", "-o", str(lock)]) == 0
    assert _same(zoo.load(f"hifigan.hubtiny@{SHA_A}", lock=lock), model_a)
    with pytest.raises(ValueError, match=f"'hifigan.hubtiny@{SHA_B}' is not in the lock file"):
        zoo.load(f"hifigan.hubtiny@{SHA_B}", lock=lock)
    assert cli_main(["lock", "hifigan.hubtiny", f"hifigan.hubtiny@{SHA_B}", "-o", str(lock)]) == 0
    assert _same(zoo.load(f"hifigan.hubtiny@{SHA_B}", lock=lock), model_b)
    data = json.loads(lock.read_text())
    data["models"][f"hifigan.hubtiny@{SHA_B}"]["sha256"] = digest_a
    lock.write_text(json.dumps(data))
    with pytest.raises(ChecksumError):
        zoo.load(f"hifigan.hubtiny@{SHA_B}", lock=lock)


def test_lock_pins_local_folders_by_content(tmp_path, capsys):
    torch.manual_seed(0)
    model = HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).eval()
    folder = tmp_path / "mine"
    model.save_pretrained(folder)
    lock = tmp_path / "zoo.lock"
    assert cli_main(["lock", "hifigan.universal", "-o", str(lock)]) == 0
    with pytest.raises(ValueError, match="is not in the lock file; add it with `zoo lock"):
        zoo.load(folder, lock=lock)
    assert cli_main(["lock", "hifigan.universal", str(folder), "-o", str(lock)]) == 0
    moved = tmp_path / "elsewhere"
    folder.rename(moved)  # pinned by content, not by path
    assert _same(zoo.load(moved, lock=lock), model)
    assert cli_main(["pull", "--lock", str(lock)]) == 0  # the folder is skipped: nothing to pull
    assert "elsewhere" not in capsys.readouterr().out
    torch.manual_seed(1)
    HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).save_pretrained(moved)  # other weights
    with pytest.raises(ValueError, match="not in the lock file"):
        zoo.load(moved, lock=lock)


def test_cache_ls_verify_rm(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "cache"))
    zoo.load("hifigan.ljspeech")
    assert cli_main(["cache", "ls"]) == 0
    listing = capsys.readouterr().out
    assert "converted/hifigan-" in listing
    assert cli_main(["cache", "verify"]) == 0
    entry = next((tmp_path / "cache" / "converted").iterdir())
    with (entry / "model.safetensors").open("r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x01\x02")
    assert cli_main(["cache", "verify"]) == 2
    assert "failed verification" in capsys.readouterr().err
    assert cli_main(["cache", "rm", entry.name]) == 0
    assert not entry.exists()
    zoo.load("hifigan.ljspeech")  # reconverted cleanly
    assert cli_main(["cache", "verify"]) == 0


class _RecordingHfApi:
    """Stands in for ``huggingface_hub.HfApi`` in ``zoo push`` (the local Hub server has no upload API)."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, endpoint=None):
        self.calls.append(("init", {"endpoint": endpoint}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return types.SimpleNamespace(oid="c" * 40)


def _push_folder(tmp_path: Path, **card_changes) -> Path:
    model = HiFiGAN(HiFiGANConfig.v1().replace(upsample_initial_channel=16)).eval()
    folder = model.save_pretrained(tmp_path / "run")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    fields = dict(name="hifigan.tiny", architecture="hifigan",
                  config={k: v for k, v in model.config.to_dict().items() if k != "mel"}, mel=model.mel_config,
                  sources=[Source(kind="hf", repo="me/tiny", revision="d" * 40, filename="model.safetensors",
                                  sha256=digest)], license="mit")
    fields.update(card_changes)
    (folder / "README.md").write_text(ModelCard(**fields).to_markdown())
    (folder / "checkpoints").mkdir()  # a training run's leftovers: never uploaded
    (folder / "checkpoints" / "step-100.safetensors").write_bytes(b"x")
    return folder


def test_push_uploads_only_the_model_files_and_prints_the_pin(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    monkeypatch.setattr(_RecordingHfApi, "calls", [])
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    folder = _push_folder(tmp_path)
    assert cli_main(["push", str(folder), "me/tiny", "--private"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"hf://me/tiny@{'c' * 40}" and "checkpoints" in err
    calls = dict(_RecordingHfApi.calls)
    assert calls["init"] == {"endpoint": "http://127.0.0.1:9"}
    assert calls["create_repo"] == {"repo_id": "me/tiny", "private": True, "exist_ok": True}
    up = calls["upload_folder"]
    assert up["repo_id"] == "me/tiny" and Path(up["folder_path"]) == folder
    assert sorted(up["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    from zoo.cli.hub import PUSHED_FILES
    from zoo.core.vocoder import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME

    assert set(PUSHED_FILES) == {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}  # save_pretrained's files


@pytest.mark.parametrize("change,message", [
    (dict(name="waveglow.tiny", architecture="waveglow"), "architecture 'waveglow'"),
    (dict(mel=HiFiGANConfig.v1().mel.replace(f_max=7600.0)), "f_max"),
    (dict(config={"upsample_initial_channel": 32}), "upsample_initial_channel"),
    (dict(sources=[Source(kind="hf", repo="me/tiny", revision="d" * 40, filename="model.safetensors",
                          sha256="0" * 64)]), "sha256 000000000000"),
])
def test_push_refuses_a_card_that_does_not_describe_the_weights(tmp_path, monkeypatch, capsys, change, message):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    monkeypatch.setattr(_RecordingHfApi, "calls", [])
    folder = _push_folder(tmp_path, **change)
    assert cli_main(["push", str(folder), "me/tiny"]) != 0
    err = capsys.readouterr().err
    assert "not pushing" in err and message in err and "Traceback" not in err
    assert _RecordingHfApi.calls == []  # nothing was created or uploaded


def test_push_refuses_a_folder_without_a_card_or_with_damaged_weights(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingHfApi)
    monkeypatch.setattr(_RecordingHfApi, "calls", [])
    folder = _push_folder(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert cli_main(["push", str(folder), "me/tiny"]) != 0
    err = capsys.readouterr().err
    assert "model.safetensors is not a readable safetensors file" in err and "Traceback" not in err
    (folder / "README.md").unlink()
    assert cli_main(["push", str(folder), "me/tiny"]) != 0
    assert "lacks README.md" in capsys.readouterr().err
    assert _RecordingHfApi.calls == []


def test_one_line_is_the_one_error_formatter_of_reports():
    """``zoo.hub.sources.one_line`` formats the hub's errors and ``zoo compare``'s error cells alike."""
    from zoo.cli import compare
    from zoo.hub.sources import one_line

    assert compare.one_line is one_line
    assert one_line(OSError("404 Client Error:  Not Found\n\nRepository Not Found\nPlease check")) == \
        "404 Client Error: Not Found"
    assert one_line(ValueError("  shape\tmismatch  ")) == "shape mismatch"
    assert one_line(KeyError()) == "KeyError"
    long = one_line(RuntimeError("x" * 400))
    assert len(long) == 300 and long.endswith("...")
