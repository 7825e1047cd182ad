"""Gradient accumulation means what it says: `grad_accum=k` with micro-batches of b/k rows takes the
same optimizer steps as one batch of b rows (the gradients each step applies, and the weights at the
end), in one process and in two (`accelerate launch`, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from audiolm.config import TrainConfig
from audiolm.train.trainer import Trainer
from tests.conftest import REPO

GLOBAL_BATCH = 8


class RegressionTask:
    """A linear model fitted to fixed random rows. Step s's global batch is rows 0..7 of its own draw;
    micro-batch m of k holds rows m * 8/k .. (m + 1) * 8/k - 1 of it, and each process its every
    world-th of those, so any (k, processes) sees the same rows per step."""

    def __init__(self, grad_accum: int):
        torch.manual_seed(0)
        self.models = {"linear": nn.Linear(6, 3)}
        self.grad_accum = grad_accum

    def batch(self, step: int, micro: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(step)
        x, y = torch.randn(GLOBAL_BATCH, 6, generator=g), torch.randn(GLOBAL_BATCH, 3, generator=g)
        per = GLOBAL_BATCH // self.grad_accum
        rows = list(range(micro * per, (micro + 1) * per))[rank::world]
        return x[rows], y[rows]

    def step(self, batch, step, update) -> dict[str, float]:
        x, y = batch
        loss = (self.models["linear"](x) - y).pow(2).mean()  # the mean over this micro-batch's rows
        update("linear", loss)
        return {"loss": float(loss.detach())}

    def evaluate(self) -> dict[str, float]:
        return {}


def train(grad_accum: int, out: Path) -> tuple[list[list[torch.Tensor]], dict[str, torch.Tensor]]:
    """The gradients each optimizer step applied (after clipping) and the final weights."""
    cfg = TrainConfig(steps=3, batch_size=GLOBAL_BATCH // grad_accum, grad_accum=grad_accum, learning_rate=0.1,
                      warmup_steps=1, grad_clip=0.5, checkpoint_every=100, eval_every=100, log_every=100,
                      data_workers=0)
    task = RegressionTask(grad_accum)
    trainer = Trainer(task, cfg, out)
    optimizer = trainer.optimizers["linear"]
    applied, step = [], optimizer.step

    def recording_step(*args, **kwargs):
        applied.append([p.grad.detach().clone() for p in trainer.accelerator.unwrap_model(task.models["linear"]).parameters()])
        return step(*args, **kwargs)

    optimizer.step = recording_step
    trainer.fit()
    weights = {k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(task.models["linear"]).state_dict().items()}
    return applied, weights


def _same(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> None:
    assert len(a) == len(b) == 3
    for grads_a, grads_b in zip(a, b, strict=True):
        for ga, gb in zip(grads_a, grads_b, strict=True):
            torch.testing.assert_close(ga, gb, atol=1e-6, rtol=1e-5)


def test_four_micro_batches_of_two_rows_step_as_one_batch_of_eight(tmp_path):
    whole_grads, whole = train(1, tmp_path / "k1")
    accumulated_grads, accumulated = train(4, tmp_path / "k4")
    # the gradient is the batch mean's, not 1/4 (or 1/16) of it, and the clip (0.5) acts on it alike
    _same(whole_grads, accumulated_grads)
    for name in whole:
        torch.testing.assert_close(whole[name], accumulated[name], atol=1e-6, rtol=1e-5)


WORKER = """
import json, sys, torch
sys.path.insert(0, {repo!r})
from tests.train.test_accumulation import train
from accelerate import PartialState
grads, weights = train(int(sys.argv[1]), __import__("pathlib").Path(sys.argv[2]))
if PartialState().is_main_process:
    out = {{"grads": [[g.tolist() for g in step] for step in grads], "weights": {{k: v.tolist() for k, v in weights.items()}}}}
    json.dump(out, open(sys.argv[3], "w"))
"""


@pytest.mark.slow  # 8 s on 2 slow cores (a launcher and two processes): make test stays under 10 min
def test_accumulation_in_two_processes_steps_as_one_batch_in_one(tmp_path):
    """Two gloo processes, each with 1 of the 2 rows of each of 4 micro-batches: the gradients exchanged
    once per step are the global batch's."""
    whole_grads, whole = train(1, tmp_path / "k1")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(repo=str(REPO)))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
               "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(worker), "4", str(tmp_path / "k4x2"), str(tmp_path / "out.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    _same(whole_grads, [[torch.tensor(g) for g in step] for step in out["grads"]])
    for name, value in whole.items():
        torch.testing.assert_close(value, torch.tensor(out["weights"][name]), atol=1e-6, rtol=1e-5)
