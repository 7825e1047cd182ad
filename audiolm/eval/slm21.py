"""The field's spoken-language-model tests, in the formats their benchmarks read.

ZeroSpeech 2021's sLM21 (Nguyen et al. 2020): `lexical/{dev,test}` (sWUGGY: a word and a pseudo-word
of the same phonotactics) and `syntactic/{dev,test}` (sBLIMP: a grammatical and an ungrammatical
sentence), each a folder of wavs with, where the organisers give it, a `gold.csv`. A submission is one
text file per part and split (`lexical/dev.txt`), a line `<file stem> <score>` per wav, higher = more
likely. Scoring is the benchmark's own (zerospeech2021's `lexical.py` / `syntactic.py`):
- rows are paired in file order: the i-th correct row of `gold.csv` with its i-th incorrect one (we
  also check that the two share their id and voice, which the benchmark's files always do);
- a pair scores 1 when the correct item's score is higher, 0.5 on a tie, 0 otherwise;
- pairs are averaged over voices, per id (lexical) or per (type, subtype, id) (syntactic); the overall
  figure is the mean over those; lexical "in-vocab" leaves out the band of words LibriSpeech never has
  (frequency 0); bands oov, 1-5, 6-20, 21-100, >100 as the benchmark cuts them.

Spoken StoryCloze (sSC, tSC; Hassid et al. 2023, TWIST) is a folder of pairs `<id>_correct.wav` /
`<id>_incorrect.wav`: the accuracy is the share of pairs whose true ending scores higher (0.5 a tie).
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from audiolm.files import atomic_write_text

PARTS = ("lexical/dev", "lexical/test", "syntactic/dev", "syntactic/test")
FREQUENCY_BANDS = ((0, 1, "oov"), (1, 5, "1-5"), (5, 20, "6-20"), (20, 100, "21-100"), (100, math.inf, ">100"))
STORY_NAME = re.compile(r"^(?P<id>.+)_(?P<label>correct|incorrect)$")


# -- submissions ---------------------------------------------------------------------------------
def write_submission(path: Path, scores: dict[str, float]) -> None:
    """`<stem> <score>` per wav, sorted by stem; scores written exactly (repr of the float)."""
    for stem, score in scores.items():
        if not math.isfinite(score):
            raise ValueError(f"{path}: the score of {stem} is {score}; a submission holds finite floats")
        if any(c.isspace() for c in stem) or "/" in stem or stem.endswith(".wav"):
            raise ValueError(f"{path}: '{stem}' is not a file stem (no path, no extension, no space)")
    atomic_write_text(path, "".join(f"{stem} {float(scores[stem])!r}\n" for stem in sorted(scores)))


def read_submission(path: Path, stems: set[str] | None = None) -> dict[str, float]:
    """A submission file's scores, checked as the benchmark checks them: two fields a line, a float
    score, no stem twice, and (given `stems`, the wavs of the part) exactly those stems."""
    scores: dict[str, float] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.strip().split(" ")
        if len(fields) != 2:
            raise ValueError(f"{path}, line {number}: must be '<filename> <score>', is '{line}'")
        try:
            score = float(fields[1])
        except ValueError:
            raise ValueError(f"{path}, line {number}: the score must be a float, is '{fields[1]}'") from None
        if fields[0] in scores:
            raise ValueError(f"{path}, line {number}: '{fields[0]}' appears twice")
        scores[fields[0]] = score
    if stems is not None and set(scores) != stems:
        missing, extra = sorted(stems - set(scores)), sorted(set(scores) - stems)
        raise ValueError(f"{path}: the stems do not match the wavs: {len(missing)} missing {missing[:3]}, "
                         f"{len(extra)} extra {extra[:3]}")
    return scores


# -- scoring rules -------------------------------------------------------------------------------
def read_gold(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def pair_score(correct: float, incorrect: float) -> float:
    return 1.0 if correct > incorrect else 0.5 if correct == incorrect else 0.0


def _pairs(gold: list[dict[str, str]], scores: dict[str, float], source: str) -> list[tuple[dict, float]]:
    """(the correct row, its pair's score) for each pair of rows, paired in file order."""
    missing = [row["filename"] for row in gold if row["filename"] not in scores]
    if missing:
        raise ValueError(f"{source}: no score for {len(missing)} of its wavs ({', '.join(missing[:3])})")
    right = [row for row in gold if int(row["correct"]) == 1]
    wrong = [row for row in gold if int(row["correct"]) == 0]
    if len(right) != len(wrong):
        raise ValueError(f"{source}: {len(right)} correct rows but {len(wrong)} incorrect ones")
    out = []
    for a, b in zip(right, wrong, strict=True):
        if (a["id"], a["voice"]) != (b["id"], b["voice"]):
            raise ValueError(f"{source}: {a['filename']} (id {a['id']}, voice {a['voice']}) is paired in file order with "
                             f"{b['filename']} (id {b['id']}, voice {b['voice']}); pairs must share id and voice")
        out.append((a, pair_score(scores[a["filename"]], scores[b["filename"]])))
    return out


def _mean_over_voices(pairs: list[tuple[dict, float]], key: tuple[str, ...]) -> list[tuple[dict, float]]:
    groups: dict[tuple, list[tuple[dict, float]]] = defaultdict(list)
    for row, score in pairs:
        groups[tuple(row[k] for k in key)].append((row, score))
    return [(members[0][0], float(np.mean([s for _, s in members]))) for members in groups.values()]


def _summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "score": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")}


def lexical_accuracy(gold: list[dict[str, str]], scores: dict[str, float], source: str = "gold.csv") -> dict:
    """sWUGGY: accuracy over (word, pseudo-word) pairs, all and in-vocab, and by frequency band."""
    by_pair = _mean_over_voices(_pairs(gold, scores, source), ("id",))
    bands: dict[str, list[float]] = defaultdict(list)
    for row, score in by_pair:
        frequency = float(row.get("frequency") or 0)
        name = next(n for lo, hi, n in FREQUENCY_BANDS if lo <= frequency < hi)
        bands[name].append(score)
    in_vocab = [s for name, values in bands.items() if name != "oov" for s in values]
    return {"all": float(np.mean([s for _, s in by_pair])), "in_vocab": float(np.mean(in_vocab)) if in_vocab else float("nan"),
            "pairs": len(by_pair), "by_frequency": {n: _summary(bands[n]) for _, _, n in FREQUENCY_BANDS if bands[n]}}


def syntactic_accuracy(gold: list[dict[str, str]], scores: dict[str, float], source: str = "gold.csv") -> dict:
    """sBLIMP: accuracy over (grammatical, ungrammatical) pairs, overall and by type."""
    by_pair = _mean_over_voices(_pairs(gold, scores, source), ("type", "subtype", "id"))
    types: dict[str, list[float]] = defaultdict(list)
    for row, score in by_pair:
        types[row["type"]].append(score)
    return {"all": float(np.mean([s for _, s in by_pair])), "pairs": len(by_pair),
            "by_type": {t: _summary(v) for t, v in sorted(types.items())}}


def story_pairs(stems: list[str], source: str) -> list[tuple[str, str]]:
    """(true ending, wrong ending) stems of a StoryCloze folder, by id."""
    found: dict[str, dict[str, str]] = defaultdict(dict)
    for stem in stems:
        match = STORY_NAME.match(stem)
        if not match:
            raise ValueError(f"{source}: '{stem}.wav' is not named <id>_correct or <id>_incorrect")
        found[match["id"]][match["label"]] = stem
    incomplete = [i for i, labels in found.items() if len(labels) != 2]
    if incomplete:
        raise ValueError(f"{source}: stories without both endings: {', '.join(sorted(incomplete)[:3])}")
    return [(found[i]["correct"], found[i]["incorrect"]) for i in sorted(found)]


def story_accuracy(scores: dict[str, float], source: str = "storycloze") -> dict:
    pairs = story_pairs(list(scores), source)
    return {"all": float(np.mean([pair_score(scores[a], scores[b]) for a, b in pairs])), "pairs": len(pairs)}
