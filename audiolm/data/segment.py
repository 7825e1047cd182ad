"""Cutting long recordings (LibriLight's 10-30 minute audiobook files) into utterance-sized
segments at silences, so that every stage sees pieces of at most `max_seconds`.

The cuts depend on the samples alone (no randomness): the same file gives the same segments in
every run and every process. Each segment is a (start, end) pair of sample offsets into the file.
"""

from __future__ import annotations

import numpy as np

FRAME_SECONDS = 0.02  # energy frames
SMOOTH_FRAMES = 5  # a cut goes in the middle of the quietest 100 ms
QUIET_DB = 3.0  # frames within this of the window's quietest count as equally quiet: the latest is taken


def frame_energy_db(wav: np.ndarray, rate: int) -> np.ndarray:
    """Mean power per FRAME_SECONDS frame, averaged over SMOOTH_FRAMES frames, in dB."""
    hop = max(1, round(FRAME_SECONDS * rate))
    frames = len(wav) // hop
    power = np.square(wav[: frames * hop].astype(np.float64)).reshape(frames, hop).mean(axis=1)
    smooth = np.convolve(power, np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES, mode="same")
    return 10 * np.log10(smooth + 1e-12)


def silence_cuts(wav: np.ndarray, rate: int, max_seconds: float) -> list[tuple[int, int]]:
    """Segments of at most `max_seconds` covering the whole of `wav`, each cut in the quietest stretch
    of the second half of its window (the latest of the near-quietest, so segments run long): a
    pause between words or sentences where there is one. A file no longer than `max_seconds` is one
    segment."""
    n, longest = len(wav), int(max_seconds * rate)
    if n <= longest:
        return [(0, n)]
    hop = max(1, round(FRAME_SECONDS * rate))
    energy = frame_energy_db(wav, rate)
    segments, start = [], 0
    while n - start > longest:
        lo, hi = (start + longest // 2) // hop + 1, (start + longest) // hop  # frames wholly inside the window
        window = energy[lo:hi]
        quiet = np.flatnonzero(window <= window.min() + QUIET_DB)
        cut = (lo + int(quiet[-1])) * hop + hop // 2
        segments.append((start, cut))
        start = cut
    segments.append((start, n))
    return segments
