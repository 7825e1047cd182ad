"""Offline speech synthesis with eSpeak NG, through the library the `espeakng-loader` wheel ships.

The wheel carries `libespeak-ng.so` and its voice data but no executable, so we call the C API
with ctypes: synchronous mode, a callback that collects 16-bit samples, and phoneme events
(each phoneme's name and sample position), which later issues use as frame-level labels.
eSpeak NG keeps global state, so one `Synthesizer` per process is all there is. That state also
carries from one utterance into the next (the same sentence comes out a few samples different
the second time), so `synthesize` gives every chunk of utterances a fresh worker process: the
audio then depends only on the chunk, and a corpus is bit-identical however often it is built.

Voices beyond eSpeak's own variants: a `Voice` with a `formant_scale` (a longer or shorter vocal
tract: every formant frequency times the factor) is spoken by a variant file written for it, a copy
of its base variant with the formant lines scaled. Such files go into a private overlay of the
voice data (a temporary folder of links to the wheel's files plus ours), never into the wheel.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import multiprocessing
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
    """An eSpeak NG voice (language + variant, "en-us+m3") with its pitch (0-100), range and speed
    (words/min), and a formant scale (1.0: the variant's own formants)."""

    name: str
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 160
    formant_scale: float = 1.0

    @property
    def language(self) -> str:
        return self.name.split("+")[0]

    @property
    def variant(self) -> str:
        return self.name.split("+")[1] if "+" in self.name else ""


FORMANTS = 9  # eSpeak's formant lines 0-8: "formant N frequency% height% width%"


def scaled_variant(text: str, scale: float) -> str:
    """A variant file's text with every formant's frequency (lines 1-8; 0 is the voicing bar) times
    `scale`; formants the file does not set are added at the default 100%, scaled."""
    lines, seen = [], set()
    for line in text.splitlines():
        m = re.match(r"\s*formant\s+(\d+)\s+(\d+)(.*)$", line)
        if m and int(m.group(1)) > 0:
            seen.add(int(m.group(1)))
            line = f"formant {m.group(1)} {round(int(m.group(2)) * scale)}{m.group(3)}"
        lines.append(line)
    lines += [f"formant {n} {round(100 * scale)} 100 100" for n in range(1, FORMANTS) if n not in seen]
    return "\n".join(lines) + "\n"


def _overlay(data: Path) -> Path:
    """A private copy of the voice data made of links, with a writable variants folder."""
    root = Path(tempfile.mkdtemp(prefix="audiolm-espeak-"))
    atexit.register(shutil.rmtree, root, True)
    for entry in data.iterdir():
        if entry.name != "voices":
            (root / entry.name).symlink_to(entry)
    (root / "voices" / "!v").mkdir(parents=True)
    for entry in (data / "voices").iterdir():
        if entry.name != "!v":
            (root / "voices" / entry.name).symlink_to(entry)
    for entry in (data / "voices" / "!v").iterdir():
        (root / "voices" / "!v" / entry.name).symlink_to(entry)
    return root


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
        self._data = _overlay(Path(espeakng_loader.get_data_path()))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data).encode(), _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialize (data path {self._data})")
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._phonemes: list[tuple[str, int]] = []
        self._callback = _Callback(self._collect)  # kept alive on self: ctypes does not hold it
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
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

    def _voice_name(self, voice: Voice) -> str:
        """The name eSpeak loads `voice` by: its own, or that of a variant file written for it."""
        if voice.formant_scale == 1.0:
            return voice.name
        variants = self._data / "voices" / "!v"
        base = variants / voice.variant if voice.variant else None
        if base is not None and not base.is_file():
            raise ValueError(f"eSpeak NG has no voice variant '{voice.variant}'")
        # short: eSpeak overflows a fixed buffer on long "language+variant" names (and aborts)
        name = "x" + hashlib.sha1(f"{voice.variant}:{voice.formant_scale:.4f}".encode()).hexdigest()[:7]
        if not (variants / name).exists():
            text = base.read_text(errors="replace") if base else "language variant\n"
            tmp = variants / f".{name}.{os.getpid()}"
            tmp.write_text(scaled_variant(text, voice.formant_scale).replace(f"name {voice.variant}", f"name {name}"))
            tmp.replace(variants / name)
        return f"{voice.language}+{name}"

    def phonemes(self, text: str, language: str = "en-us") -> list[list[str]]:
        """eSpeak NG's own grapheme-to-phoneme conversion: the phoneme names (those of the phoneme
        events `speak` records) of each word of `text`, read as `language` reads it. Any text, not only
        words of a corpus; no audio is made."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(language.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice '{language}'")
            buffer = ctypes.create_string_buffer(text.encode())
            cursor = ctypes.c_char_p(ctypes.addressof(buffer))  # eSpeak moves it clause by clause, NULL at the end
            words: list[list[str]] = []
            while cursor.value:
                clause = self._lib.espeak_TextToPhonemes(ctypes.byref(cursor), _CHARS_UTF8, ord(" ") << 8)
                words += [w.split() for w in (clause or b"").decode(errors="replace").split("  ") if w.strip()]
            return words

    def speak(self, text: str, voice: Voice) -> Synthesis:
        with self._lock:
            lib = self._lib
            if lib.espeak_SetVoiceByName(self._voice_name(voice).encode()) != 0:
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
    # a worker that eSpeak aborts raises BrokenProcessPool here (a multiprocessing.Pool would wait forever)
    with ProcessPoolExecutor(max(1, min(workers, len(chunks))), mp_context=ctx, max_tasks_per_child=1) as pool:
        for chunk in pool.map(_synthesize_chunk, chunks):
            yield from chunk
