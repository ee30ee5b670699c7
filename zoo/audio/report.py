"""A self-contained static listening report (``zoo compare``): ``index.html`` with the audio, spectrograms
and metrics of every clip and model, ``metrics.csv`` with the same numbers, and the wav and png files beside
them. The page links only to files in its own folder (relative links) and fetches nothing from the network:
its style and its table-sorting script are inline.

Spectrograms are log-magnitude STFTs in dB of full scale (a full-scale sine reads 0 dB), drawn on one
colour scale for the whole report so that the images compare directly. PNG files are written with numpy and
zlib alone (no plotting package needed).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.audio.metrics import HIGHER_IS_BETTER, METRIC_COLUMNS

#: The scale of every spectrogram image, in dB of full scale.
DB_RANGE = (-100.0, -10.0)
SPEC_N_FFT = 1024
SPEC_HOP = 256
SPEC_MAX_HEIGHT = 256

# Viridis at 9 evenly spaced stops (matplotlib's colour map, sampled), interpolated linearly.
_VIRIDIS = np.array([
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37)], dtype=np.float64)

#: Extra per-row columns of ``metrics.csv`` and the page's tables (beside :data:`zoo.audio.metrics.METRIC_COLUMNS`).
TIME_COLUMNS = ("seconds", "rtf")
CSV_COLUMNS = ("clip", "model", *METRIC_COLUMNS, "dnsmos_sig", "dnsmos_bak", *TIME_COLUMNS, "status")


# ---------------------------------------------------------------------- images
def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an ``[height, width, 3]`` uint8 array as an 8-bit RGB PNG."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"expected a non-empty [height, width, 3] uint8 array, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[i].tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def colorize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``values`` (any shape) onto viridis between ``lo`` and ``hi``: uint8 RGB, shape ``values.shape + (3,)``."""
    t = np.clip((np.asarray(values, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(t.astype(np.int64), len(_VIRIDIS) - 2)
    f = (t - i)[..., None]
    return np.round(_VIRIDIS[i] * (1 - f) + _VIRIDIS[i + 1] * f).astype(np.uint8)


def spectrogram_db(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``[freq, time]`` STFT magnitude in dB of full scale (Hann window of :data:`SPEC_N_FFT` samples scaled
    to the 22.05 kHz equivalent, hop a quarter of it), low frequencies first."""
    n_fft = max(64, int(round(SPEC_N_FFT * sample_rate / 22050 / 2)) * 2)
    hop = n_fft // 4
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    window = torch.hann_window(n_fft)
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, hop, n_fft, window, center=True, return_complex=True).abs()
    spec = spec / (window.sum() / 2)  # a full-scale sine peaks at 1
    return (20 * torch.log10(spec.clamp_min(1e-10))).numpy()


def spectrogram_image(audio: np.ndarray, sample_rate: int, path: Path) -> tuple[int, int]:
    """Write the spectrogram of ``audio`` on the report's colour scale (:data:`DB_RANGE`); returns (width,
    height) in pixels."""
    db = spectrogram_db(audio, sample_rate)
    step = max(1, math.ceil(db.shape[0] / SPEC_MAX_HEIGHT))
    if step > 1:  # average bins in groups, so that the picture stays SPEC_MAX_HEIGHT rows or fewer
        rows = db.shape[0] // step * step
        db = 10 * np.log10(np.mean(10 ** (db[:rows] / 10).reshape(-1, step, db.shape[1]), axis=1))
    rgb = colorize(db[::-1], *DB_RANGE)
    write_png(path, np.ascontiguousarray(rgb))
    return rgb.shape[1], rgb.shape[0]


def colorbar_image(path: Path, width: int = 256, height: int = 12) -> None:
    """The colour scale, :data:`DB_RANGE` from left to right."""
    ramp = np.linspace(*DB_RANGE, width)[None, :].repeat(height, axis=0)
    write_png(path, colorize(ramp, *DB_RANGE))


# ---------------------------------------------------------------------- data
@dataclasses.dataclass
class Cell:
    """One clip vocoded by one model (or the original recording, ``model == "original"``)."""

    clip: str
    model: str
    audio: str | None = None  # path relative to the report folder
    image: str | None = None
    duration: float | None = None  # seconds of audio in ``audio``
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float | None = None  # vocoding time
    error: str | None = None

    @property
    def rtf(self) -> float | None:
        if self.seconds is None or not self.duration:
            return None
        return self.seconds / self.duration

    def row(self) -> dict[str, Any]:
        """The ``metrics.csv`` row."""
        out: dict[str, Any] = {"clip": self.clip, "model": self.model}
        for col in CSV_COLUMNS[2:-3]:
            out[col] = _fmt(self.metrics.get(col), 4)
        out["seconds"] = _fmt(self.seconds, 4)
        out["rtf"] = _fmt(self.rtf, 4)
        out["status"] = f"failed: {self.error}" if self.error else "ok"
        return out


@dataclasses.dataclass
class ModelSummary:
    """A model's line of the summary table."""

    model: str
    sample_rate: int | None = None
    parameters: int | None = None
    mel_fingerprint: str | None = None
    error: str | None = None
    note: str = ""


def _fmt(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.{digits}f}"


def means(cells: Sequence[Cell], model: str) -> dict[str, float]:
    """Mean of each metric over the clips ``model`` produced, and its overall RTF (total vocoding time over
    total audio)."""
    ok = [c for c in cells if c.model == model and c.error is None]
    out: dict[str, float] = {}
    for col in (*METRIC_COLUMNS, "dnsmos_sig", "dnsmos_bak"):
        vals = [c.metrics[col] for c in ok if col in c.metrics]
        if vals:
            out[col] = float(np.mean(vals))
    timed = [c for c in ok if c.seconds is not None and c.duration]
    if timed:
        out["rtf"] = sum(c.seconds for c in timed) / sum(c.duration for c in timed)  # type: ignore[misc]
    return out


def write_csv(path: Path, cells: Sequence[Cell]) -> None:
    """``metrics.csv``: one row per clip and model, a column per metric (:data:`CSV_COLUMNS`)."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for c in cells:
            writer.writerow(c.row())


# ---------------------------------------------------------------------- html
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1800px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}
th{background:#eee;cursor:pointer;user-select:none;white-space:nowrap}
td:first-child,td.text,th:first-child{text-align:left}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.cell{border:1px solid #ddd;padding:6px;border-radius:4px;background:#fafafa}
.cell h3{font-size:.95em;margin:.2em 0}.cell img{display:block;height:160px;max-width:100%}
.cell audio{width:100%;min-width:260px}
.failed{color:#a00;max-width:320px}
.note{color:#555;font-size:.9em}
"""

# Sorting: a click on a header sorts the table's body by that column (numbers by data-v, text otherwise),
# a second click reverses it; empty cells go last.
_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, col){
    th.addEventListener('click', function(){
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(r){
        var c = r.cells[col]; var v = c.getAttribute('data-v');
        return v === null ? c.textContent.trim() : (v === '' ? null : parseFloat(v));
      }
      rows.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === null || x === '') return (y === null || y === '') ? 0 : 1;
        if (y === null || y === '') return -1;
        var d = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? d : -d;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num_td(value: float | None, digits: int) -> str:
    if value is None:
        return '<td data-v=""></td>'
    return f'<td data-v="{value!r}">{_fmt(value, digits)}</td>'


def _metric_header(col: str) -> str:
    arrow = "higher is better" if col in HIGHER_IS_BETTER else "lower is better"
    return f'<th title="{arrow}">{col}</th>'


def _metrics_table(cells: Sequence[Cell], table_id: str) -> list[str]:
    cols = (*METRIC_COLUMNS, *TIME_COLUMNS)
    out = [f'<table class="sortable" id="{_e(table_id)}"><thead><tr><th>clip</th><th>model</th>'
           + "".join(_metric_header(c) if c in METRIC_COLUMNS else f"<th>{c}</th>" for c in cols)
           + "<th>status</th></tr></thead><tbody>"]
    for c in cells:
        tds = [f'<td class="text">{_e(c.clip)}</td>', f'<td class="text">{_e(c.model)}</td>']
        for col in METRIC_COLUMNS:
            tds.append(_num_td(c.metrics.get(col), 3))
        tds += [_num_td(c.seconds, 3), _num_td(c.rtf, 3)]
        status = f'<td class="text failed">failed: {_e(c.error)}</td>' if c.error else '<td class="text">ok</td>'
        out.append("<tr>" + "".join(tds) + status + "</tr>")
    out.append("</tbody></table>")
    return out


def write_html(path: Path, *, title: str, clips: Sequence[str], cells: Sequence[Cell],
               models: Sequence[ModelSummary], machine: dict[str, Any], notes: Sequence[str] = ()) -> None:
    """Write ``index.html``: the summary table, then per clip the players, spectrograms and metric table."""
    names = ["original", *[m.model for m in models]] if any(c.model == "original" for c in cells) else \
        [m.model for m in models]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<style>{_STYLE}</style></head><body>", f"<h1>{_e(title)}</h1>"]
    parts += [f'<p class="note">{_e(n)}</p>' for n in notes]
    parts.append("<h2 id=\"summary\">Summary (means over the clips)</h2>")
    cols = (*METRIC_COLUMNS, "rtf")
    parts.append('<table class="sortable" id="summary-table"><thead><tr><th>model</th>'
                 + "".join(_metric_header(c) if c in METRIC_COLUMNS else f"<th>{c}</th>" for c in cols)
                 + "<th>clips</th><th>parameters</th><th>sample_rate</th><th>mel_fingerprint</th><th>status</th>"
                 "</tr></thead><tbody>")
    summaries = {m.model: m for m in models}
    for name in names:
        m = summaries.get(name, ModelSummary(name))
        mean = means(cells, name)
        n_ok = sum(1 for c in cells if c.model == name and c.error is None)
        tds = [f'<td class="text">{_e(name)}</td>'] + [_num_td(mean.get(c), 3) for c in cols]
        tds.append(_num_td(float(n_ok), 0))
        tds.append(_num_td(float(m.parameters) if m.parameters is not None else None, 0))
        tds.append(_num_td(float(m.sample_rate) if m.sample_rate else None, 0))
        tds.append(f'<td class="text"><code>{_e(m.mel_fingerprint or "")}</code></td>')
        failed = m.error or next((c.error for c in cells if c.model == name and c.error), None)
        status = f'<td class="text failed">failed: {_e(failed)}</td>' if failed else \
            f'<td class="text">ok{_e(" (" + m.note + ")") if m.note else ""}</td>'
        parts.append("<tr>" + "".join(tds) + status + "</tr>")
    parts.append("</tbody></table>")
    parts.append('<p class="note">Spectrograms: STFT magnitude, dB of full scale, one colour scale for every image: '
                 f'{DB_RANGE[0]:.0f} dB <img src="colorbar.png" alt="colour scale" width="256" height="12"> '
                 f'{DB_RANGE[1]:.0f} dB; frequency from 0 (bottom) to half the sample rate (top).</p>')
    parts.append("<h2>Machine</h2><table><tbody>" + "".join(
        f'<tr><td class="text">{_e(k)}</td><td class="text">{_e(v)}</td></tr>' for k, v in machine.items())
        + "</tbody></table>")
    for i, clip in enumerate(clips):
        parts.append(f'<h2 id="clip-{i}">{_e(clip)}</h2><div class="grid">')
        for c in (c for c in cells if c.clip == clip):
            parts.append(f'<div class="cell"><h3>{_e(c.model)}</h3>')
            if c.error:
                parts.append(f'<p class="failed">failed: {_e(c.error)}</p>')
            else:
                dur = f' data-duration="{c.duration:.6f}"' if c.duration else ""
                parts.append(f'<audio controls preload="metadata" src="{_e(c.audio)}"{dur}></audio>')
                if c.image:
                    parts.append(f'<img src="{_e(c.image)}" alt="spectrogram of {_e(c.model)} on {_e(clip)}">')
            parts.append("</div>")
        parts.append("</div>")
        parts += _metrics_table([c for c in cells if c.clip == clip], f"clip-table-{i}")
    parts.append("<h2>Every clip</h2>")
    parts += _metrics_table(cells, "all-table")
    parts.append('<p class="note">The same numbers are in <a href="metrics.csv">metrics.csv</a>.</p>')
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
