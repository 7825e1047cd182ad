"""Frame-level phone labels from time-stamped phone events (eSpeak NG's, for the demo corpus).

A corpus row may carry `phones` (names) and `phone_starts` (their first sample at the corpus
rate). eSpeak writes stress marks and variant digits into its names (`'oU`, `,i@3`, `I2`) and
emits zero-length markers (`;`); those are folded away, so a label is the phone itself. A name that
starts with a digit is a phone of its own (`0` as in "fox", `3` as in "river") and is kept. Frames are on
the 50 Hz grid of the semantic features (25 ms window, 20 ms hop): a frame's label is the phone
sounding at its centre; frames before the first phone and pauses are `sil`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SILENCE = "sil"
_STRESS = "',"
_DIGITS = "0123456789"
_ZERO_LENGTH = {";", "||", "|"}


def normalize_phone(name: str) -> str | None:
    """eSpeak phoneme name -> phone label; None for markers that take no time."""
    name = name.strip()
    if not name or name in _ZERO_LENGTH:
        return None
    if name.startswith("_"):
        return SILENCE
    phone = "".join(ch for ch in name if ch not in _STRESS)
    # a digit after the first character marks a variant (`I2`, `i@3`); a leading one is the phone
    return (phone[:1] + "".join(ch for ch in phone[1:] if ch not in _DIGITS)) or None


def phone_events(events: Sequence[tuple[str, int]], from_rate: int, to_rate: int) -> tuple[list[str], list[int]]:
    """[(eSpeak name, sample at from_rate)] -> (labels, starts at to_rate), markers dropped and
    repeats of the same label at the same place merged."""
    phones, starts = [], []
    for name, sample in events:
        phone = normalize_phone(name)
        if phone is None:
            continue
        start = round(sample * to_rate / from_rate)
        if phones and starts[-1] == start:  # two events at one sample: the later one sounds
            phones[-1] = phone
            continue
        phones.append(phone)
        starts.append(start)
    return phones, starts


def frame_phones(phones: Sequence[str], starts: Sequence[int], num_frames: int, sample_rate: int,
                 frame_rate: float = 50.0, window_seconds: float = 0.025) -> list[str]:
    """The phone sounding at the centre of each of `num_frames` frames."""
    hop = sample_rate / frame_rate
    centres = np.arange(num_frames) * hop + window_seconds * sample_rate / 2
    if not len(phones):
        return [SILENCE] * num_frames
    which = np.searchsorted(np.asarray(starts), centres, side="right") - 1
    return [phones[i] if i >= 0 else SILENCE for i in which]


class PhoneInventory:
    """Phone label <-> integer id; `sil` is always id 0."""

    def __init__(self, phones: Sequence[str]):
        self.names = [SILENCE] + sorted(set(phones) - {SILENCE})
        self.index = {p: i for i, p in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def ids(self, labels: Sequence[str], unknown: int = -100) -> np.ndarray:
        """Labels -> ids; a phone not in the inventory gets `unknown` (ignored by the losses)."""
        return np.array([self.index.get(p, unknown) for p in labels], dtype=np.int64)
