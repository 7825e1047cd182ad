"""A corpus of awkward and broken audio files, generated (never stored): every format, depth,
channel count and rate a user may hand us, and the ways a file can be broken. Each entry says
whether a command should convert it ("ok") or which problem its one-line error must name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolm.audio import resample


@dataclass
class Case:
    path: Path
    expect: str  # "ok", or a phrase the error line must contain
    short: bool = False  # under one semantic frame / codec frame: too short for tokenize and continue


def make_corpus(folder: Path, speech: np.ndarray, rate: int) -> dict[str, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    wav16 = resample(speech, rate, 16000)[:16000].astype(np.float32)  # 1 s of speech at 16 kHz
    cases: dict[str, Case] = {}

    def write(name: str, data: np.ndarray, sr: int, expect: str = "ok", **kwargs) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr, **kwargs)
        cases[name] = Case(path, expect)

    write("pcm16.wav", wav16, 16000, subtype="PCM_16")
    write("pcm_u8.wav", wav16, 16000, subtype="PCM_U8")
    write("pcm24.wav", wav16, 16000, subtype="PCM_24")
    write("float32.wav", wav16, 16000, subtype="FLOAT")
    write("float64.wav", wav16, 16000, subtype="DOUBLE")
    for channels in (2, 3, 6, 8):
        write(f"channels{channels}.wav", np.stack([wav16 * (0.5 + 0.1 * c) for c in range(channels)], 1), 16000)
    for sr in (8000, 11025, 22050, 44100, 48000, 96000):
        write(f"rate{sr}.wav", resample(wav16, 16000, sr), sr)
    write("speech.flac", wav16, 16000, format="FLAC")
    write("speech.ogg", wav16, 16000, format="OGG", subtype="VORBIS")
    write("speech.mp3", wav16, 16000, format="MP3", subtype="MPEG_LAYER_III")
    write("flac_named.wav", wav16, 16000, format="FLAC")  # wrong extension: read by content
    write("silence.wav", np.zeros(16000, np.float32), 16000)
    write("a folder with spaces/ünïcödé speech ✓.wav", wav16, 16000)
    write("one_ms.wav", wav16[:16], 16000)
    cases["one_ms.wav"].short = True

    write("nan.wav", np.where(np.arange(16000) == 500, np.nan, wav16).astype(np.float32), 16000,
          expect="NaN or infinite", subtype="FLOAT")
    write("inf.wav", np.where(np.arange(16000) == 500, np.inf, wav16).astype(np.float32), 16000,
          expect="NaN or infinite", subtype="FLOAT")
    write("header_only.wav", np.zeros(0, np.float32), 16000, expect="empty audio")
    good = (folder / "pcm16.wav").read_bytes()
    for name, data, expect in (("truncated_header.wav", good[:30], "not a readable audio file"),
                               ("zero_bytes.wav", b"", "not a readable audio file"),
                               ("text.wav", b"this is a text file, not audio\n", "not a readable audio file")):
        (folder / name).write_bytes(data)
        cases[name] = Case(folder / name, expect)
    (folder / "directory.wav").mkdir()
    cases["directory.wav"] = Case(folder / "directory.wav", "is a directory")
    loop = folder / "unreadable.wav"  # a symlink to itself: no user, root included, can open it
    os.symlink(loop.name, loop)
    cases["unreadable.wav"] = Case(loop, "cannot be opened")
    cases["missing.wav"] = Case(folder / "missing.wav", "no such file")
    return cases
