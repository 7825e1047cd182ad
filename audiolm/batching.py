"""Continuations that are asked for together are generated together: a queue in front of
`AudioLM.stream_batch` for the web page, where visitors press the button at the same moment.

    queue = ContinuationQueue(model)                 # generation in a thread of this process
    engine = ContinuationEngine(model, "runs/demo")  # or in a process of its own (the web page)
    for chunk in queue.stream(wav, rate, seconds=4, seed=0):   # either, from any thread
        play(chunk)

One worker takes the first waiting request and every other waiting one it can generate in the same
batch (the same duration and sampling; prompts of any lengths, whose sequences are left-padded to the
longest: `AudioLM.stream_batch`), up to `max_batch`, and streams their chunks back. The cascade
runs several times faster per second of audio at batch 8 than at batch 1 on a CPU, so eight visitors
wait about as long as one does. Each
request keeps its own seed (`AudioLM.continue_batch`'s per-prompt seeds): the same seed gives the
same audio whoever else is in the batch, up to float rounding. A request whose reader goes away (a
closed tab) is dropped from its batch; a batch nobody reads any more stops.

Before it starts a batch the worker gathers: it waits until no request has come for
`quiet_seconds` (at most `gather_seconds` in all, or until the batch is full). Visitors who press
"together" arrive spread over a fraction of a second; a batch started on the first of them makes
the rest wait the whole batch. A visitor alone waits `quiet_seconds` more.

`ContinuationEngine` runs the worker in the main thread of a process of its own. Measured on 2
cores (the demo model, a 4 s continuation): batch-1 generation takes 1.4-1.5 s in a process's main
thread against 3.0-3.2 s in any other thread (torch's 2 intra-op OpenMP threads; with 1 it is
1.8 s either way), and batch 7 3.9-4.1 s against 6.4-6.9 s; and in the web server the generation
no longer shares the interpreter lock with gradio's threads (streaming, uploads, other tabs).
"""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

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
    chunks: queue.Queue | _Sender = field(default_factory=queue.Queue)  # what the worker puts its chunks into
    gone: threading.Event = field(default_factory=threading.Event)  # its reader stopped reading
    arrived: float = field(default_factory=time.perf_counter)


def prepare(model: AudioLM, wav: np.ndarray, sample_rate: int, seconds: float, seed: int,
            sampling: dict[str, SamplingConfig] | None) -> tuple:
    """A request's fields (`_Request`'s first five): the prompt at the codec's rate, cut as the model
    cuts prompts (AudioError here: not one codec frame), and the key of the batches it may join."""
    wav = resample(np.asarray(wav, dtype=np.float32), sample_rate, model.codec.sample_rate)
    (wav,), _ = model.cut_prompts([wav], model.codec.sample_rate)
    key = (float(seconds), repr(sorted((sampling or {}).items())))
    return wav, float(seconds), int(seed), sampling, key


class ContinuationQueue:
    def __init__(self, model: AudioLM, max_batch: int = 8, quiet_seconds: float = 0.25, gather_seconds: float = 1.5,
                 chunk_seconds: float = 0.5, log: bool = True):
        """`quiet_seconds`: a batch starts once no request has come for this long, or `gather_seconds`
        after the worker began gathering it, or when it is full; `log`: a line per batch on stdout
        (size, longest wait, time)."""
        self.model, self.max_batch, self.chunk_seconds, self.log = model, max_batch, chunk_seconds, log
        self.quiet, self.gather = quiet_seconds, gather_seconds
        self._waiting: list[_Request] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[tuple[int, float, float]] = []  # (size, longest wait s, generation s) of each batch

    def stream(self, wav: np.ndarray, sample_rate: int, seconds: float, seed: int = 0,
               sampling: dict[str, SamplingConfig] | None = None) -> Iterator[np.ndarray]:
        """The continuation of `wav` in chunks as they are generated (`AudioLM.continue_speech_stream`'s);
        a bad prompt raises AudioError here, in the caller's thread, before it waits for anything."""
        request = _Request(*prepare(self.model, wav, sample_rate, seconds, seed, sampling))
        self.submit(request)
        try:
            while (item := request.chunks.get()) is not DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.gone.set()

    def submit(self, request: _Request) -> None:
        """Queue a request; the worker thread starts with the first unless `run` already runs."""
        with self._ready:
            if self._worker is None:
                self._worker = threading.Thread(target=self.run, name="audiolm-continuations", daemon=True)
                self._worker.start()
            self._waiting.append(request)
            self._ready.notify()

    def _next_batch(self) -> list[_Request]:
        with self._ready:
            while not self._waiting:
                self._ready.wait()
            deadline = time.perf_counter() + self.gather
            while True:  # gather: until no request has come for `quiet` s, the deadline, or a full batch
                key = self._waiting[0].key
                last = max(r.arrived for r in self._waiting)
                now = time.perf_counter()
                wake = min(deadline, last + self.quiet)
                if now >= wake or sum(r.key == key for r in self._waiting) >= self.max_batch:
                    break
                self._ready.wait(wake - now)  # a new request (notify) or the time: look again
            batch = [r for r in self._waiting if r.key == key][: self.max_batch]
            self._waiting = [r for r in self._waiting if r not in batch]
        return [r for r in batch if not r.gone.is_set()]

    def run(self) -> None:
        """The worker's loop, forever, in the calling thread (`ContinuationEngine`'s process calls it
        in its main thread; `submit` starts a thread for it otherwise)."""
        self._worker = self._worker or threading.current_thread()
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
            else:
                _release_memory()
                # recorded before the readers are told it is done, so that whoever joins them sees it
                self.batches.append((len(batch), start - min(r.arrived for r in batch), time.perf_counter() - start))
                if self.log:
                    size, wait, took = self.batches[-1]
                    print(f"audiolm serve: {size} continuation(s) of {batch[0].seconds:g} s together, longest "
                          f"wait {wait:.1f} s, generated in {took:.1f} s", flush=True)
            for r in batch:
                r.chunks.put(DONE)

    def _generate(self, batch: list[_Request]) -> None:
        """Stream the batch's chunks to its requests (`run` then ends each with DONE). An error before
        the first chunk (one prompt the semantic tokenizer cannot read) sends each request through
        again alone, so that only the bad one gets it; the error is the request's reader's to raise,
        the worker goes on."""
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


