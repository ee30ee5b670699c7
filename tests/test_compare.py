"""``zoo compare``: the listening report, opened in a real headless Chromium (Debian's ``chromium``, which
``.ci/run`` installs when missing), and its ``metrics.csv``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from tests.helpers.browser import Browser, file_url, find_chromium
from zoo.audio.report import CSV_COLUMNS
from zoo.cli.app import main

CLIPS = ("LJ001-0002.wav", "LJ001-0004.wav")
MAX_SECONDS = 1.5

# Waits for every <audio> element's metadata (or error), then reports what the DOM says about the media
# and the images.
_MEDIA_JS = """
(async () => {
  const audios = Array.from(document.querySelectorAll('audio'));
  const meta = await Promise.all(audios.map(a => new Promise(resolve => {
    const done = () => resolve({src: a.getAttribute('src'), duration: a.duration, readyState: a.readyState,
                                expected: parseFloat(a.dataset.duration), error: a.error ? a.error.code : null});
    if (a.readyState >= 1 || a.error) { done(); return; }
    a.addEventListener('loadedmetadata', done, {once: true});
    a.addEventListener('error', done, {once: true});
    setTimeout(done, 20000);
  })));
  await Promise.all(Array.from(document.images).map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); })));
  const images = Array.from(document.images).map(i => ({src: i.getAttribute('src'), width: i.naturalWidth}));
  return {meta: meta, images: images};
})()
"""

_COLUMN_JS = """
(() => {
  const t = document.getElementById('%s');
  const col = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent.trim() === '%s');
  return Array.from(t.tBodies[0].rows).map(r => r.cells[col].textContent.trim());
})()
"""

_HEADER_BOX_JS = """
(() => {
  const th = Array.from(document.getElementById('%s').tHead.rows[0].cells).find(c => c.textContent.trim() === '%s');
  th.scrollIntoView({block: 'center'});
  const r = th.getBoundingClientRect();
  return {x: r.left + r.width / 2, y: r.top + r.height / 2};
})()
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory, eval_dir) -> Path:
    """A report of two clips cut to 1.5 s: Griffin-Lim, a tiny random HiFi-GAN (a folder) and a model that
    does not exist."""
    root = tmp_path_factory.mktemp("compare")
    torch.manual_seed(0)
    zoo.create("hifigan", upsample_initial_channel=16).save_pretrained(root / "tiny-hifigan")
    out = root / "report"
    argv = ["compare", "griffinlim", str(root / "tiny-hifigan"), "no-such-model", "--data",
            *[str(eval_dir / c) for c in CLIPS], "-o", str(out), "--max-seconds", str(MAX_SECONDS)]
    assert main(argv) == 0
    return out


