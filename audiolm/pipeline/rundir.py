"""Run folders: each stage output carries a `stage.json` with the hash of the config that made
it, so a rerun with the same config is a no-op and a changed config redoes the work. Outputs are
written to a temporary sibling and renamed into place, so a killed stage never leaves a
half-written output under the real name."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from audiolm.config import dump_yaml
from audiolm.data import shards
from audiolm.files import atomic_write_text, replace_dir
from audiolm.hub import CONFIG_NAME
from audiolm.train import distributed

MARKER = "stage.json"


def read_marker(output: Path) -> dict[str, Any] | None:
    try:
        return json.loads((output / MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_up_to_date(output: Path, config_hash: str, saved_part: bool = False) -> bool:
    """`saved_part`: the folder also holds a part in today's format (config.json), so a run made
    by an older audiolm is rebuilt rather than failing to load."""
    marker = read_marker(output)
    fresh = marker is not None and marker.get("config_hash") == config_hash
    return fresh and (not saved_part or (output / CONFIG_NAME).exists())


def write_marker(output: Path, config_hash: str, **info: Any) -> None:
    marker = {"config_hash": config_hash, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
    atomic_write_text(output / MARKER, json.dumps(marker, indent=2) + "\n")


def spread_indices(num_rows: int, wanted: int) -> list[int]:
    """`wanted` rows spread evenly over a split (splits are grouped by sentence or voice); 0 = all."""
    if not wanted or wanted >= num_rows:
        return list(range(num_rows))
    return np.linspace(0, num_rows - 1, wanted).round().astype(int).tolist()


def write_resolved_config(cfg: Any, folder: Path) -> None:
    atomic_write_text(folder / "config.yaml", dump_yaml(cfg))


def prepare_partial(partial: Path, config_hash: str, stage: str, fresh: bool = False) -> None:
    """A folder for finished shards of an unfinished stage; shards of another config (or all of
    them, `fresh`: a forced rerun) are dropped, and so are the shard claims of a killed run (this runs
    in the main process before any process claims a shard)."""
    if fresh or not is_up_to_date(partial, config_hash):
        shutil.rmtree(partial, ignore_errors=True)
        write_marker(partial, config_hash, stage=f"{stage} (partial)")
    shards.clear_claims(partial)


def finish_partial(partial: Path, final: Path, config_hash: str, **info: Any) -> None:
    """A finished sharded output takes its final name whole: its marker written, then renamed (a
    kill in between leaves the finished partial folder, which the rerun finishes)."""
    shards.clear_claims(partial)
    write_marker(partial, config_hash, **info)
    replace_dir(partial, final)


def sharded(num_rows: int, split: str, partial: Path, shard_size: int,
            make_shard: Callable[[list[int]], datasets.Dataset],
            done: Callable[[list[int]], None] = lambda indices: None) -> None:
    """Build the shards of a split of `num_rows` rows (`shard_size` consecutive rows each) under
    `partial/<split>/`; shards already there (from a killed run) are kept. Under `accelerate launch`
    the processes claim the shards in turn (`shards.claim`): each shard is the same whoever makes it.
    `done` is told the rows of each shard this process makes or finds already made (for progress
    bars). A process returns when no shard is left to claim: wait (`distributed.wait`) after the last
    split before reading the shards other processes made."""
    shards.bound_heap()
    for index, start in enumerate(range(0, num_rows, shard_size)):
        indices = list(range(start, min(start + shard_size, num_rows)))
        if shards.build(partial, split, index):
            shards.write_shard(shards.shard_path(partial, split, index), make_shard(indices))
            shards.release_mapped()  # the rows just read stay in the page cache, not in this process
            done(indices)
        elif distributed.is_main() and shards.shard_path(partial, split, index).exists():
            done(indices)
