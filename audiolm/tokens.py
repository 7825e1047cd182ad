"""Token-sequence arithmetic shared by every stage.

Later stages add `TokenLayout` here (vocabulary offsets per codebook, special ids,
flatten/unflatten); for now: repeat removal and edit distances between id sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dedup(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Remove consecutive repeats: [5, 5, 3, 3, 3, 5] -> [5, 3, 5] (AudioLM's semantic LM input)."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids
    keep = np.ones(ids.shape[0], dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return ids[keep]


def edit_distance(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """Levenshtein distance between two id sequences, one numpy row per element of `a`.

    Insertions within a row chain left to right; that recurrence
    d[j] = min(t[j], d[j-1] + 1) is a running minimum of t[j] - j, shifted back by j.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0 or b.size == 0:
        return int(max(a.size, b.size))
    cols = np.arange(b.size + 1)
    row = cols.copy()
    for i, x in enumerate(a, start=1):
        t = np.empty_like(row)
        t[0] = i
        t[1:] = np.minimum(row[1:] + 1, row[:-1] + (b != x))
        row = np.minimum.accumulate(t - cols) + cols
    return int(row[-1])


def normalized_edit_distance(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> float:
    """Edit distance divided by the longer length: 0 = identical, 1 = nothing in common."""
    longest = max(len(a), len(b))
    return edit_distance(a, b) / longest if longest else 0.0
