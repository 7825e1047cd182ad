"""A token table's rows read in place: the language models' training data at any corpus size.

Arrow stores a column of lists as one flat array of values and one array of offsets, both memory-mapped
from the table's files. `TokenRows` reads an utterance's semantic ids and codes as a slice of those
arrays when asked for it, so opening a table of 60,000 hours takes what opening one of an hour takes;
what it holds in memory per utterance is its length (for length-proportional sampling), 4 bytes.
`TextRows` does the same for the text tasks, tokenizing an utterance's text and phones when it is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Utterance = tuple[np.ndarray, np.ndarray | None]  # (semantic ids, codes [k, t] or None)
TextUtterance = tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]  # (semantic ids, (phone ids, text pieces))


class _ListColumn:
    """One list column (list<int> or list<list<int>>) of a memory-mapped table, row by row."""

    def __init__(self, column: pa.ChunkedArray, nested: bool):
        chunks = [c for c in column.chunks if len(c)]
        self.starts = np.cumsum([0, *(len(c) for c in chunks)])  # first row of each chunk
        self.parts = []
        for chunk in chunks:
            outer = chunk.offsets.to_numpy(zero_copy_only=False)  # int32 views of the mapped offsets
            if nested:
                inner = chunk.values  # the codebooks' lists
                self.parts.append((outer, inner.offsets.to_numpy(zero_copy_only=False),
                                   inner.values.to_numpy(zero_copy_only=False)))
            else:
                self.parts.append((outer, None, chunk.values.to_numpy(zero_copy_only=False)))

    def __len__(self) -> int:
        return int(self.starts[-1])

    def row(self, index: int) -> np.ndarray:
        chunk = int(np.searchsorted(self.starts, index, side="right")) - 1
        outer, inner, values = self.parts[chunk]
        i = index - self.starts[chunk]
        a, b = int(outer[i]), int(outer[i + 1])
        if inner is None:
            return values[a:b]
        lo, hi = int(inner[a]), int(inner[b])
        return values[lo:hi].reshape(b - a, -1) if b > a else values[lo:hi].reshape(0, 0)

    def lengths(self) -> np.ndarray:
        """Each row's length (of its last axis: frames), without reading a value."""
        out = []
        for outer, inner, _ in self.parts:
            if inner is None:
                out.append(np.diff(outer))
            else:
                rows = np.diff(outer)  # codebooks per row
                total = inner[outer[1:]] - inner[outer[:-1]]
                out.append(np.where(rows > 0, total // np.maximum(rows, 1), 0))
        return np.concatenate(out).astype(np.int32) if out else np.zeros(0, np.int32)


def table_rows(table: datasets.Dataset) -> np.ndarray | None:
    """The rows of the underlying Arrow table a `select`ed dataset maps to (None: all, in order)."""
    return None if table._indices is None else table._indices.column(0).to_numpy()


class TokenRows(Sequence):
    """(semantic ids, codes [k, t] or None) of rows `rows` of a token table (stage 1's ids joined with
    stage 2's codes, `lm_stage.read_tokens`), each read from the mapped table when indexed, as int64."""

    def __init__(self, table: datasets.Dataset, rows: np.ndarray | None = None, codes: bool = True):
        mapped = table_rows(table)
        if mapped is not None:  # a selection: read the rows it maps to
            rows = mapped if rows is None else mapped[np.asarray(rows)]
        arrow = table.data.table
        self.semantic = _ListColumn(arrow.column("semantic"), nested=False)
        self.codes = _ListColumn(arrow.column("acoustic_codes"), nested=True) if codes else None
        self.rows = np.arange(len(self.semantic)) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Utterance:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        row = int(self.rows[index])
        semantic = self.semantic.row(row).astype(np.int64)
        return semantic, (self.codes.row(row).astype(np.int64) if self.codes is not None else None)

    def keep(self, mask: np.ndarray) -> TokenRows:
        """The rows where `mask` is true (same mapped columns, no copy)."""
        kept = object.__new__(TokenRows)
        kept.__dict__.update(self.__dict__)
        kept.rows = self.rows[np.asarray(mask)]
        return kept

    def lengths(self, acoustic: bool) -> np.ndarray:
        """Frames of each row: of its codes (`acoustic`) or of its semantic ids."""
        column = self.codes if acoustic else self.semantic
        if column is None:
            raise ValueError("these rows were opened without their codes")
        return column.lengths()[self.rows]


class TextTokens(Protocol):  # audiolm.text.TextTokenizer
    def phone_ids(self, phones: Sequence[str]) -> np.ndarray: ...

    def encode(self, text: str) -> list[int]: ...


class _ObjectColumn:
    """One column of any type (strings, lists of strings) of a memory-mapped table, row by row as Python
    objects; the chunk a row is in found by bisection (a table of many shards has many chunks)."""

    def __init__(self, column: pa.ChunkedArray):
        self.chunks = [c for c in column.chunks if len(c)]
        self.starts = np.cumsum([0, *(len(c) for c in self.chunks)])

    def row(self, index: int):
        chunk = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.chunks[chunk][int(index - self.starts[chunk])].as_py()


class TextRows(Sequence):
    """The text tasks' utterances: (semantic ids, (phone ids, text pieces)) of the rows of a token table
    that have both a text and its phones, each read from the mapped table and tokenized when indexed.
    `positions` are those rows' indices in the table (a selection's own numbering)."""

    def __init__(self, table: datasets.Dataset, tokenizer: TextTokens, positions: np.ndarray | None = None):
        arrow = table.data.table
        text, phonemes = arrow.column("text"), arrow.column("phonemes")
        has_text = pc.and_(pc.greater(pc.utf8_length(pc.fill_null(text, "")), 0),
                           pc.greater(pc.fill_null(pc.list_value_length(phonemes), 0), 0)).to_numpy(zero_copy_only=False)
        candidates = np.arange(table.num_rows) if positions is None else np.asarray(positions, dtype=np.int64)
        every = TokenRows(table, codes=False)
        self.positions = candidates[has_text[every.rows[candidates]]]
        self.tokens = TokenRows(table, self.positions, codes=False)
        self.text, self.phonemes, self.tokenizer = _ObjectColumn(text), _ObjectColumn(phonemes), tokenizer

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> TextUtterance:
        semantic, _ = self.tokens[index]
        row = int(self.tokens.rows[index])
        phones = self.tokenizer.phone_ids(self.phonemes.row(row))
        return semantic, (phones, np.asarray(self.tokenizer.encode(self.text.row(row)), dtype=np.int64))

    def lengths(self, acoustic: bool = False) -> np.ndarray:
        """Semantic ids of each utterance (a text task predicts no codes), without reading them."""
        return self.tokens.lengths(acoustic=False)

    def keep(self, mask: np.ndarray) -> TextRows:
        """The utterances where `mask` is true (same table, no copy)."""
        kept = object.__new__(TextRows)
        kept.__dict__.update(self.__dict__)
        kept.positions, kept.tokens = self.positions[mask], self.tokens.keep(mask)
        return kept
