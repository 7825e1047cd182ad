"""The demo's own versions of the field's spoken-LM tests, in the benchmarks' layouts.

Made offline with eSpeak NG (the demo's synthesizer) in voices no model trained on, from the demo's
vocabulary and grammar (audiolm.data.demo), so that its small LMs are asked what they could have
learned:
- lexical (sWUGGY-style): each word of the training sentences against a pseudo-word made the way
  WUGGY makes them, by swapping one sub-syllabic segment (a run of consonants or of vowel letters) for
  one that words of the vocabulary have at the same place (two for words of three or more vowel runs),
  so that eSpeak reads it by English spelling rules; no pseudo-word is a word of the vocabulary or any
  word wordfreq knows. `frequency` is the word's count in the training sentences.
- syntactic (sBLIMP-style): new sentences of the grammar against the same words in a broken order
  (an article swapped with the word after it) or with the wrong verb form (past for base form and back).
- topic StoryCloze (tSC-style): a first sentence about a person and a thing; the true ending is about
  the same person and thing, the wrong one another story's ending, of the same template.
Layouts: `lexical/dev` and `syntactic/dev` with a `gold.csv` as ZeroSpeech 2021's (audiolm.eval.slm21),
`tSC/<id>_correct.wav` and `<id>_incorrect.wav` as spoken StoryCloze's.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from audiolm.data import demo
from audiolm.data.espeak import Voice, synthesize

_SEGMENT = re.compile(r"[aeiouy]+|[^aeiouy]+")


def segments(word: str) -> list[str]:
    """Runs of vowel letters and of consonant letters ("garden" -> g a rd e n); a first y before a
    vowel is a consonant ("yellow" -> y e ll o w)."""
    w = word.lower()
    if len(w) > 1 and w[0] == "y" and w[1] in "aeiou":
        return ["y", *_SEGMENT.findall(w[1:])]
    return _SEGMENT.findall(w)


def _is_vowel_run(part: str, k: int) -> bool:
    return part[0] in "aeiou" or (part[0] == "y" and k > 0)


def _slot(parts: list[str], k: int) -> tuple[bool, str]:
    """(is a vowel run, first / middle / last): where segment k may be swapped for another."""
    return _is_vowel_run(parts[k], k), "first" if k == 0 else "last" if k == len(parts) - 1 else "middle"


def training_words(texts: list[str]) -> Counter:
    """Lower-case words of the training sentences with their counts."""
    return Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))


def is_english(word: str) -> bool:
    """A word wordfreq has seen in English text (any frequency)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") > 0


def pseudo_word(word: str, vocabulary: set[str], rng: random.Random,
                known: Callable[[str], bool] = is_english) -> str:
    """A pseudo-word for `word`: one (or two) of its segments swapped for another of the same kind and
    place in the vocabulary's words, within one letter of its length, not a known word."""
    parts = segments(word)
    pools: dict[tuple[bool, str], set[str]] = {}
    for other in vocabulary:
        p = segments(other)
        for k in range(len(p)):
            pools.setdefault(_slot(p, k), set()).add(p[k])
    changes = 2 if sum(_is_vowel_run(p, k) for k, p in enumerate(parts)) >= 3 else 1
    for _ in range(500):
        candidate = list(parts)
        for k in rng.sample(range(len(parts)), min(changes, len(parts))):
            options = sorted(pools.get(_slot(parts, k), set()) - {parts[k]})
            if options:
                candidate[k] = rng.choice(options)
        made = "".join(candidate)
        if made != word and abs(len(made) - len(word)) <= 1 and made not in vocabulary and not known(made):
            return made
    raise ValueError(f"no pseudo-word found for '{word}'")


def lexical_pairs(train_texts: list[str], count: int, seed: int,
                  known: Callable[[str], bool] = is_english) -> list[tuple[str, str, int]]:
    """(word, pseudo-word, its count in training) for up to `count` words of 4 letters or more."""
    counts = training_words(train_texts)
    words = sorted(w for w in counts if len(w) >= 4)
    rng = random.Random(seed)
    chosen = sorted(rng.sample(words, min(count, len(words))))
    return [(w, pseudo_word(w, set(counts), rng, known), counts[w]) for w in chosen]


def _determiner_swapped(text: str, rng: random.Random) -> str | None:
    """An article swapped with the word after it ("the old river" -> "old the river"), which English
    never allows; the sentence still starts with a capital. None: the sentence has no article."""
    words, end = text[:-1].split(" "), text[-1]
    if words[0] not in demo._NAMES:
        words[0] = words[0].lower()
    places = [k for k in range(len(words) - 1) if words[k] in ("the", "a") and words[k + 1].isalpha()]
    if not places:
        return None
    k = rng.choice(places)
    words[k], words[k + 1] = words[k + 1], words[k]
    swapped = " ".join(words)
    return swapped[0].upper() + swapped[1:] + end


def _wrong_verb_form(template: str, slots: dict[str, str]) -> tuple[str, str] | None:
    """(subtype, the sentence with the base form where the past belongs or the other way round);
    None: no verb slot, or a change that is still English ("to find" -> "to found")."""
    base_of = {past: base for base, past in demo.VERB_FORMS.items()}
    if "{past}" in template:
        return "base form for past", template.format(**{**slots, "past": base_of[slots["past"]]})
    if "{verb}" in template and slots["verb"] != "find":
        return "past for base form", template.format(**{**slots, "verb": demo.VERB_FORMS[slots["verb"]]})
    return None


