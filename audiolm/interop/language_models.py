"""Every semantic LM a run, bundle or `--model` folder may hold, loaded through one function.

`lm-semantic/config.json` is either our `Decoder`'s (audiolm.lm.stock) or a reference to a released
unit LM (`audiolm.interop.unit_lm`), written by `import-lm` or by stage 3 with `lm.semantic.released`, or
an adapted LM (`audiolm.lm.lora`: adapters, or none, beside a reference to the LM they adapt):

    {"component": "language-model", "released": {"model": "slprl/slam_scaled", "revision": "...",
     "bundled": false, "layout": "unitlm"}, "task": {... the semantic task over its units ...}}

With `bundled`, the model's config and safetensors lie in `lm-semantic/model/` (a local folder is
copied there, so the run works where that folder does not exist).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from audiolm.hub import read_config, resolve_folder
from audiolm.interop.unit_lm import BUNDLED, ReleasedUnitLM, load_released, unit_task
from audiolm.lm.lora import load_adapted
from audiolm.lm.model import Decoder

DEFAULT_CONTEXT = 1024  # ids per window: slamkit trains SLAM with 1024 (TWIST's recipe 512 or more)


def load_language_model(folder: Path, config: dict[str, Any] | None = None, token: str | bool | None = None):
    """A saved LM folder -> our `Decoder`, or a `ReleasedUnitLM` for a reference to a released one; an
    adapted one is its parent (loaded by this same function) with the adapters merged in."""
    config = config if config is not None else read_config(folder, Decoder.component)
    if "adapter" in config:
        return load_adapted(folder, config, lambda parent: load_language_model(parent, None, token), token)
    if "released" not in config:
        return Decoder._load(folder, config)
    released = config["released"]
    source = folder / BUNDLED if released.get("bundled") else resolve_folder(
        released["model"], revision=released.get("revision") or None, token=token)
    model = load_released(source, config["task"])
    model.reference = config
    return model


def write_reference(out: str | os.PathLike, model: str, num_units: int, frame_rate: float, revision: str = "",
                    dedup: bool = True, mean_run: float = 1.0, context: int = DEFAULT_CONTEXT,
                    token: str | bool | None = None) -> ReleasedUnitLM:
    """`out/` = a semantic-LM folder naming the released unit LM `model` (a Hub id, or a local folder,
    which is copied in), over `num_units` units at `frame_rate` Hz. The model is loaded first: a folder
    that is not a unit LM, or whose vocabulary cannot hold the units, is refused before anything is
    written."""
    local = Path(model).is_dir()
    source = Path(model) if local else resolve_folder(model, revision=revision or None, token=token)
    task = unit_task(num_units, frame_rate, context, dedup, mean_run)
    loaded = load_released(source, task, name=str(model))
    loaded.reference = {"component": Decoder.component, "task": task,
                        "released": {"model": str(model), "revision": revision, "bundled": local, "layout": loaded.ids.layout}}
    loaded.save_pretrained(out)
    return loaded
