"""The learning-rate schedule: by steps, or by the clock when `max_minutes` ends the run first."""

import time

import pytest
import torch
from torch import nn

from audiolm.config import TrainConfig
from audiolm.train.trainer import Trainer, lr_lambda


class SlowTask:
    """One weight fitted to a constant; every step sleeps, so a time budget ends the run."""

    def __init__(self, seconds_per_step: float):
        self.models = {"w": nn.Linear(1, 1, bias=False)}
        self.seconds = seconds_per_step

    def batch(self, step, micro, rank, world):
        return torch.ones(1, 1)

    def step(self, batch, step, update):
        time.sleep(self.seconds)
        update("w", (self.models["w"](batch) - 1).pow(2).mean())
        return {}

    def evaluate(self):
        return {}


def test_the_cosine_runs_on_steps_when_no_clock_is_set():
    f = lr_lambda(TrainConfig(steps=110, warmup_steps=10))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    assert f(60, clock=1.0) == pytest.approx(0.1)  # the clock, when it runs ahead, decides
    assert f(60, clock=0.2) == pytest.approx(0.55)


def test_a_run_cut_short_by_max_minutes_ends_annealed(tmp_path):
    """1,000 steps of 0.05 s cannot fit in 0.02 min (1.2 s): the run stops after ~24, and by then the
    learning rate has followed the clock down to the schedule's floor, not stayed near its peak."""
    task = SlowTask(0.05)
    cfg = TrainConfig(steps=1000, warmup_steps=2, learning_rate=0.01, max_minutes=0.02, eval_every=10_000,
                      checkpoint_every=10_000, log_every=10_000)
    trainer = Trainer(task, cfg, tmp_path)
    seen = []
    step = trainer._update

    def record(name, loss):
        step(name, loss)
        seen.append(trainer.optimizers["w"].param_groups[0]["lr"] / cfg.learning_rate)

    task.step = lambda batch, s, update: SlowTask.step(task, batch, s, record)
    stopped = trainer.fit()
    assert 10 < stopped < 100
    assert seen[1] == pytest.approx(1.0)  # warm-up done
    assert seen[len(seen) // 2] == pytest.approx(0.55, abs=0.15)  # half the budget: half-way down the cosine
    assert seen[-1] < 0.2  # by steps alone it would still be at 0.9999
    assert lr_lambda(cfg)(stopped) > 0.99
