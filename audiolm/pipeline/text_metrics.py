"""Scores of the text tasks: word and character error rates of transcriptions, and the phone error
rate of semantic ids against the phones of a text.

Semantic ids are not phones; each id is read as the phone its frames most often carry in a
corpus with phone alignments (`unit_phones`), so a reading's ids, deduplicated, become a phone
sequence comparable with eSpeak NG's phones of the text (`audiolm.text.phonemize`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from audiolm.data.corpus import has_phones, read_frame_phones
from audiolm.data.phones import SILENCE
from audiolm.text import WORD
from audiolm.tokens import dedup, edit_distance


def normalize_text(text: str) -> str:
    """Lower case, punctuation away, single spaces: what WER and CER compare."""
    return " ".join(re.findall(r"[\w']+", text.lower()))


def error_rate(hypotheses: Sequence[Sequence], references: Sequence[Sequence]) -> float:
    """Edit operations over reference length, summed over pairs (WER, CER, PER alike)."""
    errors = sum(edit_distance(np.asarray(h, dtype=object), np.asarray(r, dtype=object))
                 for h, r in zip(hypotheses, references, strict=True))
    return errors / max(1, sum(len(r) for r in references))


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return error_rate([normalize_text(h).split() for h in hypotheses], [normalize_text(r).split() for r in references])


def char_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return error_rate([list(normalize_text(h)) for h in hypotheses], [list(normalize_text(r)) for r in references])


def unit_phones(ids: Sequence[np.ndarray], frame_labels: Sequence[Sequence[str]], size: int) -> list[str]:
    """The phone each semantic id's frames most often carry (silence for an id never seen)."""
    counts: dict[int, dict[str, int]] = {}
    for seq, labels in zip(ids, frame_labels, strict=True):
        for unit, phone in zip(np.asarray(seq).tolist(), labels, strict=False):  # labels may run a frame longer
            row = counts.setdefault(unit, {})
            row[phone] = row.get(phone, 0) + 1
    return [max(counts[u], key=counts[u].get) if u in counts else SILENCE for u in range(size)]


def token_unit_phones(tokens, corpus_rate: int, frame_rate: float, size: int) -> list[str] | None:
    """`unit_phones` of a token dataset split with phone alignments (`phones`, `phone_starts`: the
    demo corpus records eSpeak NG's); None for a corpus without them."""
    if not has_phones(tokens):
        return None
    semantic = [np.asarray(s) for s in tokens["semantic"]]
    return unit_phones(semantic, read_frame_phones(tokens, [len(s) for s in semantic], corpus_rate, frame_rate), size)


def units_as_phones(units: np.ndarray, phones: Sequence[str]) -> list[str]:
    """Semantic ids -> the phone sequence they spell: each id as its phone, repeats and silence away."""
    mapped = [phones[u] for u in np.asarray(units, dtype=np.int64)]
    return [p for p in dedup(np.asarray(mapped, dtype=object)).tolist() if p != SILENCE] if mapped else []


def text_phones(phones: Sequence[str]) -> list[str]:
    """`phonemize` output as the phones a reading should spell: word boundaries and pauses away, repeats
    merged (two equal phones across a word boundary sound as one)."""
    kept = [p for p in phones if p not in (WORD, SILENCE)]
    return dedup(np.asarray(kept, dtype=object)).tolist() if kept else []
