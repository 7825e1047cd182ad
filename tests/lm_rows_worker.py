"""Run under `accelerate launch` by tests/train/test_lm_batches.py: this process' training batches of
a small LM task, as the trainer hands them out, saved for the test to compare with one process'."""

import sys
from pathlib import Path

import numpy as np
import torch

from audiolm.train.trainer import Trainer
from tests.train.test_lm_batches import STEPS, task_for_processes

if __name__ == "__main__":
    out = Path(sys.argv[1])
    task = task_for_processes()
    trainer = Trainer(task, task.cfg, out / "work", betas=(0.9, 0.95))
    batches = trainer._batches()
    rows = {f"{step}.{i}": t.numpy() for step in range(STEPS) for i, t in enumerate(next(batches))}
    np.savez(out / f"rank{trainer.rank}-of-{trainer.world}.npz", **rows)
    if trainer.world > 1:
        torch.distributed.barrier()
