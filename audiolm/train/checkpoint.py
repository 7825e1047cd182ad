"""Training checkpoints as safetensors + JSON only (no pickles): model weights, optimizer state,
EMA weights, RNG states and the step, in one folder written atomically (`step-000200/`), with
`latest` naming the newest. Resume reads the step from the checkpoint itself, not a file name.

RNG states are kept per process (`rng.rank<r>.torch`, `rng.rank<r>.device`): each process of an
N-process run draws from its own CPU generator and its own GPU's; a resume restores in each process
of M the states of the rank of the same number where the checkpoint has one (fewer processes: the
others' are not needed; more: the new ones keep the seeds they have)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiolm.files import atomic_dir, atomic_write_text


def _flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, entry in state["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().contiguous()
                meta["state"][str(idx)][key] = "tensor"
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str) -> dict[str, Any]:
    state = {}
    for idx, entry in meta["state"].items():
        state[int(idx)] = {k: tensors[f"{prefix}.{idx}.{k}"] if v == "tensor" else v for k, v in entry.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def process_rng_state() -> dict[str, torch.Tensor]:
    """This process' generators: the CPU's, and its own accelerator's (the current CUDA device, the
    one accelerate gave this rank), not every visible device's."""
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["device"] = torch.cuda.get_rng_state()
    return states


def restore_rng_state(tensors: dict[str, torch.Tensor], rank: int) -> None:
    """Process `rank`'s generators from a checkpoint's `rng.*` tensors. A rank the checkpoint has no
    state for (more processes than it was written by) keeps its own. Checkpoints from before per-rank
    states (`rng.torch`, `rng.cuda<i>`) are read as rank 0's CPU state and device i's."""
    legacy = {"torch": tensors.get("rng.torch") if rank == 0 else None, "device": tensors.get(f"rng.cuda{rank}")}
    cpu = tensors.get(f"rng.rank{rank}.torch", legacy["torch"])
    if cpu is not None:
        torch.set_rng_state(cpu)
    device = tensors.get(f"rng.rank{rank}.device", legacy["device"])
    if device is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(device)  # the current device: this rank's own


def save_checkpoint(folder: Path, step: int, models: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    ema: dict[str, dict[str, torch.Tensor]] | None = None, extra: dict[str, Any] | None = None,
                    keep: int = 0, rng_states: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint `step` and point `latest` at it; then, with `keep`, remove all but the `keep`
    newest (only now: a kill while writing leaves the older ones to resume from). `rng_states`: every
    process' (`rank<r>.torch`, `rank<r>.device`, as `gather_rng_states` makes them); by default this
    process' as rank 0's."""
    final = folder / f"step-{step:07d}"
    with atomic_dir(final) as tmp:
        meta: dict[str, Any] = {"step": step, "optimizers": {}, "extra": extra or {}}
        for name, model in models.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / f"{name}.safetensors"))
        opt_tensors: dict[str, torch.Tensor] = {}
        for name, opt in optimizers.items():
            tensors, meta["optimizers"][name] = _flatten_optimizer(opt, name)
            opt_tensors.update(tensors)
        rng = rng_states if rng_states is not None else {f"rank0.{k}": v for k, v in process_rng_state().items()}
        save_file({**opt_tensors, **{f"rng.{k}": v.contiguous() for k, v in rng.items()}}, str(tmp / "trainer_state.safetensors"))
        for name, weights in (ema or {}).items():
            save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / f"{name}.ema.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
    atomic_write_text(folder / "latest", final.name)
    if keep:
        for old in sorted(folder.glob("step-*"))[:-keep]:
            if old.is_dir() and old != final:
                shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / "latest"
    if not pointer.exists():
        return None
    path = folder / pointer.read_text().strip()
    return path if (path / "trainer_state.json").exists() else None


def load_checkpoint(path: Path, models: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    ema: dict[str, dict[str, torch.Tensor]] | None = None, rank: int = 0) -> dict[str, Any]:
    """Fill `models`, `optimizers` (and `ema`) from checkpoint `path` and restore process `rank`'s RNG
    states; returns the checkpoint's metadata (its `step`, ...)."""
    meta = json.loads((path / "trainer_state.json").read_text())
    for name, model in models.items():
        model.load_state_dict(load_file(str(path / f"{name}.safetensors")))
    tensors = load_file(str(path / "trainer_state.safetensors"))
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(tensors, meta["optimizers"][name], name))
    restore_rng_state(tensors, rank)
    if ema is not None:  # filled in place from the files (a fresh trainer's EMA is still empty)
        for file in sorted(path.glob("*.ema.safetensors")):
            ema[file.name.removesuffix(".ema.safetensors")] = load_file(str(file))
    return meta
