"""Does a token sequence follow the words or the voice?

For utterances with text and speaker labels: the mean normalised edit distance between the
repeat-free token sequences of (a) the same sentence read by two different voices and (b) two
different sentences read by the same voice. Content tokens make (a) clearly lower than (b).
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audiolm.tokens import dedup, normalized_edit_distance


@dataclass
class VoiceConsistency:
    same_text_other_voice: float
    other_text_same_voice: float
    pairs: int

    @property
    def margin(self) -> float:
        return self.other_text_same_voice - self.same_text_other_voice


def voice_consistency(ids: Sequence[np.ndarray], texts: Sequence[str], speakers: Sequence[str],
                      max_pairs: int = 2000, seed: int = 0) -> VoiceConsistency:
    seqs = [dedup(x) for x in ids]
    by_text, by_speaker = defaultdict(list), defaultdict(list)
    for i, (text, speaker) in enumerate(zip(texts, speakers, strict=True)):
        by_text[text].append(i)
        by_speaker[speaker].append(i)
    same_text = [(i, j) for group in by_text.values() for i, j in itertools.combinations(group, 2)
                 if speakers[i] != speakers[j]]
    same_voice = [(i, j) for group in by_speaker.values() for i, j in itertools.combinations(group, 2)
                  if texts[i] != texts[j]]
    if not same_text or not same_voice:
        raise ValueError("voice consistency needs sentences read by several voices and voices reading several sentences")
    rng = random.Random(seed)

    def mean_distance(pairs: list[tuple[int, int]]) -> float:
        pairs = rng.sample(pairs, min(max_pairs, len(pairs)))
        return float(np.mean([normalized_edit_distance(seqs[i], seqs[j]) for i, j in pairs]))

    a, b = mean_distance(same_text), mean_distance(same_voice)
    return VoiceConsistency(a, b, min(max_pairs, len(same_text)) + min(max_pairs, len(same_voice)))
