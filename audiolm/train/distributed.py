"""Several processes (`accelerate launch --num_processes N`): which one does what.

Every process trains (the trainer shards each global batch by rank); everything a stage writes, its
folders, checkpoints, logs, evaluations, exported models and markers, is done by the main process
alone while the others wait. In one process (no launcher) every helper here is a no-op.

    make stage-3 PROCS=2     # accelerate launch --multi_gpu --num_processes 2 -m stages.stage3_lm ...
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object

T = TypeVar("T")


def die_with_launcher() -> None:
    """Under `accelerate launch` (torchrun), end this worker when the launcher ends, however it ends.
    torchrun starts its workers in sessions of their own, so a SIGKILLed launcher (a job killed, a
    lost terminal) would leave them training, and writing, beside the rerun that resumes the job."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the launcher died before the line above
        os._exit(1)


def state() -> PartialState:
    # cpu: gloo where there is no GPU; under a launcher on GPUs accelerate picks nccl itself
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    return state().num_processes


def rank() -> int:
    return state().process_index


def wait() -> None:
    """Every process waits here until all have arrived (a no-op in one process)."""
    if world_size() > 1:
        state().wait_for_everyone()


def is_main() -> bool:
    return state().is_main_process


def print_main(*args: Any, **kwargs: Any) -> None:
    if is_main():
        print(*args, **kwargs)


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn` in the main process only; every process returns its result (which must pickle) once it
    is done. The others wait at a barrier, so whatever `fn` wrote is there when they go on."""
    result: list[Any] = [None]
    if is_main():
        result[0] = fn(*args, **kwargs)
    if world_size() > 1:
        broadcast_object_list(result, from_process=0)
    return result[0]


def agree(value: T) -> T:
    """The main process' `value` in every process (a wall-clock limit reached, the share of a time
    budget used): a process that stopped alone would leave the others waiting for it in their next
    gradient exchange, and one with its own learning rate would train other weights."""
    if world_size() == 1:
        return value
    decided = [value]
    broadcast_object_list(decided, from_process=0)
    return decided[0]


def gather_rng_states(mine: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every process' RNG states keyed `rank<r>.<name>` (in every process; in one, this one's as rank 0's)."""
    everyone = gather_object([mine]) if world_size() > 1 else [mine]
    return {f"rank{r}.{name}": state for r, states in enumerate(everyone) for name, state in states.items()}
