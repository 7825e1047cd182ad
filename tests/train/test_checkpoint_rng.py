"""RNG states in checkpoints are per process: a run of 8 processes on 8 GPUs resumes on 1 (or on 2 CPU
processes, or on more than it had). The GPU's generator is faked here (no GPU on the test machines):
a `torch.cuda` with a given number of devices that raises, as the real one does, when handed states
for devices it does not have."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from audiolm.train import checkpoint
from audiolm.train.checkpoint import load_checkpoint, save_checkpoint


class FakeCuda:
    """One process' view of `devices` GPUs; `current` is the device accelerate gave it."""

    def __init__(self, devices: int, current: int = 0):
        self.devices, self.current = devices, current
        self.states = [torch.full((16,), 10 + d, dtype=torch.uint8) for d in range(devices)]

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.devices)
        monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": self.states[self.current].clone())
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self._set)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self._set_all)

    def _set(self, state, device="cuda") -> None:
        self.states[self.current] = state.clone()

    def _set_all(self, states) -> None:
        if len(states) > self.devices:
            raise RuntimeError(f"invalid device ordinal: {len(states)} states for {self.devices} devices")
        for d, state in enumerate(states):
            self.states[d] = state.clone()


def _eight_process_checkpoint(folder, monkeypatch):
    """What the main process of an 8-GPU run writes: each rank's CPU and own-GPU states."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    rng = {}
    for rank in range(8):
        gpu = FakeCuda(8, current=rank)
        gpu.states[rank] = torch.full((16,), 100 + rank, dtype=torch.uint8)
        gpu.install(monkeypatch)
        states = checkpoint.process_rng_state()
        rng.update({f"rank{rank}.{k}": v for k, v in states.items()})
    return save_checkpoint(folder, 5, {"m": model}, {"m": optimizer}, rng_states=rng), model, optimizer


@pytest.mark.parametrize("resume_rank,devices", [(0, 1), (1, 2)])
def test_eight_gpu_checkpoint_resumes_on_fewer_gpus_with_each_rank_own_state(tmp_path, monkeypatch, resume_rank, devices):
    path, model, optimizer = _eight_process_checkpoint(tmp_path / "checkpoints", monkeypatch)
    gpu = FakeCuda(devices, current=resume_rank)
    gpu.install(monkeypatch)
    meta = load_checkpoint(path, {"m": model}, {"m": optimizer}, rank=resume_rank)
    assert meta["step"] == 5
    assert gpu.states[resume_rank].tolist() == [100 + resume_rank] * 16  # its own rank's GPU state
    others = [d for d in range(devices) if d != resume_rank]
    assert all(gpu.states[d].tolist() == [10 + d] * 16 for d in others)  # another process' device: untouched


def test_a_rank_the_checkpoint_lacks_keeps_its_generators(tmp_path):
    """Resuming on more processes than wrote the checkpoint: the new ranks keep their own states; the
    CPU generator of a rank that was there comes back."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    torch.manual_seed(1)
    saved = torch.get_rng_state()
    path = save_checkpoint(tmp_path / "checkpoints", 3, {"m": model}, {"m": optimizer})
    torch.manual_seed(2)
    mine = torch.get_rng_state()
    load_checkpoint(path, {"m": model}, {"m": optimizer}, rank=3)
    assert torch.equal(torch.get_rng_state(), mine)
    load_checkpoint(path, {"m": model}, {"m": optimizer}, rank=0)
    assert torch.equal(torch.get_rng_state(), saved)
