"""WaveNet: padded batches of different lengths sampled in one loop (each item stopping at its own length,
equal to vocoding it alone with the same seed) and streaming that equals one-shot vocoding, for the compiled
loop and the TorchScript step."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from zoo_plugins.wavenet import WaveNet, WaveNetConfig
from zoo_plugins.wavenet.incremental import IncrementalSampler

from tests.helpers import kernels
from zoo.cli.app import main
from zoo.core.mel import MelConfig
from zoo.core.stream import stream, vocode_long


@pytest.fixture(params=["kernel", "torchscript"])
def loop(request, monkeypatch):
    """Run the test with the compiled sampling loop, then with the TorchScript step."""
    if request.param == "kernel":
        kernels.require("wavenet")
    else:
        monkeypatch.setattr(IncrementalSampler, "_kernel", lambda self: None)
    return request.param


def _model(dist: str, seed: int = 0, **kw) -> WaveNet:
    """A tiny WaveNet with random weights, on a mel of hop 32 (few sampling steps per frame)."""
    kw = dict(mel=MelConfig.preset("r9y9").replace(hop_length=32), upsample_scales=(4, 8)) | kw
    cfg = WaveNetConfig.small(dist, layers=4, stacks=2, residual_channels=8, gate_channels=16, skip_channels=8, **kw)
    model = WaveNet(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def _mel(frames: int, batch: int | None = None, seed: int = 0) -> torch.Tensor:
    shape = (80, frames) if batch is None else (batch, 80, frames)
    return 0.5 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)) - 3.0


@pytest.mark.parametrize("dist", ["mol", "gaussian", "mulaw"])
def test_padded_batch_equals_each_item_alone(dist, loop, monkeypatch):
    """Items of lengths 6, 2, 4, 2 and 1 frames sampled in one loop: each equals vocoding it alone with the same
    seed, the audio is zero past each length, and finished items drop out of the loop (the steps run, summed
    over the items still running, are exactly the items' lengths)."""
    model = _model(dist)
    lengths = [6, 2, 4, 2, 1]
    mel = _mel(6, batch=len(lengths))
    hop = model.hop_length
    work: list[int] = []
    original = IncrementalSampler._cond_block

    def spy(self, c_up, start, stop):
        work.append(c_up.shape[0] * (stop - start))
        return original(self, c_up, start, stop)

    monkeypatch.setattr(IncrementalSampler, "_cond_block", spy)
    audio, audio_lengths = model.vocode(mel, lengths=lengths, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(IncrementalSampler, "_cond_block", original)
    assert audio_lengths.tolist() == [n * hop for n in lengths]
    assert sum(work) == sum(lengths) * hop, "finished items must leave the loop"
    for i, n in enumerate(lengths):
        assert torch.all(audio[i, n * hop:] == 0)
        alone = model.vocode(mel[i, :, :n], generator=torch.Generator().manual_seed(4))[0]
        assert alone.std() > 0.01
        if dist == "mulaw":
            assert torch.equal(audio[i, : n * hop], alone)
        else:
            torch.testing.assert_close(audio[i, : n * hop], alone, atol=1e-5, rtol=1e-5)
    # The draws go by position: two items of one length and one seed sample alike only if their mels do.
    assert not torch.equal(audio[1, : 2 * hop], audio[3, : 2 * hop])


def test_padded_batch_compiled_loop_equals_torchscript(monkeypatch):
    """The compiled loop's past-tap state is compacted with the other state when items finish (taps reaching
    up to 64 steps back, items ending mid-way through its blocks of precomputed products)."""
    kernels.require("wavenet")
    model = _model("mol", seed=2, kernel_size=3)
    model = WaveNet(model.config.replace(layers=6, stacks=1)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=g))
    mel = _mel(3, batch=3, seed=1)
    with torch.no_grad():
        c_up = model.upsample_mel(mel)
        out = []
        for use in (True, False):
            sampler = IncrementalSampler(model, 3)
            sampler.use_kernel = use
            out.append(sampler.run(c_up, seed=9, lengths=[70, 31, 3 * 32])[0])
    assert out[1].std() > 0.01 and torch.all(out[0][1, 31:] == 0) and torch.all(out[0][0, 70:] == 0)
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)


