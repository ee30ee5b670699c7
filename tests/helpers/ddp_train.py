"""Run under torchrun: trains the toy model with 2 gloo processes; each rank reports its weights."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers.toy_likelihood import ToyLikelihood  # noqa: E402
from zoo.train.trainer import TrainConfig, Trainer  # noqa: E402


def main() -> None:
    data, run, report = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    torch.manual_seed(0)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model = ToyLikelihood()
    cfg = TrainConfig(steps=6, batch_size=2, segment_length=2048, lr=1e-2, val_every=3, ckpt_every=3,
                      log_every=1, val_files=1, seed=7)
    trainer = Trainer(model, data, run, cfg, progress=False)
    saved = []
    orig = trainer.save_checkpoint

    def spy():
        path = orig()
        saved.append(str(path) if path else None)
        return path

    trainer.save_checkpoint = spy  # type: ignore[method-assign]
    trainer.fit()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    rank = trainer.dist.rank
    (report / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world": trainer.dist.world_size, "digest": digest, "saved": saved,
        "first_batch": hashlib.sha256(trainer.batcher.batch(0)[0].numpy().tobytes()).hexdigest()}))


if __name__ == "__main__":
    main()
