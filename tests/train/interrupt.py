"""Killing a training run at a chosen checkpoint, for the resume tests of every task."""

import pytest

from audiolm.train.checkpoint import latest_checkpoint
from audiolm.train.trainer import Trainer


def kill_after_checkpoint(trainer: Trainer, step: int) -> None:
    """Run `trainer` until it has written the checkpoint of `step`, then die as a killed process would."""
    save = trainer.save

    def save_then_die():
        path = save()
        if trainer.step == step:
            raise KeyboardInterrupt
        return path

    trainer.save = save_then_die
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert latest_checkpoint(trainer.out_dir / "checkpoints").name == f"step-{step:07d}"
