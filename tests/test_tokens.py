import itertools
import random

import numpy as np

from audiolm.tokens import dedup, edit_distance, normalized_edit_distance


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