# -- the worker in a process of its own -------------------------------------------------------------
class _Sender:
    """A request's chunks, sent from the engine process to the one that asked (`_Request.chunks`)."""

    def __init__(self, results: multiprocessing.Queue, rid: int, gone: dict[int, threading.Event]):
        self.results, self.rid, self.gone = results, rid, gone

    def put(self, item: object) -> None:
        if item is DONE:
            self.gone.pop(self.rid, None)
            self.results.put((self.rid, "done", None))
        elif isinstance(item, BaseException):
            self.results.put((self.rid, "error", _portable(item)))
        else:
            self.results.put((self.rid, "chunk", item))


def _portable(err: BaseException) -> BaseException:
    """`err` if it survives pickling, else a RuntimeError with its message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _engine_main(source: str, revision: str | None, device: str, max_batch: int, threads: int,
                 requests: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    """The engine process: the model, a reader thread that queues what the parent sends, and the
    worker loop in the main thread. It exits when its parent is gone."""
    if threads:
        torch.set_num_threads(threads)
    try:
        model = AudioLM.from_pretrained(source, revision=revision, device=device)
    except Exception as err:
        results.put((None, "error", _portable(err)))
        return
    continuations, gone, parent = ContinuationQueue(model, max_batch), {}, os.getppid()

    def read() -> None:
        while True:
            try:
                kind, rid, *fields = requests.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # orphaned: nobody will read what it makes
                    os._exit(0)
                continue
            if kind == "stream":
                request = _Request(*fields, chunks=_Sender(results, rid, gone))
                gone[rid] = request.gone
                continuations.submit(request)
            elif kind == "gone" and rid in gone:
                gone.pop(rid).set()

    continuations._worker = threading.current_thread()  # submit starts no thread: the loop runs here
    threading.Thread(target=read, name="audiolm-engine-requests", daemon=True).start()
    results.put((None, "ready", None))
    continuations.run()


class ContinuationEngine:
    """`ContinuationQueue.stream` with the generation in a process of its own (the module's
    docstring says why), started here and loading the model from `source` (a run folder, bundle or
    Hub id: what `model` was loaded from; `model` itself checks prompts in the caller's thread)."""

    def __init__(self, model: AudioLM, source: str, revision: str | None = None, max_batch: int = 8,
                 threads: int = int(os.environ.get("AUDIOLM_ENGINE_THREADS", "1")), timeout: float = 600.0):
        self.model = model
        context = multiprocessing.get_context("spawn")  # a fork would copy torch's threads' state
        self._requests, self._results = context.Queue(), context.Queue()
        self._process = context.Process(target=_engine_main, name="audiolm-engine", daemon=True,
                                        args=(source, revision, str(model.device), max_batch, threads, self._requests,
                                              self._results))
        self._process.start()
        try:
            _, kind, value = self._results.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise TimeoutError(f"the generation process did not load {source} within {timeout:g} s") from None
        if kind == "error":
            self.close()
            raise value
        self._readers: dict[int, queue.Queue] = {}
        self._ids = itertools.count()
        threading.Thread(target=self._dispatch, name="audiolm-engine-results", daemon=True).start()

    def stream(self, wav: np.ndarray, sample_rate: int, seconds: float, seed: int = 0,
               sampling: dict[str, SamplingConfig] | None = None) -> Iterator[np.ndarray]:
        """As `ContinuationQueue.stream`."""
        fields = prepare(self.model, wav, sample_rate, seconds, seed, sampling)
        if not self._process.is_alive():
            raise RuntimeError(f"the generation process has exited (code {self._process.exitcode}); restart the server")
        rid, chunks, ended = next(self._ids), queue.Queue(), False
        self._readers[rid] = chunks
        self._requests.put(("stream", rid, *fields))
        try:
            while True:
                kind, value = chunks.get()
                if kind != "chunk":
                    ended = True
                    if kind == "error":
                        raise value
                    return
                yield value
        finally:
            self._readers.pop(rid, None)
            if not ended:  # its reader went away: the engine drops it from its batch
                self._requests.put(("gone", rid))

    def _dispatch(self) -> None:
        """Hand each result to its request's reader; if the engine process dies, tell them all."""
        while True:
            try:
                rid, kind, value = self._results.get(timeout=1.0)
            except queue.Empty:
                if self._process.is_alive():
                    continue
                err = RuntimeError(f"the generation process exited (code {self._process.exitcode})")
                for chunks in list(self._readers.values()):
                    chunks.put(("error", err))
                return
            except (EOFError, OSError):  # closed
                return
            if (chunks := self._readers.get(rid)) is not None:
                chunks.put((kind, value))

    def close(self) -> None:
        """Stop the engine process."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        for q in (self._requests, self._results):
            q.close()
