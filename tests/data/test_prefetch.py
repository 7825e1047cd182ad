"""Batches made ahead in a thread (stages 1-2 on a GPU): the same items in the same order, an error
raised at the item it happened on, and a consumer that stops early stops the thread."""

import threading
import time

import pytest

from audiolm.data.prefetch import prefetch


def test_items_in_order_made_ahead_and_errors_where_they_happened():
    made = []

    def items():
        for i in range(6):
            made.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(made) >= 3  # the thread went ahead while this one waited
    assert list(stream) == [1, 2, 3, 4, 5]
    assert list(prefetch(iter(range(4)), depth=0)) == [0, 1, 2, 3]

    def failing():
        yield 1
        raise OSError("corrupt.flac: not a readable audio file")

    stream = prefetch(failing(), depth=2)
    assert next(stream) == 1
    with pytest.raises(OSError, match="corrupt.flac"):
        next(stream)


def test_a_consumer_that_stops_early_stops_the_producer():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    time.sleep(0.3)
    assert threading.active_count() == before