def syntactic_pairs(count: int, seed: int, exclude: set[str]) -> list[tuple[str, str, str, str]]:
    """(type, subtype, sentence, broken sentence): new sentences of the grammar (none of `exclude`),
    half with an article swapped with the next word, half with the wrong verb form."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str, str]] = []
    seen = set(exclude)
    while len(out) < count:
        template, slots = demo.grammar_sentence(rng)
        text = template.format(**slots)
        if text in seen:
            continue
        seen.add(text)
        if len(out) % 2 == 0:
            bad = _determiner_swapped(text, rng)
            broken = ("word order", "article swapped", bad) if bad else None
        else:
            wrong = _wrong_verb_form(template, slots)
            broken = ("verb form", *wrong) if wrong else None
        if broken and broken[2] != text:
            out.append((broken[0], broken[1], text, broken[2]))
    return out


STORY_FIRST = "{name} {past} a {adj} {noun} {time}."
STORY_ENDINGS = ("Later {name} {past} the {noun} at {place}.", "Then {name} gave the {noun} to {name2}.",
                 "The {noun} was {adj2}, so {name} {past} it again.")


def story_pairs(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(first sentence, true ending, wrong ending): the wrong ending is that of a later story of the
    same ending template, about another person and thing."""
    rng = random.Random(seed)
    stories = []
    for k in range(count + len(STORY_ENDINGS)):
        _, slots = demo.grammar_sentence(rng)
        slots["adj2"] = rng.choice(demo._ADJECTIVES)
        stories.append((STORY_FIRST.format(**slots), STORY_ENDINGS[k % len(STORY_ENDINGS)], slots))
    out = []
    for k in range(count):
        first, ending, slots = stories[k]
        other = stories[k + len(STORY_ENDINGS)][2]
        names = [n for n in demo._NAMES if n not in (slots["name"], other["name"], other["name2"])]
        if slots["name"] in (other["name"], other["name2"]):  # then about someone else, told to someone else
            other = {**other, "name": names[0] if other["name"] == slots["name"] else other["name"],
                     "name2": names[1] if other["name2"] == slots["name"] else other["name2"]}
        if other["noun"] == slots["noun"]:  # and something else
            other = {**other, "noun": next(n for n in demo._NOUNS if n not in (slots["noun"], other["noun2"]))}
        out.append((first, ending.format(**slots), ending.format(**other)))
    return out


def _write_wavs(folder: Path, items: list[tuple[str, str, Voice]]) -> dict[str, float]:
    """(file stem, text, voice) -> folder/<stem>.wav; returns each file's seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds = {}
    # chunks of 256 short items: a fresh eSpeak process per chunk costs more than its words here
    for (stem, _, _), out in zip(items, synthesize([(text, voice) for _, text, voice in items], chunk_size=256), strict=True):
        wav = np.asarray(out.wav, dtype=np.float32)
        sf.write(folder / f"{stem}.wav", wav, out.sample_rate, subtype="PCM_16")
        seconds[stem] = len(wav) / out.sample_rate
    return seconds


def _write_gold(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def write_sets(folder: Path, voices: dict[str, Voice], train_texts: list[str], lexical: int = 100,
               syntactic: int = 60, stories: int = 60, seed: int = 0) -> dict[str, int]:
    """The three sets under `folder`, each word pair read by every voice of `voices`, each sentence pair
    and story by one of them in turn; returns how many pairs each has."""
    folder = Path(folder)
    names = sorted(voices)
    items, rows = [], []
    words = lexical_pairs(train_texts, lexical, seed)
    for i, (word, pseudo, freq) in enumerate(words):
        for v in names:
            for text, correct in ((word, 1), (pseudo, 0)):
                stem = f"w{i:04d}_{v}_{correct}"
                items.append((stem, text, voices[v]))
                rows.append((stem, i, v, freq, text, "", len(text), correct))
    _write_wavs(folder / "lexical" / "dev", items)
    _write_gold(folder / "lexical" / "dev" / "gold.csv",
                ("filename", "id", "voice", "frequency", "word", "phones", "length", "correct"), rows)
    items, rows = [], []
    pairs = syntactic_pairs(syntactic, seed + 1, set(train_texts))
    for i, (kind, subtype, good, bad) in enumerate(pairs):
        v = names[i % len(names)]  # sentences take longer to say (and score) than words: one voice each, in turn
        for text, correct in ((good, 1), (bad, 0)):
            stem = f"s{i:04d}_{v}_{correct}"
            items.append((stem, text, voices[v]))
            rows.append((stem, kind, subtype, correct, i, v, text))
    _write_wavs(folder / "syntactic" / "dev", items)
    _write_gold(folder / "syntactic" / "dev" / "gold.csv", ("filename", "type", "subtype", "correct", "id", "voice",
                                                          "transcription"), rows)
    items = []
    for i, (first, true, wrong) in enumerate(story_pairs(stories, seed + 2)):
        voice = voices[names[i % len(names)]]
        items += [(f"{i:04d}_correct", f"{first} {true}", voice), (f"{i:04d}_incorrect", f"{first} {wrong}", voice)]
    _write_wavs(folder / "tSC", items)
    return {"lexical": len(words), "syntactic": len(pairs), "stories": stories}
