"""Where the time of one continuation goes: each part of the cascade timed inside one call.

The parts' methods are wrapped for the measurement only (nothing in the library changes): the
prompt's tokenizing (semantic tokenizer, codec encoder), each LM's forward passes, sampling, the
codec's decoder. What is left of the wall time is the Python around them: building each window's
prefix, the per-token loop, copies between numpy and torch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from audiolm.lm import generate as generate_module

PARTS = ("tokenize prompt", "semantic LM", "coarse LM", "fine LM", "sampling", "codec decode", "other (Python)")


@contextmanager
def _timed(owner: Any, name: str, totals: dict[str, float], part: str, active: dict[str, int]) -> Iterator[None]:
    """`owner.name` replaced by a wrapper adding its wall time to totals[part] (calls nested in
    another of the same part's, counted once)."""
    original, own = getattr(owner, name), name in vars(owner)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        active[part] += 1
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            active[part] -= 1
            if active[part] == 0:
                totals[part] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        if own:  # a module's function: put back
            setattr(owner, name, original)
        else:  # an instance's method: the class' again
            delattr(owner, name)


def continuation_breakdown(model: Any, run: Callable[[], object]) -> dict[str, float]:
    """Seconds per part of one `run()` of `model` (an AudioLM), and "total"."""
    totals: dict[str, float] = defaultdict(float)
    wraps = [(model.tokenizer, "encode", "tokenize prompt"), (model.codec, "encode", "tokenize prompt"),
             (model.codec, "decode", "codec decode"), (generate_module, "sample_next", "sampling")]
    for task in ("semantic", "coarse", "fine"):  # generation calls the decoder's parts, not its forward
        lm = model.models[task]
        wraps += [(lm, name, f"{task} LM") for name in ("forward", "hidden", "logits", "embed")]
        wraps += [(lm.depth, "forward", f"{task} LM")] if hasattr(lm, "depth") else []
    active: dict[str, int] = defaultdict(int)
    with ExitStack() as stack:
        for owner, name, part in wraps:
            stack.enter_context(_timed(owner, name, totals, part, active))
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
    out = {part: totals.get(part, 0.0) for part in PARTS[:-1]}
    out["other (Python)"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return out
