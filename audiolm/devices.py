"""Which device a model runs on: one rule for the library, the stages and the command line.

"auto" is this process' GPU where there is one (under `accelerate launch` / torchrun, the GPU of its
local rank), else the CPU; anything else is taken as torch names it ("cpu", "cuda", "cuda:1"), and a
GPU asked for where there is none is an error that says so, not a crash deep inside a model.
"""

from __future__ import annotations

import os

import torch


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device {device!r}: not a device torch knows ({err}); use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: this machine has no CUDA GPU (or torch was built without CUDA); "
                             "use --device cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    return resolved


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's weights are (the CPU for one without any)."""
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
