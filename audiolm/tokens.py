"""Token-sequence arithmetic shared by every stage: `TokenLayout` (one vocabulary for semantic ids
and every acoustic codebook, with special ids), time alignment between token streams of different
rates, repeat removal and edit distances between id sequences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def id_dtype(vocab_size: int) -> str:
    """The smallest unsigned integer type that holds ids 0..vocab_size-1 (what token tables store:
    K=500 semantic ids and 1024-entry codebooks take 2 bytes, not int64's 8)."""
    for name, top in (("uint8", 1 << 8), ("uint16", 1 << 16), ("uint32", 1 << 32)):
        if vocab_size <= top:
            return name
    raise ValueError(f"a vocabulary of {vocab_size} ids does not fit 32 bits")


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


WORD_PHONE = 1  # the word boundary's phone id (a text tokenizer's phones: <unk>, the boundary, the rest)


@dataclass(frozen=True)
class TokenLayout:
    """One vocabulary for the three language models:

        [PAD BOS SEP EOS] [semantic 0..K-1] [codebook 0: 0..C-1] [codebook 1] ... [codebook Q-1]

    Acoustic codes are flattened frame by frame (q0 q1 .. of frame 1, then of frame 2, ...), each
    codebook in its own id range, so a position's codebook is known from its id and a model can be
    limited to the range its position may emit. Codebooks `[0, coarse_codebooks)` are "coarse", the
    rest "fine". A model only needs ids up to the highest range its task uses (`task_vocab_size`).

    The text tasks have no acoustic codes; their ids follow the semantic ids instead:

        [PAD BOS SEP EOS] [semantic 0..K-1] [phones 0..P-1] [text pieces 0..V-1]

    so a text model's vocabulary is K + P + V + 4 (the same numbers as codebook 0's ids in an
    acoustic model: the two never share a model).
    """

    semantic_size: int
    codebook_size: int
    num_codebooks: int
    coarse_codebooks: int
    phone_size: int = 0  # the reading task's input phones (`TextTokenizer.phones`)
    piece_size: int = 0  # the transcription task's text pieces (`TextTokenizer.vocab_size`)

    PAD, BOS, SEP, EOS = 0, 1, 2, 3
    NUM_SPECIAL = 4

    def __post_init__(self) -> None:
        if not 0 < self.coarse_codebooks < self.num_codebooks:
            raise ValueError(f"coarse_codebooks must be in [1, {self.num_codebooks - 1}] for a codec with "
                             f"{self.num_codebooks} codebooks, got {self.coarse_codebooks}")

    @property
    def semantic_offset(self) -> int:
        return self.NUM_SPECIAL

    def codebook_offset(self, q: int) -> int:
        return self.NUM_SPECIAL + self.semantic_size + q * self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.codebook_offset(self.num_codebooks)

    def task_vocab_size(self, task: str) -> int:
        if task in ("reading", "transcription"):
            return self.piece_offset + self.piece_size
        return {"semantic": self.codebook_offset(0), "coarse": self.codebook_offset(self.coarse_codebooks),
                "fine": self.vocab_size}[task]

    @property
    def phone_offset(self) -> int:
        return self.NUM_SPECIAL + self.semantic_size

    @property
    def piece_offset(self) -> int:
        return self.phone_offset + self.phone_size

    @property
    def piece_range(self) -> tuple[int, int]:
        return self.piece_offset, self.piece_offset + self.piece_size

    def codebooks(self, part: str) -> range:
        """The codebooks a task predicts: 'coarse' or 'fine'."""
        return range(0, self.coarse_codebooks) if part == "coarse" else range(self.coarse_codebooks, self.num_codebooks)

    def semantic_ids(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64) + self.semantic_offset

    def from_semantic_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64) - self.semantic_offset

    def flatten(self, codes: np.ndarray, codebooks: range) -> np.ndarray:
        """codes [k, t] (k = all codebooks, or exactly `codebooks`) -> ids [t * len(codebooks)], frame by frame."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape[0] != len(codebooks):
            codes = codes[codebooks.start : codebooks.stop]
        offsets = np.array([self.codebook_offset(q) for q in codebooks], dtype=np.int64)[:, None]
        return (codes + offsets).T.reshape(-1)

    def unflatten(self, ids: np.ndarray, codebooks: range) -> np.ndarray:
        """ids [t * len(codebooks)] (whole frames) -> codes [len(codebooks), t]."""
        ids = np.asarray(ids, dtype=np.int64)
        k = len(codebooks)
        if ids.size % k:
            raise ValueError(f"{ids.size} acoustic ids are not whole frames of {k} codebooks")
        offsets = np.array([self.codebook_offset(q) for q in codebooks], dtype=np.int64)[:, None]
        codes = ids.reshape(-1, k).T - offsets
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError("acoustic ids outside their codebook's range")
        return codes

    def position_range(self, codebooks: range, position: int) -> tuple[int, int]:
        """The id range allowed at `position` of a flattened stream over `codebooks`."""
        q = codebooks[position % len(codebooks)]
        return self.codebook_offset(q), self.codebook_offset(q + 1)

    @property
    def semantic_range(self) -> tuple[int, int]:
        return self.semantic_offset, self.codebook_offset(0)


def frames_at(time_frames: int, from_rate: float, to_rate: float) -> int:
    """Index in a stream at `to_rate` of the frame boundary `time_frames` of a stream at `from_rate`.

    Streams are aligned by time, not by index: 50 Hz semantic ids and 75 Hz EnCodec frames meet every
    2 and 3 frames (20 ms hops centred alike, so a boundary maps to the nearest boundary)."""
    return int(math.floor(time_frames * to_rate / from_rate + 0.5))
