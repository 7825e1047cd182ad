"""How good are semantic tokens? Two questions, answered on held-out speech.

Do the tokens follow the phones? Given frame-level phone labels, the joint distribution of
(phone, token) over frames gives the HuBERT paper's measures: phone purity (how well a token
predicts its phone), cluster purity (how well a phone predicts its token) and PNMI, the share of
the phone entropy the tokens explain, I(phone; token) / H(phone).

How much of the voice is left in them? A multinomial logistic regression on each utterance's
token histogram, trained on one split's utterances and tested on another's, names the speaker;
content-only tokens would leave it little to go on beyond the speakers' accents and tempo.

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
import torch

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


def voice_from_histograms(train_ids: Sequence[np.ndarray], train_speakers: Sequence[str],
                          test_ids: Sequence[np.ndarray], test_speakers: Sequence[str], num_tokens: int,
                          weight_decay: float = 1e-2) -> float:
    """Accuracy of naming the speaker of each test utterance from its token histogram (speakers the
    classifier was not trained on count as misses)."""
    labels = sorted(set(train_speakers))
    if len(labels) < 2:
        raise ValueError("a speaker probe needs at least two training speakers")

    def histograms(ids: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.bincount(np.asarray(x, dtype=np.int64), minlength=num_tokens)[:num_tokens]
                                          / max(1, len(x)) for x in ids])).float()

    x, test = histograms(train_ids), histograms(test_ids)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, test = (x - mean) / std, (test - mean) / std
    target = torch.tensor([labels.index(s) for s in train_speakers])
    weight = torch.zeros(num_tokens, len(labels), requires_grad=True)
    bias = torch.zeros(len(labels), requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, target) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    predicted = (test @ weight + bias).argmax(1).tolist()
    return float(np.mean([labels[p] == s for p, s in zip(predicted, test_speakers, strict=True)]))
