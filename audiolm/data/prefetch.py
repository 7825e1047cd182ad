"""Items of an iterator made ahead in a thread: reading and resampling the next batches of audio while
the GPU runs the model on this one (FLAC decoding and soxr's resampling release the interpreter lock,
so the thread works while the main one waits on the device)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items` in order, made by a thread up to `depth` ahead (0: made here, when asked for). An error
    of the producer is raised here, at the item it failed on; a consumer that stops early stops it."""
    if depth <= 0:
        yield from items
        return
    made: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            put(_Failed(err))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="audiolm-prefetch", daemon=True)
    thread.start()
    try:
        while (item := made.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
