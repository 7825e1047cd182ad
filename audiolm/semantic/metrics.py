"""How good are semantic tokens? Two questions, answered on held-out speech.

Do the tokens follow the phones? Given frame-level phone labels, the joint distribution of
(phone, token) over frames gives the HuBERT paper's measures: phone purity (how well a token
predicts its phone), cluster purity (how well a phone predicts its token) and PNMI, the share of
the phone entropy the tokens explain, I(phone; token) / H(phone).

Do the tokens follow the words or the voice? For utterances with text and speaker labels: the
normalised edit distance between the repeat-free token sequences of (a) the same sentence read by
two different voices and (b) two different sentences read by the same voice. Content tokens make
(a) clearly lower than (b); the AUC is the probability that a random (a) pair is closer than a
random (b) pair (1 = always, 0.5 = no better than chance).
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
class PhoneMetrics:
    pnmi: float
    phone_purity: float
    cluster_purity: float
    frames: int


def phone_metrics(tokens: Sequence[np.ndarray], phones: Sequence[np.ndarray]) -> PhoneMetrics:
    """Per-utterance token ids and phone ids of the same frames (phone ids < 0 are ignored)."""
    t = np.concatenate([np.asarray(x, dtype=np.int64) for x in tokens])
    y = np.concatenate([np.asarray(x, dtype=np.int64) for x in phones])
    if t.shape != y.shape:
        raise ValueError(f"{t.shape[0]} token frames but {y.shape[0]} phone frames")
    keep = y >= 0
    t, y = t[keep], y[keep]
    if not t.size:
        raise ValueError("no labelled frames")
    joint = np.zeros((y.max() + 1, t.max() + 1))
    np.add.at(joint, (y, t), 1)
    joint /= joint.sum()
    p_y, p_t = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mutual = float((joint[nz] * np.log(joint[nz] / np.outer(p_y, p_t)[nz])).sum())
    entropy = float(-(p_y[p_y > 0] * np.log(p_y[p_y > 0])).sum())
    return PhoneMetrics(pnmi=mutual / entropy if entropy else 0.0, phone_purity=float(joint.max(0).sum()),
                        cluster_purity=float(joint.max(1).sum()), frames=int(t.size))


@dataclass
class VoiceConsistency:
    same_text_other_voice: float
    other_text_same_voice: float
    auc: float
    pairs: int

    @property
    def margin(self) -> float:
        return self.other_text_same_voice - self.same_text_other_voice


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(a negative scores above a positive), ties counted half (the Mann-Whitney statistic)."""
    neg = np.sort(np.asarray(negative, dtype=float))
    pos = np.asarray(positive, dtype=float)
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    equal = np.searchsorted(neg, pos, side="right") - below
    return float(1 - (below + 0.5 * equal).sum() / (pos.size * neg.size))


def voice_consistency(ids: Sequence[np.ndarray], texts: Sequence[str], speakers: Sequence[str],
                      max_pairs: int = 2000, seed: int = 0) -> VoiceConsistency:
    seqs = [dedup(x) for x in ids]
    by_text, by_speaker = defaultdict(list), defaultdict(list)
    for i, (text, speaker) in enumerate(zip(texts, speakers, strict=True)):
        if not text:  # untranscribed: no sentence to compare across voices
            continue
        by_text[text].append(i)
        by_speaker[speaker].append(i)
    same_text = [(i, j) for group in by_text.values() for i, j in itertools.combinations(group, 2)
                 if speakers[i] != speakers[j]]
    same_voice = [(i, j) for group in by_speaker.values() for i, j in itertools.combinations(group, 2)
                  if texts[i] != texts[j]]
    if not same_text or not same_voice:
        raise ValueError("voice consistency needs sentences read by several voices and voices reading several sentences")
    rng = random.Random(seed)

    def distances(pairs: list[tuple[int, int]]) -> list[float]:
        pairs = rng.sample(pairs, min(max_pairs, len(pairs)))
        return [normalized_edit_distance(seqs[i], seqs[j]) for i, j in pairs]

    a, b = distances(same_text), distances(same_voice)
    return VoiceConsistency(float(np.mean(a)), float(np.mean(b)), auc(a, b), len(a) + len(b))
