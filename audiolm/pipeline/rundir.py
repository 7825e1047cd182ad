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
from audiolm.files import atomic_dir, atomic_write_text
from audiolm.hub import CONFIG_NAME

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


def save_dataset(ds: datasets.Dataset | datasets.DatasetDict, final: Path) -> None:
    with atomic_dir(final) as tmp:
        ds.save_to_disk(str(tmp))


def write_resolved_config(cfg: Any, folder: Path) -> None:
    atomic_write_text(folder / "config.yaml", dump_yaml(cfg))


def prepare_partial(partial: Path, config_hash: str, stage: str) -> None:
    """A folder for finished shards of an unfinished stage; shards of another config are dropped."""
    if not is_up_to_date(partial, config_hash):
        shutil.rmtree(partial, ignore_errors=True)
        write_marker(partial, config_hash, stage=f"{stage} (partial)")


_make_shard: Callable[[list[int]], datasets.Dataset] | None = None  # what forked workers build (inherited, not pickled)


def _build_shard(job: tuple[list[int], Path]) -> list[int]:
    indices, shard_dir = job
    save_dataset(_make_shard(indices), shard_dir)
    return indices


def _worker_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def sharded(num_rows: int, split: str, partial: Path, shard_size: int,
            make_shard: Callable[[list[int]], datasets.Dataset],
            done: Callable[[list[int]], None] = lambda indices: None, workers: int = 1) -> datasets.Dataset:
    """Build a dataset shard by shard under `partial`; shards already there (from a killed run) are
    loaded instead of recomputed. `done` is told the rows of each shard as it is finished or found
    (for progress bars). With `workers` > 1 the missing shards are made by that many forked processes,
    one shard each at a time, sharing the cores; each shard is the same as one process makes."""
    global _make_shard
    jobs = [(list(range(start, min(start + shard_size, num_rows))), partial / f"{split}-{start // shard_size:05d}")
            for start in range(0, num_rows, shard_size)]
    missing = [job for job in jobs if not job[1].exists()]
    for indices, shard_dir in jobs:
        if shard_dir.exists():
            done(indices)
    _make_shard = make_shard
    try:
        if workers > 1 and len(missing) > 1:
            import multiprocessing

            import torch

            threads = max(1, torch.get_num_threads() // workers)
            with multiprocessing.get_context("fork").Pool(min(workers, len(missing)), _worker_threads, (threads,)) as pool:
                for indices in pool.imap_unordered(_build_shard, missing):
                    done(indices)
        else:
            for job in missing:
                done(_build_shard(job))
    finally:
        _make_shard = None
    return datasets.concatenate_datasets([datasets.load_from_disk(str(shard_dir)) for _, shard_dir in jobs])
