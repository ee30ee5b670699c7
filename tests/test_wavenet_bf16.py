"""WaveNet's bfloat16-weight sampling (issue 30 item 2): a bfloat16 model samples with float32 activations and
sums, its weights stored in bfloat16. The compiled loop widens each bfloat16 weight to float32 as it loads it
and sums the same terms in the same order as the float32 loop, so on every ISA variant it must give the
float32 loop's samples on the bfloat16-rounded weights *exactly* (tolerance 0, same draws); the TorchScript
step (no compiled loop) computes the same function up to float32 rounding (1e-5, as the float32 tests)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from zoo_plugins.wavenet import WaveNet, WaveNetConfig, kernel
from zoo_plugins.wavenet.incremental import IncrementalSampler

import zoo
from tests.helpers import kernels
from zoo.kernels import native
from zoo.registry.plugins import kernel_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import wavenet_bf16_quality as wq  # noqa: E402

#: Tiny configs covering the loop's cases: full 64-column tiles (the three-vector past-tap products), gate
#: halves that straddle a tile and narrower last tiles, taps 1 to 64 steps back, each output distribution,
#: a front conv over several past samples, and the legacy skip combination.
CONFIGS = {
    "mol-full-tiles": dict(distribution="mol", layers=7, stacks=1, residual_channels=64, gate_channels=128,
                           skip_channels=64, skip_mode="legacy_iterative"),
    "gaussian-partial-tiles": dict(distribution="gaussian", layers=7, stacks=1, residual_channels=72,
                                   gate_channels=200, skip_channels=80, front_kernel_size=4,
                                   front_activation="relu", kernel_size=2),
    "mulaw": dict(distribution="mulaw", layers=6, stacks=2, residual_channels=64, gate_channels=128,
                  skip_channels=64, front_kernel_size=4, front_activation="relu"),
}


@pytest.fixture(params=kernels.LEVELS["wavenet"])
def wavenet_isa(request):
    """The test on each ISA variant of the compiled WaveNet loop that this CPU runs."""
    with kernels.variant("wavenet", request.param):
        yield request.param


def _models(name: str, seed: int = 0) -> tuple[WaveNet, WaveNet]:
    """``(bfloat16 model, float32 model holding its bfloat16-rounded weights)`` with random weights."""
    kw = dict(CONFIGS[name])
    model = WaveNet(WaveNetConfig.small(kw.pop("distribution"), **kw)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    bf16 = model.to(torch.bfloat16)
    return bf16, copy.deepcopy(bf16).float()


def _sample(model: WaveNet, c_up: torch.Tensor, *, use_kernel: bool = True, threads: int = 2) -> tuple:
    sampler = IncrementalSampler(model, c_up.shape[0])
    sampler.use_kernel, sampler.threads = use_kernel, threads
    samples = sampler.run(c_up, generator=torch.Generator().manual_seed(0), temperature=0.9)[0]
    return samples, sampler


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bf16_loop_equals_the_float32_loop_on_rounded_weights(wavenet_isa, name):
    """Every ISA variant, batch 3 (three-vector groups and a remainder), two threads: the bfloat16 loop's
    samples are bit-identical to the float32 loop's on the rounded weights, and it streams bfloat16."""
    assert kernel.load().isa == wavenet_isa
    bf16, rounded = _models(name)
    mel = torch.randn(3, 80, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        c_up = bf16.upsample_mel(mel)  # a float32 mel: upsampled in float32 with the bfloat16 weights
        assert c_up.dtype == torch.float32 and torch.equal(c_up, rounded.upsample_mel(mel))
        got, sampler = _sample(bf16, c_up)
        want, ref_sampler = _sample(rounded, c_up)
    assert want.float().std() > 0.01
    assert torch.equal(got, want)
    assert sampler.weight_dtype == torch.bfloat16 and sampler.dtype == torch.float32
    packed = {t.dtype for t in sampler._packed if t.is_floating_point()}
    assert packed == {torch.bfloat16, torch.float32}  # the streamed matrices bfloat16, biases float32
    assert sampler._packed[2].dtype == torch.bfloat16 and ref_sampler._packed[2].dtype == torch.float32
    every, amortised = kernel.weight_bytes_per_sample(sampler)
    assert (2 * every, 2 * amortised) == kernel.weight_bytes_per_sample(ref_sampler)


@pytest.mark.usefixtures("wavenet_isa")
@pytest.mark.parametrize("batch", [2, 7, 8, 17])
@pytest.mark.parametrize("weights", ["float32", "bfloat16"])
def test_batched_items_equal_each_item_alone_on_full_tiles(batch, weights):
    """Every ISA variant, 64-column tiles, float32 and bfloat16 weights: a batch sampled in one loop on two
    threads (its items grouped by the tile kernels: eight at a time with AVX-512 and a remainder of one to
    seven, three at a time with AVX2) gives each item exactly the samples it gets alone on one thread."""
    bf16, rounded = _models("mol-full-tiles", seed=6)
    model = bf16 if weights == "bfloat16" else rounded
    mel = torch.randn(batch, 80, 1, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        sampler = IncrementalSampler(model, batch)
        sampler.threads = 2
        together = sampler.run(c_up, seed=9, temperature=0.9)[0]
        assert together.float().std() > 0.01
        for i in range(batch):
            sampler = IncrementalSampler(model, 1)
            sampler.threads = 1
            assert torch.equal(sampler.run(c_up[i:i + 1], seed=9, temperature=0.9)[0][0], together[i]), i


@pytest.mark.usefixtures("wavenet_isa")
def test_bf16_loop_threads_and_blocks_give_the_same_samples(monkeypatch):
    """Across blocks (the past-tap state carried between calls), 3 threads against the float32 loop on 1."""
    from zoo_plugins.wavenet import incremental

    monkeypatch.setattr(incremental, "BLOCK", 300)
    bf16, rounded = _models("gaussian-partial-tiles", seed=2)
    with torch.no_grad():
        c_up = bf16.upsample_mel(torch.randn(2, 80, 2, generator=torch.Generator().manual_seed(2)))
        want = _sample(rounded, c_up, threads=1)[0]
        assert c_up.shape[-1] > incremental.BLOCK and want.std() > 0.01
        assert torch.equal(_sample(bf16, c_up, threads=3)[0], want)


@pytest.mark.parametrize("name", ["gaussian-partial-tiles", "mulaw"])
def test_bf16_torchscript_step_samples_and_teacher_forces_as_the_rounded_model(name):
    """Without the compiled loop (``ZOO_DISABLE_KERNEL``, or not built) the TorchScript step takes the mode:
    float32 state and float32 copies of the bfloat16 weights. Sampling with the same draws matches the
    compiled loop (the float32 TorchScript step on the rounded weights where the loop is not built) within
    1e-5 (mu-law classes exactly); teacher-forced, its outputs match the rounded model's full forward within
    1e-5."""
    bf16, rounded = _models(name, seed=3)
    mel = torch.randn(2, 80, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        c_up = bf16.upsample_mel(mel)
        step, sampler = _sample(bf16, c_up, use_kernel=False)
        assert sampler._packed is None and all(w.dtype == torch.float32 for w in sampler._dense_weights())
        built = native.kernel("wavenet") is not None
        other = _sample(bf16, c_up)[0] if built else _sample(rounded, c_up, use_kernel=False)[0]
        assert step.float().std() > 0.01
        if name == "mulaw":
            assert torch.equal(step, other)
        else:
            torch.testing.assert_close(step, other, atol=1e-5, rtol=1e-5)
        # teacher-forced: the model's own samples as inputs
        dist = rounded.distribution
        inputs = dist.input_from_sample(step) if name == "mulaw" else step.unsqueeze(1)
        tf = IncrementalSampler(bf16, 2).run(c_up, inputs=inputs.float())[1]
        full = rounded.teacher_forced(inputs.float(), c_up)
    assert tf.dtype == torch.float32
    torch.testing.assert_close(tf, full, atol=1e-5, rtol=1e-5)


def test_bf16_model_vocodes_float32_audio_as_the_rounded_model():
    """The opt-in the other models have: ``.to(torch.bfloat16)`` (and ``zoo.load(..., dtype=bfloat16)``) gives
    float32 audio, that of the float32 model with the rounded weights (the mel is not rounded), on the path
    ``zoo info --kernels`` names; float32 stays the default."""
    bf16, rounded = _models("mol-full-tiles", seed=4)
    mel = torch.randn(80, 3, generator=torch.Generator().manual_seed(4))
    audio = bf16.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    want = rounded.vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    assert audio.dtype == torch.float32 and audio.abs().max() > 0
    torch.testing.assert_close(audio, want, atol=1e-5, rtol=1e-5)
    path = kernel_path("wavenet", "bfloat16")
    assert "bfloat16" in path and ("compiled" in path or "TorchScript" in path)
    assert zoo.load("wavenet.trainpm").dtype == torch.float32
    voc = zoo.load("wavenet.trainpm", dtype=torch.bfloat16)
    assert voc.dtype == torch.bfloat16
    out = voc.vocode(torch.zeros(80, 2) - 5.0, generator=torch.Generator().manual_seed(0))[0]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_a_library_with_other_weight_sizes_is_refused():
    """kernel.py checks the library's weight codes (wavenet.h WN_WEIGHTS_*) by their element sizes."""

    def lib(sizes: dict[int, int]) -> SimpleNamespace:
        def fn(value):
            return lambda *args: value(*args) if callable(value) else value

        return SimpleNamespace(zoo_wavenet_tile_width=fn(kernel.TILE), zoo_wavenet_pre_max=fn(kernel.PRE_MAX),
                               zoo_wavenet_weight_bytes=fn(lambda code: sizes.get(code, 0)),
                               zoo_wavenet_generate=fn(0), zoo_wavenet_work_size=fn(0), zoo_wavenet_pre_size=fn(0))

    kernel.SPEC.configure(lib({0: 4, 1: 2}))  # the library as built
    for sizes in ({0: 4, 1: 4}, {0: 4}, {0: 2, 1: 4}):
        with pytest.raises(native.KernelLoadError, match="stores weights"):
            kernel.SPEC.configure(lib(sizes))


def test_nll_benchmark_logic():
    """benchmarks/wavenet_bf16_quality.py's teacher-forced NLL: the rounded copy holds bfloat16 values in
    float32 (the original untouched), the NLL sum and count agree with the model's own loss, and a model
    compared with itself changes by nothing."""
    bf16, rounded = _models("gaussian-partial-tiles", seed=5)
    model = copy.deepcopy(rounded)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-3)
    copy32 = wq.rounded_copy(model)
    for p, q in zip(model.parameters(), copy32.parameters(), strict=True):
        assert q.dtype == torch.float32 and torch.equal(q, p.bfloat16().float()) and not torch.equal(p, q)
    audio = 0.1 * torch.randn(1, 3 * 256, generator=torch.Generator().manual_seed(5))
    mel = torch.randn(1, 80, 3, generator=torch.Generator().manual_seed(6))
    total, count = wq.teacher_forced_nll(model, audio, mel)
    assert count == 3 * 256 - 1
    with torch.no_grad():
        assert total / count == pytest.approx(float(model.loss(audio, mel)["loss"]), rel=1e-5)
    res = wq.nll_table([("a", audio[0], mel)], model, model)
    assert res["delta_nats_per_sample"] == 0.0 and res["samples"] == count


def test_bf16_speed_target_and_section_from_the_interleaved_rows():
    """The bfloat16-weight target is read from the LJSpeech comparison's ``bfloat16`` rows (timed interleaved with
    our float32 loop), per thread count, and fails where the row's identity check failed; without such rows it
    falls back to ``wavenet_sampling.py``. The performance page's section shows both results."""
    import benchcheck as bc
    import performance

    def row(vs: float, ok: bool = True) -> dict:
        return {"dtype": "bfloat16", "vs_float32": vs, "target_vs_float32": 1.7, "ours_samples_per_s": 100 * vs,
                "float32_samples_per_s": 100.0, "bf16_ok": ok, "ceiling_samples_per_s": 400.0,
                "weight_mb_per_sample": 28.1, "read_gbs": 11.2}

    f32 = {"ours_samples_per_s": 300.0, "ceiling_samples_per_s": 338.0}
    ceilings = {1: {"rows": [f32, row(1.9)]}, 2: {"rows": [f32, row(1.9, ok=False)]}}
    wavenet = {"rows": [{"config": "r9y9-ljspeech (24L)", "batch": 1, "incremental": 400.0},
                        {"config": "r9y9-ljspeech (24L)", "dtype": "bfloat16", "batch": 1, "incremental": 900.0}]}
    t = {x.target: x for x in bc.targets({}, ceilings=ceilings, wavenet=wavenet)}
    name = "r9y9 LJSpeech WaveNet bfloat16 weights vs our float32 loop, batch 1"
    assert t[f"{name}, 1 thread(s)"].verdict == bc.MET and t[f"{name}, 1 thread(s)"].measured.startswith("1.90x")
    assert t[f"{name}, 2 thread(s)"].verdict == bc.NOT_MET  # fast, but its samples differed
    assert name not in t  # the non-interleaved fallback is not used when interleaved rows exist
    assert t["r9y9 LJSpeech WaveNet float32 against the read-bandwidth ceiling, 1 thread(s)"].measured.startswith("89%")
    t = {x.target: x for x in bc.targets({}, ceilings={1: {"rows": [f32]}}, wavenet=wavenet)}
    assert t[name].verdict == bc.MET and t[name].measured.startswith("2.25x")
    quality = {"model": "wavenet.trainpm", "files": 16, "mode_check_samples": 2048, "mode_check_max_abs_diff": 1e-6,
               "nll": {"samples": 1000, "nll_float32": -1.5, "nll_bfloat16": -1.49, "delta_nats_per_sample": 0.01,
                       "delta_min_clip": 0.001, "delta_max_clip": 0.02},
               "sampled": {"means": {"bfloat16": {"stoi": 0.5, "pesq_wb": 1.1, "mr_stft": 1.2},
                                     "float32_seed1": {"stoi": 0.51, "pesq_wb": 1.12, "mr_stft": 1.19}}}}
    text = "\n".join(performance.wavenet_bf16_section([{**row(1.9), "threads": 1}], quality))
    assert "| 1 (wall clock) | 100 | 190 | 1.90x | 28.1 | 11.2 | 400 | 48% | ok |" in text
    assert "| change | +1.00e-02" in text
    assert "| bfloat16 weights, seed 0 | 0.500 | 1.10 | 1.200 |" in text
    assert performance.wavenet_bf16_section([], None) == []


def test_compare_reference_prints_the_bf16_row():
    """The LJSpeech WaveNet's bfloat16 row prints its interleaved runs against our float32 loop, the target's
    verdict and its own ceiling (it has no reference runs of its own)."""
    import compare_reference as cr

    r = {"model": "wavenet r9y9 LJSpeech (24L 512/512/256)", "dtype": "bfloat16", "reference_s": 10.0, "ours_s": 2.0,
         "speedup": 5.0, "max_abs_diff": 0.0, "check": "ok: identical", "vs_float32": 1.6, "target_vs_float32": 1.7,
         "float32_runs_s": [3.0, 3.1], "ours_runs_s": [1.9, 2.0], "extrapolated_from_samples": 2048,
         "ceiling_samples_per_s": 100.0, "read_gbs": 2.8, "weight_mb_per_sample": 28.1, "ceiling": 7.0,
         "ours_samples_per_s": 90.0}
    text = cr.describe(r)
    assert "float32 3-3.1 s, bfloat16 1.9-2 s): 1.60x the samples/s, target >= 1.7x NOT met" in text
    assert "(2.8 GB/s / 28.1 MB per sample)" in text and "ours 90 samples/s = 90% of it" in text
