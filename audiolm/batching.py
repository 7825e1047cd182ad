"""Continuations that are asked for together are generated together: a queue in front of
`AudioLM.stream_batch` for the web page, where visitors press the button at the same moment.

    queue = ContinuationQueue(model)
    for chunk in queue.stream(wav, rate, seconds=4, seed=0):   # from any thread
        play(chunk)

One worker thread takes the first waiting request and every other waiting one it can generate in
the same batch (a prompt of the same length in codec frames, the same duration and sampling), up to
`max_batch`, and streams their chunks back. The cascade runs several times faster per second of
audio at batch 8 than at batch 1 on a CPU, so eight visitors wait about as long as one does. Each
request keeps its own seed (`AudioLM.continue_batch`'s per-prompt seeds): the same seed gives the
same audio whoever else is in the batch, up to float rounding. A request whose reader goes away (a
closed tab) is dropped from its batch; a batch nobody reads any more stops.
"""

from __future__ import annotations

import ctypes
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from audiolm.audio import resample
from audiolm.config import SamplingConfig
from audiolm.continuation import AudioLM

DONE = object()  # the last item of a request's chunks


def _release_memory() -> None:
    """Hand the batch's freed activations back to the system (glibc keeps freed heap in its arenas
    otherwise, one per thread that allocated: the server's resident memory then only grows)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass(eq=False)  # requests are told apart by identity
class _Request:
    wav: np.ndarray  # at the codec's rate, cut as the model cuts prompts
    seconds: float
    seed: int
    sampling: dict[str, SamplingConfig] | None
    key: tuple  # requests with equal keys can share a batch
    chunks: queue.Queue = field(default_factory=queue.Queue)
    gone: threading.Event = field(default_factory=threading.Event)  # its reader stopped reading
    arrived: float = field(default_factory=time.perf_counter)


class ContinuationQueue:
    def __init__(self, model: AudioLM, max_batch: int = 8, gather_seconds: float = 0.05, chunk_seconds: float = 0.5,
                 log: bool = True):
        """`gather_seconds`: how long the worker waits after the first request for others pressed at
        the same moment; `log`: a line per batch on stdout (size, longest wait, time)."""
        self.model, self.max_batch, self.gather, self.chunk_seconds, self.log = model, max_batch, gather_seconds, \
            chunk_seconds, log
        self._waiting: list[_Request] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[tuple[int, float, float]] = []  # (size, longest wait s, generation s) of each batch

    def stream(self, wav: np.ndarray, sample_rate: int, seconds: float, seed: int = 0,
               sampling: dict[str, SamplingConfig] | None = None) -> Iterator[np.ndarray]:
        """The continuation of `wav` in chunks as they are generated (`AudioLM.continue_speech_stream`'s);
        a bad prompt raises AudioError here, in the caller's thread, before it waits for anything."""
        m = self.model
        wav = resample(np.asarray(wav, dtype=np.float32), sample_rate, m.codec.sample_rate)
        (wav,), (frames,) = m.cut_prompts([wav], m.codec.sample_rate)  # AudioError: not one codec frame
        key = (frames, float(seconds), repr(sorted((sampling or {}).items())))
        request = _Request(wav, float(seconds), int(seed), sampling, key)
        with self._ready:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="audiolm-continuations", daemon=True)
                self._worker.start()
            self._waiting.append(request)
            self._ready.notify()
        try:
            while (item := request.chunks.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.gone.set()

    def _next_batch(self) -> list[_Request]:
        with self._ready:
            while not self._waiting:
                self._ready.wait()
        time.sleep(self.gather)  # requests pressed at the same moment arrive within milliseconds
        with self._ready:
            key = self._waiting[0].key
            batch = [r for r in self._waiting if r.key == key][: self.max_batch]
            self._waiting = [r for r in self._waiting if r not in batch]
        return [r for r in batch if not r.gone.is_set()]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                self._generate(batch)
            except BaseException as err:  # a bug: its requests get it, and the worker must not die with waiters
                for r in batch:
                    r.chunks.put(err)
                    r.chunks.put(DONE)
                continue
            _release_memory()
            self.batches.append((len(batch), start - min(r.arrived for r in batch), time.perf_counter() - start))
            if self.log:
                size, wait, took = self.batches[-1]
                print(f"audiolm serve: {size} continuation(s) of {batch[0].seconds:g} s together, longest wait "
                      f"{wait:.1f} s, generated in {took:.1f} s", flush=True)

    def _generate(self, batch: list[_Request]) -> None:
        """Stream the batch's chunks to its requests. An error before the first chunk (one prompt the
        semantic tokenizer cannot read) sends each request through again alone, so that only the bad
        one gets it; the error is the request's reader's to raise, the worker goes on."""
        first, started = batch[0], False
        stream = self.model.stream_batch([r.wav for r in batch], self.model.codec.sample_rate, first.seconds,
                                         [r.seed for r in batch], first.sampling, chunk_seconds=self.chunk_seconds)
        try:
            for chunks in stream:
                started = True
                for r, chunk in zip(batch, chunks, strict=True):
                    if not r.gone.is_set():
                        r.chunks.put(chunk)
                if all(r.gone.is_set() for r in batch):
                    break  # nobody reads any more
        except Exception as err:
            if not started and len(batch) > 1:
                for r in batch:
                    self._generate([r])
                return
            for r in batch:
                r.chunks.put(err)
        finally:
            stream.close()
        for r in batch:
            r.chunks.put(DONE)