def _rows(report: Path) -> list[dict[str, str]]:
    with (report / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_metrics_csv(report, eval_dir):
    rows = _rows(report)
    assert list(rows[0]) == list(CSV_COLUMNS)
    by = {(r["clip"], r["model"]): r for r in rows}
    tiny = str(report.parent / "tiny-hifigan")
    assert len(rows) == len(CLIPS) * 4  # original + 3 models
    for clip in (c[:-4] for c in CLIPS):
        gl, noise, orig = by[(clip, "griffinlim")], by[(clip, tiny)], by[(clip, "original")]
        assert gl["status"] == noise["status"] == orig["status"] == "ok"
        # Griffin-Lim is intelligible; an untrained HiFi-GAN is not, though MR-STFT does not say so as clearly
        assert float(gl["stoi"]) > 0.9 and float(noise["stoi"]) < 0.6
        assert float(gl["pesq_wb"]) > 2.5 > float(noise["pesq_wb"])
        assert float(gl["dnsmos_p808"]) > float(noise["dnsmos_p808"])
        assert float(orig["dnsmos_ovrl"]) > float(noise["dnsmos_ovrl"]) and orig["stoi"] == ""
        assert float(gl["rtf"]) > 0 and float(gl["seconds"]) > 0
        failed = by[(clip, "no-such-model")]
        assert failed["status"].startswith("failed: cannot load: unknown model 'no-such-model'")
        assert failed["stoi"] == ""
    page = (report / "index.html").read_text()
    for col in CSV_COLUMNS[2:-1]:
        if col not in ("dnsmos_sig", "dnsmos_bak", "seconds"):
            assert f">{col}</th>" in page, col
    # the report only links files beside it
    assert "http://" not in page and "https://" not in page and 'src="/' not in page


def test_report_in_headless_chromium(report, tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.fail("no chromium found: install Debian's chromium (apt-get install chromium); .ci/run does it")
    with Browser(exe) as browser:
        browser.open(file_url(report / "index.html"))
        media = browser.evaluate(_MEDIA_JS)

        # every player loads, with the duration of the file behind it
        meta = media["meta"]
        assert len(meta) == len(CLIPS) * 3  # original, griffinlim, tiny (the failed model has no player)
        for m in meta:
            assert m["error"] is None and m["readyState"] >= 1, m
            assert m["duration"] == pytest.approx(m["expected"], abs=2e-3), m
            info = sf.info(str(report / m["src"]))
            assert m["duration"] == pytest.approx(info.frames / info.samplerate, abs=2e-3), m
            if m["src"].endswith("original.wav"):
                assert m["duration"] == pytest.approx(MAX_SECONDS, abs=1e-3)
            else:  # copy-synthesis: whole frames of 256 samples at 22.05 kHz, within a frame of the original
                assert abs(m["duration"] - MAX_SECONDS) <= 256 / 22050 + 1e-3, m
        # every image loads
        images = media["images"]
        assert len(images) == len(CLIPS) * 3 + 1  # spectrograms and the colour bar
        assert all(i["width"] > 0 for i in images), images

        # a real click on a header sorts the table, a second reverses it
        table, col = "all-table", "mr_stft"
        before = browser.evaluate(_COLUMN_JS % (table, col))
        box = browser.evaluate(_HEADER_BOX_JS % (table, col))
        browser.click(box["x"], box["y"])
        asc = browser.evaluate(_COLUMN_JS % (table, col))
        nums = [float(v) for v in asc if v]
        assert nums == sorted(nums) and asc[len(nums):] == [""] * (len(asc) - len(nums))
        assert asc != before  # the report lists rows by clip, not by MR-STFT
        box = browser.evaluate(_HEADER_BOX_JS % (table, col))
        browser.click(box["x"], box["y"])
        desc = [float(v) for v in browser.evaluate(_COLUMN_JS % (table, col)) if v]
        assert desc == sorted(nums, reverse=True)

        # nothing was fetched from the network: every request was for a file of the report (or one of the
        # data: icons of Chromium's own media controls)
        urls = [u for u in browser.requested_urls() if not u.startswith("data:")]
        assert len(urls) > len(meta) and all(u.startswith(file_url(report) + "/") for u in urls), urls

        # the screenshot shows a page, not a blank canvas
        browser.evaluate("window.scrollTo(0, 0)")
        png = browser.screenshot()
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    (tmp_path / "screenshot.png").write_bytes(png)  # kept for a look when the test fails
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50


def test_compare_mels(tmp_path, eval_dir):
    """``--mels``: no reference, so DNSMOS and RTF only; a mel of the wrong shape gets a row saying why."""
    voc = zoo.load("griffinlim")
    audio, sr = sf.read(str(eval_dir / CLIPS[0]), dtype="float32")
    mels = tmp_path / "mels"
    mels.mkdir()
    np.save(mels / "tts_a.npy", voc.mel(torch.from_numpy(audio[:sr])).numpy())
    np.save(mels / "tts_bad.npy", np.zeros((64, 40), dtype=np.float32))
    out = tmp_path / "report"
    assert main(["compare", "griffinlim", "--mels", str(mels), "-o", str(out)]) == 0
    rows = {r["clip"]: r for r in _rows(out)}
    good, bad = rows["tts_a"], rows["tts_bad"]
    assert good["status"] == "ok" and float(good["dnsmos_p808"]) > 1 and float(good["rtf"]) > 0
    assert good["stoi"] == good["pesq_wb"] == good["mr_stft"] == ""
    assert bad["status"].startswith("failed:") and "80" in bad["status"]
    assert "original" not in rows


def test_compare_errors(tmp_path, eval_dir, capsys, monkeypatch):
    assert main(["compare", "griffinlim", "--data", str(tmp_path / "nothing"), "-o", str(tmp_path / "r")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["compare", "griffinlim", "--data", str(eval_dir / CLIPS[0]), "-o", str(tmp_path / "r"),
                 "--max-seconds", "0"]) == 2
    assert "--max-seconds must be > 0" in capsys.readouterr().err
    import zoo.cli.compare

    monkeypatch.setattr(zoo.cli.compare, "quality_available", lambda: False)  # as if the extra were missing
    assert main(["compare", "griffinlim", "--data", str(eval_dir / CLIPS[0]), "-o", str(tmp_path / "r")]) == 2
    assert 'pip install "vocoder-zoo[quality]"' in capsys.readouterr().err
    # without the extra, --no-perceptual still writes a report
    assert main(["compare", "griffinlim", "--data", str(eval_dir / CLIPS[0]), "-o", str(tmp_path / "r"),
                 "--max-seconds", "0.5", "--no-perceptual"]) == 0
    row = _rows(tmp_path / "r")[-1]
    assert row["stoi"] == "" and float(row["mr_stft"]) > 0
    assert json.dumps(row)


def test_docs_example_report_is_whole():
    """The example report under docs/ (linked from the README): every relative link resolves inside its
    folder, nothing points elsewhere, and its metrics.csv has the columns zoo compare writes."""
    import re

    folder = Path(__file__).resolve().parents[1] / "docs" / "compare-example"
    page = (folder / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len([u for u in links if u.endswith(".wav")]) == 8 and len([u for u in links if u.endswith(".png")]) == 9
    for link in links:
        target = (folder / link).resolve()
        assert target.is_relative_to(folder.resolve()) and target.is_file(), link
    rows = _rows(folder)
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 3 * 2**20
