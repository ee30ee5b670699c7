"""Training data: a folder of wavs, resampled, silence-trimmed, with cached mels and random segments.

Segments are a pure function of ``(seed, step, rank)``, so a resumed run sees exactly the batches an
uninterrupted run would have seen; the utterance order of each epoch comes from a
``torch.utils.data.DistributedSampler`` so ranks see disjoint utterances.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor
from torch.utils.data import DistributedSampler

from zoo.core.files import atomic_path
from zoo.core.mel import MelConfig, mel_spectrogram

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def list_audio(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"training data folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    """``(mono float32 samples, sample rate)`` of an audio file (soundfile, channels averaged); a file that
    cannot be decoded or holds no samples gives a ``ValueError`` naming it."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad input file
        raise ValueError(f"{path}: not a readable audio file (cannot read audio: {exc})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the audio file holds no samples")
    return data.mean(axis=1), int(sr)


def load_audio(path: Path, sample_rate: int) -> Tensor:
    """Mono float32 audio at ``sample_rate`` (soundfile, then torchaudio resampling if needed)."""
    data, sr = read_mono(path)
    audio = torch.from_numpy(np.ascontiguousarray(data))
    if sr != sample_rate:
        audio = AF.resample(audio, sr, sample_rate)
    return audio


def trim_silence(audio: Tensor, top_db: float = 40.0, frame: int = 1024, hop: int = 256) -> Tensor:
    """Cut leading and trailing frames quieter than ``top_db`` below the loudest frame (RMS)."""
    if top_db <= 0 or audio.numel() < frame:
        return audio
    frames = audio.unfold(0, frame, hop)
    rms_db = 10 * torch.log10(frames.pow(2).mean(dim=1).clamp_min(1e-12))
    loud = (rms_db > rms_db.max() - top_db).nonzero().flatten()
    if loud.numel() == 0:
        return audio
    start = int(loud[0]) * hop
    end = min(audio.numel(), int(loud[-1]) * hop + frame)
    return audio[start:end]


@dataclass
class Utterance:
    path: Path
    audio: Tensor  # [T], T a multiple of hop
    mel: Tensor  # [n_mels, T // hop]


class SegmentDataset:
    """Utterances of a folder with their mels; ``segment(i, gen)`` draws an aligned random segment."""

    def __init__(self, files: list[Path], mel: MelConfig, segment_length: int, *, trim_db: float = 40.0,
                 cache_dir: Path | None = None) -> None:
        hop = mel.hop_length
        if segment_length % hop:
            raise ValueError(f"segment_length {segment_length} must be a multiple of the hop {hop}")
        self.mel_config = mel
        self.segment_length = segment_length
        self.utterances: list[Utterance] = []
        for path in files:
            audio = trim_silence(load_audio(path, mel.sample_rate), trim_db)
            audio = audio[: (audio.numel() // hop) * hop]
            if audio.numel() < hop:
                continue
            feats = self._cached_mel(path, audio, mel, trim_db, cache_dir)
            self.utterances.append(Utterance(path, audio, feats))
        if not self.utterances:
            raise ValueError("no usable utterances (all shorter than one hop after trimming)")

    @staticmethod
    def _cached_mel(path: Path, audio: Tensor, mel: MelConfig, trim_db: float, cache_dir: Path | None) -> Tensor:
        frames = audio.numel() // mel.hop_length
        key = hashlib.sha256(f"{path.resolve()}|{path.stat().st_mtime_ns}|{mel.fingerprint()}|{trim_db}".encode())
        cached = cache_dir / f"{key.hexdigest()[:24]}.pt" if cache_dir else None
        feats = None
        if cached is not None and cached.is_file():
            try:
                feats = torch.load(cached, weights_only=True)
            except (RuntimeError, EOFError, pickle.UnpicklingError):  # an unreadable cache entry: recompute it
                feats = None
        if feats is None:
            feats = mel_spectrogram(audio, mel)
            if cached is not None:
                # Written aside and renamed: another process (a torchrun rank) never reads half a file.
                cached.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(cached) as tmp:
                    torch.save(feats, tmp)
        if feats.shape[-1] < frames:
            feats = torch.nn.functional.pad(feats, (0, frames - feats.shape[-1]), mode="replicate")
        return feats[:, :frames].contiguous()

    def __len__(self) -> int:
        return len(self.utterances)

    def segment(self, index: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(audio [segment_length], mel [n_mels, segment_length // hop])``, zero-padded if short."""
        utt = self.utterances[index]
        hop = self.mel_config.hop_length
        n_frames = self.segment_length // hop
        total = utt.mel.shape[-1]
        if total > n_frames:
            start = int(torch.randint(0, total - n_frames + 1, (1,), generator=gen))
        else:
            start = 0
        mel = utt.mel[:, start: start + n_frames]
        audio = utt.audio[start * hop: (start + n_frames) * hop]
        if mel.shape[-1] < n_frames:
            pad = n_frames - mel.shape[-1]
            floor = utt.mel.min()
            mel = torch.nn.functional.pad(mel, (0, pad), value=float(floor))
            audio = torch.nn.functional.pad(audio, (0, pad * hop))
        return audio, mel


class StepBatcher:
    """Batches as a pure function of the step: epoch order from a DistributedSampler, offsets seeded."""

    def __init__(self, dataset: SegmentDataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.sampler = DistributedSampler(range(len(dataset)), num_replicas=world_size, rank=rank,
                                          shuffle=True, seed=seed, drop_last=False)
        self.per_epoch = len(self.sampler)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        indices = []
        for j in range(self.batch_size):
            k = step * self.batch_size + j
            epoch, pos = divmod(k, self.per_epoch)
            self.sampler.set_epoch(epoch)
            indices.append(list(iter(self.sampler))[pos])
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 64 + self.rank)
        pairs = [self.dataset.segment(i, gen) for i in indices]
        return torch.stack([a for a, _ in pairs]), torch.stack([m for _, m in pairs])