def _chunks(mel: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    out, i = [], 0
    for s in sizes:
        out.append(mel[:, i: i + s])
        i += s
    assert i == mel.shape[-1]
    return out


@pytest.mark.parametrize("upsample", ["stretch2d", "transposed2d"])
@pytest.mark.parametrize("dist", ["mol", "gaussian"])
def test_stream_equals_one_shot(dist, upsample, loop):
    """Streamed inside inference_mode in chunks of 1 frame, of awkward sizes and in one piece, the audio equals
    one-shot vocoding with a generator of the same seed (the same draws by position), and so does vocode_long;
    without the conditioning's context it does not."""
    kw = {} if upsample == "stretch2d" else dict(upsample="transposed2d", upsample_activation="leaky_relu")
    model = _model(dist, seed=1, **kw)
    mel = _mel(12, seed=2)
    one_shot = model.vocode(mel, generator=torch.Generator().manual_seed(7))[0]
    assert one_shot.std() > 0.01
    for sizes in ([1] * 12, [5, 1, 3, 3], [12]):
        with torch.inference_mode():
            streamed = torch.cat(list(model.stream(_chunks(mel, sizes), generator=torch.Generator().manual_seed(7))))
        assert streamed.shape == one_shot.shape
        torch.testing.assert_close(streamed, one_shot, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        long = vocode_long(model, mel, chunk_frames=5, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(long, one_shot, atol=1e-5, rtol=1e-5)
    short = torch.cat(list(stream(model, _chunks(mel, [4] * 3), context=(0, 0),
                                  generator=torch.Generator().manual_seed(7))))
    assert (short - one_shot).abs().max() > 1e-3


def test_stream_mulaw_and_min_emit_frames(loop):
    model = _model("mulaw", seed=3)
    mel = _mel(7, seed=3)
    one_shot = model.vocode(mel, generator=torch.Generator().manual_seed(1))[0]
    with torch.inference_mode():
        pieces = list(stream(model, _chunks(mel, [1] * 7), min_emit_frames=3,
                             generator=torch.Generator().manual_seed(1)))
    assert torch.equal(torch.cat(pieces), one_shot)
    assert all(p.shape[-1] >= 3 * model.hop_length for p in pieces[:-1])


@pytest.mark.parametrize("upsample", ["stretch2d", "transposed2d"])
def test_cond_context_covers_the_upsampler(upsample):
    """cond_context (from the upsampler's geometry) covers the frames a bumped frame moves, measured."""
    kw = {} if upsample == "stretch2d" else dict(upsample="transposed2d", upsample_time_kernel=None)
    model = _model("gaussian", seed=4, **kw)
    mel = _mel(41, batch=1, seed=4)
    bumped = mel.clone()
    bumped[..., 20] += 1.0
    with torch.no_grad():
        diff = (model.upsample_mel(mel) - model.upsample_mel(bumped)).abs().amax(1)[0]
    moved = (diff.reshape(41, -1).amax(-1) > 0).nonzero().flatten()
    reach = max(20 - int(moved.min()), int(moved.max()) - 20)
    assert 1 <= reach <= model.cond_context()


def test_stream_memory_is_bounded(monkeypatch):
    """A long stream hands the upsampler windows of at most chunk + 2 * context frames and keeps a sampler
    of constant size."""
    model = _model("gaussian", seed=5)
    mel = _mel(60, seed=5)
    ctx = model.cond_context()
    seen: list[int] = []
    original = WaveNet.upsample_mel

    def spy(self, m):
        seen.append(m.shape[-1])
        return original(self, m)

    monkeypatch.setattr(WaveNet, "upsample_mel", spy)
    out = vocode_long(model, mel, chunk_frames=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == (60 * model.hop_length,) and len(seen) >= 15
    assert max(seen) <= 4 + 2 * ctx
    session = model.open_stream(0)
    sizes = {k: v.numel() for k, v in vars(session.sampler).items() if isinstance(v, torch.Tensor)}
    for i in range(3):
        session(mel[:, : 4 * (i + 1) + ctx], 0, 4 * i, 4 * (i + 1))
    assert {k: v.numel() for k, v in vars(session.sampler).items() if k in sizes} == sizes


def test_zoo_vocode_batches_wavenet_files(tmp_path, monkeypatch):
    """`zoo vocode` of several mel files samples them as padded batches (--batch at a time), and each file's
    audio is what vocoding it alone with --seed gives."""
    model = _model("gaussian", seed=6)
    folder = model.save_pretrained(tmp_path / "wn")
    mels = [_mel(n, seed=n) for n in (3, 5, 2)]
    for i, m in enumerate(mels):
        np.save(tmp_path / f"m{i}.npy", m.numpy())
    calls: list[tuple[int, ...]] = []
    original = WaveNet.vocode

    def spy(self, mel, lengths=None, **kw):
        calls.append(tuple(lengths) if lengths is not None else (mel.shape[-1],))
        return original(self, mel, lengths, **kw)

    monkeypatch.setattr(WaveNet, "vocode", spy)
    files = [str(tmp_path / f"m{i}.npy") for i in range(3)]
    assert main(["vocode", *files, "-o", str(tmp_path / "out"), "--model", str(folder), "--seed", "3",
                 "--batch", "2"]) == 0
    monkeypatch.setattr(WaveNet, "vocode", original)
    assert calls == [(5, 3), (2,)]
    for i, m in enumerate(mels):
        got, sr = sf.read(str(tmp_path / "out" / f"m{i}.wav"), dtype="float32")
        alone = model.vocode(m, generator=torch.Generator().manual_seed(3))[0]
        assert sr == model.sample_rate and got.shape == (m.shape[-1] * model.hop_length,)
        torch.testing.assert_close(torch.from_numpy(got), alone.clamp(-1, 1), atol=1e-4, rtol=0)


def test_compiled_loop_packs_a_models_weights_once_and_again_when_they_change(monkeypatch):
    """Every vocode call makes a sampler; the packed matrices the compiled loop streams are made once per model
    (a server pays the packing once) and made again when a weight changes in place or the dtype changes:
    the audio always follows the current weights."""
    from zoo_plugins.wavenet import kernel

    kernels.require("wavenet")
    packed: list[int] = []
    real = kernel.tile_pack
    monkeypatch.setattr(kernel, "tile_pack", lambda w: packed.append(1) or real(w))
    model, mel = _model("mol"), torch.randn(80, 3, generator=torch.Generator().manual_seed(1))

    def audio(m: WaveNet) -> torch.Tensor:
        return m.vocode(mel, generator=torch.Generator().manual_seed(0))[0]

    first = audio(model)
    made = len(packed)
    assert made == 5  # dilated, residual, skip and the two head matrices
    assert torch.equal(audio(model), first) and len(packed) == made  # reused
    with torch.no_grad():
        model.head2.weight.mul_(3.0)  # in place: the version counter moves
    changed = audio(model)
    assert len(packed) == 2 * made and not torch.equal(changed, first)
    fresh = _model("mol")
    with torch.no_grad():
        fresh.head2.weight.mul_(3.0)
    assert torch.equal(changed, audio(fresh))  # what a model that never cached gives
    model.to(torch.bfloat16)
    audio(model)
    assert len(packed) == 4 * made  # fresh from bfloat16 (a new model for `fresh`, then the cast)


def test_compiled_loop_packs_weights_made_under_inference_mode():
    """Weights made under ``torch.inference_mode`` keep no version counter: they are packed on every call
    (never compared by version) and the audio is that of the same weights made normally."""
    kernels.require("wavenet")
    mel = torch.randn(80, 3, generator=torch.Generator().manual_seed(1))
    want = _model("mol").vocode(mel, generator=torch.Generator().manual_seed(0))[0]
    with torch.inference_mode():
        model = _model("mol")
        got = [model.vocode(mel, generator=torch.Generator().manual_seed(0))[0] for _ in range(2)]
    assert all(torch.equal(g, want) for g in got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("speakers", [0, 3])
@pytest.mark.parametrize("cond_bias", [True, False])
def test_conditioning_blocks_are_the_stack_s_projection_time_major(dtype, speakers, cond_bias):
    """The sampler makes each block's conditioning ``[T, B, L, G]`` by one product in that layout (no transposed
    copy); it is the stack's own projection (local, plus a speaker's global term) plus the dilated convs'
    biases, as the stack computes it, for float32 and bfloat16 weights (whose projections run in float32)."""
    model = _model("mol", seed=2, n_speakers=speakers, gin_channels=4 if speakers else 0, cond_bias=cond_bias)
    model = model.to(dtype)
    g = model.global_cond(torch.tensor([0, 2])) if speakers else None
    sampler = IncrementalSampler(model, 2, g=g)
    c_up = model.upsample_mel(torch.randn(2, 80, 6))  # 192 steps
    block = sampler._cond_block(c_up, 5, 150)
    proj = sampler._project_cond(c_up[..., 5:150])
    assert proj is not None and block.dtype == torch.float32 and block.is_contiguous()
    want = (proj.reshape(2, sampler.n_layers, sampler.gate, 145) + sampler.bd[None, :, :, None]).permute(3, 0, 1, 2)
    torch.testing.assert_close(block, want, atol=1e-6, rtol=1e-6)
    if speakers:  # the speakers' terms differ, so a global term dropped or given to the wrong item shows
        other = IncrementalSampler(model, 2, g=model.global_cond(torch.tensor([2, 0])))._cond_block(c_up, 5, 150)
        assert not torch.allclose(other, block, atol=1e-3)
