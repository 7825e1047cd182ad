"""Offline speech synthesis with eSpeak NG, through the library the `espeakng-loader` wheel ships.

The wheel carries `libespeak-ng.so` and its voice data but no executable, so we call the C API
with ctypes: synchronous mode, a callback that collects 16-bit samples, and phoneme events
(each phoneme's name and sample position), which later issues use as frame-level labels.
eSpeak NG keeps global state, so one `Synthesizer` per process is all there is. That state also
carries from one utterance into the next (the same sentence comes out a few samples different
the second time), so `synthesize` gives every chunk of utterances a fresh worker process: the
audio then depends only on the chunk, and a corpus is bit-identical however often it is built.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice (language + variant) with its pitch (0-100), range and speed (words/min)."""

    name: str
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 160


@dataclass
class Synthesis:
    wav: np.ndarray  # float32 [n] at `sample_rate`
    sample_rate: int
    phonemes: list[tuple[str, int]]  # (phoneme, start sample)


class Synthesizer:
    _instance: Synthesizer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialize (data path {data.decode()})")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[str, int]] = []
        self._callback = _Callback(self._collect)  # kept alive on self: ctypes does not hold it
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed(0)
        ctypes.CDLL(None).srand(0)  # some voice variants draw noise from libc's rand()

    @classmethod
    def get(cls) -> Synthesizer:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._phonemes.append((events[i].id.decode(errors="replace"), events[i].sample))
            i += 1
        return 0

    def speak(self, text: str, voice: Voice) -> Synthesis:
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice '{voice.name}'")
            lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
            lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)
            lib.espeak_SetParameter(_PARAM_RANGE, voice.pitch_range, 0)
            self._chunks, self._phonemes = [], []
            raw = text.encode()
            status = lib.espeak_Synth(raw, len(raw) + 1, 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            if status != 0:
                raise RuntimeError(f"eSpeak NG failed on {text!r} (status {status})")
            lib.espeak_Synchronize()
            pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return Synthesis(pcm.astype(np.float32) / 32768.0, self.sample_rate, list(self._phonemes))


def _synthesize_chunk(items: Sequence[tuple[str, Voice]]) -> list[Synthesis]:
    synth = Synthesizer.get()
    return [synth.speak(text, voice) for text, voice in items]


def synthesize(items: Sequence[tuple[str, Voice]], chunk_size: int = 64, workers: int = 2) -> Iterator[Synthesis]:
    """Speak (text, voice) pairs in order, each chunk in a fresh process (see the module docstring)."""
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=max(1, min(workers, len(chunks))), maxtasksperchild=1) as pool:
        for chunk in pool.imap(_synthesize_chunk, chunks):
            yield from chunk
