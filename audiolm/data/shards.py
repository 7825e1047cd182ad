"""Sharded tables on disk: `<folder>/<split>/<NNNNN>/`, each shard a `Dataset.save_to_disk` folder
written whole or not at all, with an optional `info.json` beside its Arrow files.

A split is the concatenation of its shards in order, memory-mapped (`concatenate_datasets` copies
nothing), so a table of any size opens in seconds and in little memory, and a stage that builds one
can be killed and resumed shard by shard, or split over processes that each write their own shards.
Processes share the shards out by claiming them (`claim`), so a process that finishes its shard
early takes the next one: no process idles while another has several shards left.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from audiolm.files import atomic_dir

INFO = "info.json"
CLAIMS = ".claims"


def shard_path(folder: Path, split: str, index: int) -> Path:
    return Path(folder) / split / f"{index:05d}"


def write_shard(path: Path, table: datasets.Dataset, info: dict[str, Any] | None = None) -> None:
    with atomic_dir(path) as tmp:
        if table.num_rows:  # an empty shard (every file of it unreadable, say) is its info alone
            table.save_to_disk(str(tmp))
        if info is not None:
            (tmp / INFO).write_text(json.dumps(info))


def bound_heap() -> None:
    """Have the C allocator return every block of 4 MB or more to the system when it is freed. By
    default glibc raises that threshold (up to 32 MB) as big blocks are freed, serves later ones from
    its heap, and over a shard loop's batches of every size the heap fragments: stage 2's largest
    process crept from 688 MB of anonymous memory at 0.33 h of audio to 968 MB at 3.3 h (and was still
    climbing); with this it stays under about 600 MB. The price, on a CPU: page faults for every big
    tensor, about 1.3x the tiny codec's encoding time (docs/scale.md); on a GPU the big tensors live on
    the device. Called by the shard loops, after any training: a training loop's tensors come back
    every step and the heap serves them faster."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # another C library (musl): nothing to set
            return
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD, fixed from now on
        libc.mallopt(-1, 8 << 20)  # M_TRIM_THRESHOLD: give back the heap's free top beyond 8 MB


def release_mapped(suffix: str = ".arrow") -> int:
    """Drop the pages of this process' memory-mapped `suffix` files from its resident memory and
    return how many bytes of mappings were advised (Linux; 0 elsewhere). Reading every row of a
    memory-mapped table leaves its pages mapped: stage 2's peak resident memory grew with the corpus
    (0.71 h -> 7.1 h: 900 -> 1,287 MB, issue 40), by about the corpus' size, though none of it was a
    leak. MADV_DONTNEED on a read-only file mapping only unmaps: the pages stay in the page cache, and
    a later read maps them again without touching the disk."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].endswith(suffix) and "w" not in fields[1]:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if libc.madvise(lo, hi - lo, 4) == 0:  # MADV_DONTNEED
                released += hi - lo
    return released


def claim(folder: Path, split: str, index: int) -> bool:
    """Take shard `index` of `split` for this process: True for exactly one of the processes that ask
    (an exclusively created file, which works across machines on a shared filesystem too). Claims of a
    killed run are cleared (`clear_claims`) before any process claims again."""
    claims = Path(folder) / CLAIMS
    claims.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(claims / f"{split}-{index:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def clear_claims(folder: Path) -> None:
    shutil.rmtree(Path(folder) / CLAIMS, ignore_errors=True)


def build(folder: Path, split: str, index: int) -> bool:
    """Whether this process builds shard `index` of `split`: not there yet, and claimed by it."""
    return not shard_path(folder, split, index).exists() and claim(folder, split, index)


def shard_paths(folder: Path, split: str) -> list[Path]:
    """The finished shards of a split, in order (temporaries of a killed writer start with a dot)."""
    root = Path(folder) / split
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def shard_infos(folder: Path, split: str) -> list[dict[str, Any]]:
    return [json.loads((p / INFO).read_text()) if (p / INFO).exists() else {} for p in shard_paths(folder, split)]


def load_split(folder: Path, split: str) -> datasets.Dataset:
    parts = [datasets.load_from_disk(str(p)) for p in shard_paths(folder, split) if (p / "state.json").exists()]
    if not parts:
        raise FileNotFoundError(f"{folder}: split '{split}' has no rows")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def split_names(folder: Path) -> list[str]:
    """The splits of a sharded folder, "train" first (the order stages iterate them in)."""
    names = [p.name for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".") and shard_paths(folder, p.name)]
    return sorted(names, key=lambda name: (name != "train", name))


def is_sharded(folder: Path) -> bool:
    """Whether `folder` holds a sharded table (a corpus, tokens, codes)."""
    return Path(folder).is_dir() and bool(split_names(folder))


def load_splits(folder: Path, splits: Iterable[str] | None = None) -> datasets.DatasetDict:
    return datasets.DatasetDict({s: load_split(folder, s) for s in (splits or split_names(folder))})


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
