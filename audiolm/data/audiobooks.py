"""Long untranscribed recordings made offline, in LibriLight's layout (`speaker/book/file.flac`, no
text): the corpus the scale tests and `make bench-scale` push through stages 0-4.

Each file is one eSpeak NG voice reading demo sentences with pauses of 0.25-1.2 s between them,
at 16 kHz, as 16-bit FLAC (like LibriLight's). Deterministic from the seed.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolm import audio
from audiolm.data.demo import sentences
from audiolm.data.espeak import synthesize
from audiolm.data.voices import voice_bank

RATE = 16000
SENTENCES = 400  # distinct sentences the files draw from


def write_audiobooks(root: Path, speakers: int, minutes: float, files_per_speaker: int = 1, seed: int = 0) -> list[Path]:
    """`speakers` x `files_per_speaker` FLAC files of `minutes` each under `root`; returns them."""
    rng = random.Random(seed)
    texts = sentences(SENTENCES, seed)
    voices, _ = voice_bank(speakers, 0, seed)
    paths = []
    for s, voice in enumerate(voices):
        for f in range(files_per_speaker):
            path = Path(root) / f"{1000 + s}" / f"book{f}" / f"{1000 + s}_book{f}.flac"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                wav = _reading(voice, texts, minutes * 60, rng)
                tmp = path.with_name(f".{path.name}.tmp")
                sf.write(tmp, wav, RATE, format="FLAC", subtype="PCM_16")
                tmp.rename(path)
            paths.append(path)
    return paths


def _reading(voice, texts: list[str], seconds: float, rng: random.Random) -> np.ndarray:
    parts, total, chunk = [], 0, 64
    while total < seconds * RATE:
        for out in synthesize([(rng.choice(texts), voice) for _ in range(chunk)]):
            wav = audio.prepare(out.wav, out.sample_rate, RATE)
            pause = np.zeros(int(rng.uniform(0.25, 1.2) * RATE), np.float32)
            parts += [wav, pause]
            total += len(wav) + len(pause)
    return np.concatenate(parts)[: int(seconds * RATE)]
