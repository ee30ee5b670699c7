"""``benchmarks/bf16_quality.py``: its scores are the quality metrics' (identical outputs score perfectly, a
known degradation lower), a model row takes the same noise in both dtypes and skips models without trained
weights, the "bfloat16 quality cost" section of ``docs/performance.md`` is the committed result's, and
bfloat16 is nowhere a default."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import benchcheck as bc  # noqa: E402
import bf16_quality as bq  # noqa: E402

SR = 22050


@pytest.fixture(scope="module")
def clip(eval_dir) -> torch.Tensor:
    from zoo.train.data import load_audio

    return load_audio(sorted(eval_dir.glob("*.wav"))[0], SR)[: 2 * SR]


def test_identical_outputs_score_perfectly(clip):
    from zoo.audio.metrics import PESQ_MAX

    assert bc.PESQ_MAX == PESQ_MAX  # benchcheck's torch-free copy
    same = bq.clip_scores(clip, clip.clone(), clip, SR)
    assert same["stoi_vs_f32"] == pytest.approx(1.0, abs=1e-9)
    assert same["pesq_vs_f32"] == pytest.approx(PESQ_MAX, abs=1e-3)
    assert same["mr_stft_vs_f32"] == pytest.approx(0.0, abs=1e-9)
    assert same["max_abs_vs_f32"] == 0.0 and same["rel_rms_vs_f32"] == 0.0
    summary = bq.summarize([same, same])
    for metric in ("stoi", "pesq", "mr_stft"):
        assert summary[f"{metric}_delta"] == 0.0
    assert summary["stoi_f32"] == pytest.approx(1.0, abs=1e-9)  # the "float32 output" here is the recording
    assert bc.bf16_quality_verdict({**summary, "files": 2})[0] == bc.MET


def test_a_known_degradation_scores_lower(clip):
    noisy = clip + 0.02 * clip.abs().max() * torch.randn(clip.shape, generator=torch.Generator().manual_seed(0))
    worse = bq.clip_scores(clip, noisy, clip, SR)
    assert worse["stoi_vs_f32"] < 0.99
    assert worse["pesq_vs_f32"] < bc.PESQ_MAX - 0.5
    assert worse["mr_stft_vs_f32"] > 0.1
    assert worse["max_abs_vs_f32"] == pytest.approx(float((noisy - clip).abs().max()), rel=1e-6)
    assert worse["rel_rms_vs_f32"] == pytest.approx(float((noisy - clip).norm() / clip.norm()), rel=1e-5)
    summary = bq.summarize([worse])
    assert summary["pesq_delta"] < -0.5 and summary["stoi_delta"] < 0 and summary["mr_stft_delta"] > 0.1
    verdict, measured = bc.bf16_quality_verdict({**summary, "files": 1})
    assert verdict == bc.NOT_MET and "PESQ" in measured
    # a small cost against the recordings but not against the float32 output still fails (and the reverse)
    assert bc.bf16_quality_verdict({**summary, "pesq_delta": 0.0, "stoi_delta": 0.0})[0] == bc.NOT_MET
    ok = bq.summarize([bq.clip_scores(clip, clip.clone(), clip, SR)])
    assert bc.bf16_quality_verdict({**ok, "pesq_delta": -0.2})[0] == bc.NOT_MET
    assert bc.bf16_quality_verdict({**ok, "stoi_vs_f32": float("nan")})[0] == bc.NOT_MEASURED
    with pytest.raises(ValueError, match="differ in shape"):
        bq.clip_scores(clip, clip[:-1], clip, SR)


def test_pesq_is_left_out_where_it_finds_no_speech_in_the_float32_output(clip, monkeypatch):
    """PESQ scores 1.0 where its voice detector finds no speech in the reference, even against itself (a
    seed's quiet noise-like output on one clip): such a clip is not scored against the float32 output, rather
    than counted as a cost, and the mean is over the clips PESQ can score."""
    import zoo.audio.metrics as metrics

    monkeypatch.setattr(metrics, "pesq_wb", lambda estimate, reference, sample_rate: 1.0)
    quiet = bq.clip_scores(clip, clip.clone(), clip, SR)
    assert quiet["pesq_vs_f32"] is None and quiet["stoi_vs_f32"] == pytest.approx(1.0, abs=1e-9)
    monkeypatch.undo()
    scored = bq.clip_scores(clip, clip.clone(), clip, SR)
    summary = bq.summarize([quiet, scored, scored])
    assert summary["pesq_vs_f32"] == pytest.approx(scored["pesq_vs_f32"]) and summary["pesq_vs_f32_unscored"] == 1
    verdict, measured = bc.bf16_quality_verdict({**summary, "files": 3})
    assert verdict == bc.MET and "no speech in 1 float32 output" in measured
    none = bq.summarize([quiet])
    assert none["pesq_vs_f32"] is None and none["worst_pesq_vs_f32"] is None
    assert bc.bf16_quality_verdict({**none, "files": 1})[0] == bc.NOT_MEASURED


def test_model_row_draws_the_same_noise_in_both_dtypes(eval_dir):
    """The shipped Parallel WaveNet student (stochastic: its output is shaped noise) on 1.5 s of one clip: with
    the same seed in both dtypes its bfloat16 output follows the float32 one (STOI near 1; with different
    noise it scores far lower), and the recording-side scores are those of each output."""
    files = sorted(eval_dir.glob("*.wav"))[:1]
    row = bq.measure_model("parallel_wavenet", files, seed=3, seconds=1.5)
    assert row["model"] == "parallel_wavenet.trainpm" and row["architecture"] == "parallel_wavenet"
    assert row["files"] == 1 and row["weights"].startswith("seed")
    assert set(row["kernel_path"]) == {"float32", "bfloat16"}
    assert row["stoi_vs_f32"] > 0.95 and 0 < row["max_abs_vs_f32"] < 0.05
    assert row["per_file"][0]["file"] == files[0].name
    assert row["stoi_delta"] == pytest.approx(row["stoi_bf16"] - row["stoi_f32"])


def test_models_without_trained_weights_are_not_measured(eval_dir):
    files = sorted(eval_dir.glob("*.wav"))[:1]
    assert "no trained weights" in bq.measure_model("nosuch.model", files)["skipped"]
    nvidia = bq.measure_model("waveglow.nvidia", files)  # converted weights: not in this session's cache
    assert nvidia["skipped"].startswith("trained weights not available here") and "per_file" not in nvidia


def test_page_section_is_the_committed_result():
    """docs/performance.md's "bfloat16 quality cost" section is the committed JSON's, rendered: every table
    row (scores, kernel path, verdict) matches the measurement; and the run covers every default model on
    all 16 eval-lj clips, and states each trained parallel architecture's cost."""
    result = json.loads(bq.RESULT.read_text())
    page = bq.DOC.read_text()
    section = "\n".join(bq.section(result))
    assert section.startswith(bq.HEADING) and section in page
    assert page.count(bq.HEADING) == 1
    assert result["files"] == 16 and result["cpu_flags"] and result["torch_cpu_capability"]
    assert {m["model"] for m in result["models"]} >= set(bq.DEFAULT_MODELS)
    measured = {m["architecture"] for m in result["models"] if "skipped" not in m}
    assert measured >= set(bc.ARCHITECTURES.values())
    for m in result["models"]:
        if "skipped" not in m:
            assert m["files"] == 16 and len(m["per_file"]) == 16
            assert m["kernel_path"]["bfloat16"] in page
            assert bq.summarize(m["per_file"]).items() <= m.items()  # the means are the clips'


def test_write_section_replaces_only_its_own_section():
    page = "# Performance\n\n## Targets\n\nt\n\n## What the fast paths are\n\n- x\n"
    first = bq.write_section(page, [bq.HEADING, "", "one", ""])
    assert first == page.replace("## What the fast paths are", f"{bq.HEADING}\n\none\n\n## What the fast paths are")
    second = bq.write_section(first, [bq.HEADING, "", "two", "rows", ""])
    assert second == first.replace("one\n", "two\nrows\n")
    assert bq.write_section("# P\n", [bq.HEADING, "", "a"]) == f"# P\n\n{bq.HEADING}\n\na\n"


def _dtype_defaults(parser: argparse.ArgumentParser, path: str = "zoo") -> dict[str, object]:
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_dtype_defaults(sub, f"{path} {name}"))
        elif action.dest == "dtype":
            out[path] = action.default
    return out


def test_bfloat16_is_never_a_default():
    """No command runs in bfloat16 unless asked (``zoo bench``'s default ``None`` means float32), and a model
    loaded without ``dtype=`` is float32, a seed stored in float16 included."""
    import zoo
    from zoo.cli.app import build_parser

    defaults = _dtype_defaults(build_parser())
    assert {"zoo vocode", "zoo bench", "zoo compare"} <= set(defaults)
    assert all(d in (None, "float32") for d in defaults.values()), defaults
    assert zoo.load("flowavenet.trainpm").dtype == torch.float32
