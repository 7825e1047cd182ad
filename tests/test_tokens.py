import itertools
import random

import numpy as np
import pytest

from audiolm.tokens import TokenLayout, dedup, edit_distance, frames_at, normalized_edit_distance


def _reference_levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_dedup():
    assert dedup([5, 5, 3, 3, 3, 5]).tolist() == [5, 3, 5]
    assert dedup([]).tolist() == []
    assert dedup([1]).tolist() == [1]


def test_edit_distance_matches_reference():
    rng = random.Random(0)
    for _ in range(200):
        a = [rng.randrange(4) for _ in range(rng.randrange(0, 12))]
        b = [rng.randrange(4) for _ in range(rng.randrange(0, 12))]
        assert edit_distance(a, b) == _reference_levenshtein(a, b)
    for a, b in itertools.product(["", "abc", "kitten"], ["", "sitting", "abc"]):
        assert edit_distance(np.frombuffer(a.encode(), np.uint8), np.frombuffer(b.encode(), np.uint8)) == \
            _reference_levenshtein(a, b)


def test_normalized_edit_distance_bounds():
    assert normalized_edit_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert normalized_edit_distance([1, 2, 3], [4, 5, 6]) == 1.0
    assert normalized_edit_distance([], []) == 0.0


def test_layout_ranges_are_disjoint_and_round_trip():
    layout = TokenLayout(semantic_size=10, codebook_size=8, num_codebooks=4, coarse_codebooks=1)
    assert layout.semantic_range == (4, 14) and layout.vocab_size == 4 + 10 + 32
    assert [layout.codebook_offset(q) for q in range(5)] == [14, 22, 30, 38, 46]
    assert layout.task_vocab_size("semantic") == 14 and layout.task_vocab_size("coarse") == 22
    codes = np.random.default_rng(0).integers(0, 8, (4, 5))
    for part in ("coarse", "fine"):
        books = layout.codebooks(part)
        flat = layout.flatten(codes, books)
        assert flat.shape == (5 * len(books),)
        for i, idx in enumerate(flat):  # every id lies in the range of its position's codebook
            lo, hi = layout.position_range(books, i)
            assert lo <= idx < hi
        np.testing.assert_array_equal(layout.unflatten(flat, books), codes[books.start : books.stop])
    assert layout.flatten(codes, range(0, 4))[:4].tolist() == [codes[q, 0] + layout.codebook_offset(q) for q in range(4)]
    with pytest.raises(ValueError, match="coarse_codebooks"):
        TokenLayout(semantic_size=10, codebook_size=8, num_codebooks=4, coarse_codebooks=4)


def test_frames_at_aligns_50_and_75_hz_by_time():
    # 2 semantic frames (50 Hz) last as long as 3 codec frames (75 Hz): boundaries meet every 40 ms.
    assert [frames_at(f, 75, 50) for f in (0, 3, 6, 75)] == [0, 2, 4, 50]
    assert [frames_at(s, 50, 75) for s in (0, 2, 4, 50)] == [0, 3, 6, 75]
    for f in range(200):  # in between: the nearest boundary, never more than half a frame off
        assert abs(frames_at(f, 75, 50) / 50 - f / 75) <= 0.5 / 50 + 1e-9
