"""The built-in demo corpus: varied English sentences read by distinct eSpeak NG voices.

Deterministic from a seed. The held-out split has its own sentences, each read by every
voice, so "same words, other voice" and "same voice, other words" can be compared; train
sentences are each read by a few voices, rotating so that every voice gets a fair share.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from audiolm.config import DemoCorpusConfig
from audiolm.data.espeak import Voice
from audiolm.data.voices import voice_bank

# Distinct accents, variants (formant sets), pitches and speeds; ordered so that the first six
# already span male/female, low/high and slow/fast.
VOICES: tuple[Voice, ...] = (
    Voice("en-us+m3", pitch=35, pitch_range=40, rate=150),
    Voice("en-gb-x-rp+f2", pitch=72, pitch_range=60, rate=165),
    Voice("en-gb-scotland+m7", pitch=50, pitch_range=55, rate=140),
    Voice("en-us+f4", pitch=62, pitch_range=70, rate=175),
    Voice("en-029+m1", pitch=42, pitch_range=45, rate=158),
    Voice("en-us-nyc+f5", pitch=80, pitch_range=50, rate=150),
    Voice("en-us+klatt", pitch=55, pitch_range=35, rate=170),
    Voice("en+m5", pitch=28, pitch_range=60, rate=145),
    Voice("en-us+f1", pitch=68, pitch_range=40, rate=185),
    Voice("en-gb-x-gbclan+m2", pitch=46, pitch_range=50, rate=155),
)

_NAMES = "Anna Boris Clara David Elena Felix Grace Hugo Irene Jonas Karen Leo Maria Nora Oscar Paula".split()
_ADJECTIVES = "old small bright quiet heavy yellow narrow warm broken gentle famous empty clever wooden".split()
_NOUNS = (
    "river garden window teacher engine letter kitchen bottle mountain pencil doctor village "
    "basket ticket market island blanket camera ladder harbour".split()
)
_PLACES = "the station|the library|the bakery|the old bridge|the school|the museum|the harbour|the forest".split("|")
_TIMES = "this morning|last winter|after dinner|before noon|on Sunday|every evening|at midnight|next week".split("|")
_VERBS_PAST = "found|carried|painted|opened|repaired|noticed|borrowed|cleaned|described|forgot".split("|")
_VERBS = "find|carry|paint|open|repair|notice|borrow|clean|describe|visit".split("|")

TEMPLATES = (
    "The {adj} {noun} {past} near {place} {time}.",
    "{name} {past} a {adj} {noun} {time}.",
    "Did {name} {verb} the {noun} at {place}?",
    "We will {verb} the {adj} {noun} and the {noun2} {time}.",
    "{name} and {name2} walked to {place} to {verb} a {noun}.",
    "Nobody {past} the {noun} because it was too {adj}.",
    "Why is the {noun} at {place} so {adj} {time}?",
    "{name} said that the {noun2} was {adj}, but the {noun} was not.",
    "Please {verb} the {adj} {noun} before {name} comes back.",
    "After the {noun} broke, {name} {past} a {adj} {noun2} from {place}.",
)


@dataclass(frozen=True)
class DemoUtterance:
    id: str
    speaker: str
    voice: Voice
    text: str
    split: str


# each base form with its past: the grammar's verb slots, and sBLIMP-style "verb form" errors (scoreboard)
VERB_FORMS = dict(zip(_VERBS, "found|carried|painted|opened|repaired|noticed|borrowed|cleaned|described|visited".split("|"),
                      strict=True)) | {"forget": "forgot"}


def grammar_sentence(rng: random.Random) -> tuple[str, dict[str, str]]:
    """One template and a draw of its slots (in the order the demo corpus has always drawn them)."""
    name, name2 = rng.sample(_NAMES, 2)
    noun, noun2 = rng.sample(_NOUNS, 2)
    template = rng.choice(TEMPLATES)
    return template, {"name": name, "name2": name2, "noun": noun, "noun2": noun2, "adj": rng.choice(_ADJECTIVES),
                      "place": rng.choice(_PLACES), "time": rng.choice(_TIMES), "past": rng.choice(_VERBS_PAST),
                      "verb": rng.choice(_VERBS)}


def sentences(count: int, seed: int) -> list[str]:
    """`count` distinct sentences from the templates, deterministic for `seed`."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    for _ in range(count * 200):
        if len(seen) == count:
            break
        template, slots = grammar_sentence(rng)
        seen.setdefault(template.format(**slots), None)
    if len(seen) < count:
        raise ValueError(f"the demo grammar yields only {len(seen)} distinct sentences, {count} asked")
    return list(seen)


def demo_voices(cfg: DemoCorpusConfig) -> tuple[dict[str, Voice], dict[str, Voice]]:
    """Training voices (v00, v01, ...) and unseen voices (u00, ...), by speaker id."""
    if cfg.bank == "classic":
        if not 1 <= cfg.voices <= len(VOICES):
            raise ValueError(f"data.demo.voices must be between 1 and {len(VOICES)} with bank 'classic', got {cfg.voices}")
        if cfg.unseen_voices:
            raise ValueError("data.demo.unseen_voices needs data.demo.bank: many")
        train, unseen = list(VOICES[: cfg.voices]), []
    elif cfg.bank == "many":
        if cfg.voices < 1:
            raise ValueError(f"data.demo.voices must be at least 1, got {cfg.voices}")
        train, unseen = voice_bank(cfg.voices, cfg.unseen_voices, cfg.seed)
    else:
        raise ValueError(f"unknown data.demo.bank '{cfg.bank}' (use classic or many)")
    return {f"v{i:02d}": v for i, v in enumerate(train)}, {f"u{i:02d}": v for i, v in enumerate(unseen)}


def demo_utterances(cfg: DemoCorpusConfig) -> Iterator[DemoUtterance]:
    """Every utterance of the demo corpus, held-out first, in a fixed order. Held-out sentences are
    read by `heldout_voices` of the training voices (spread over the bank; 0 = all) and by every
    unseen voice; training sentences by `voices_per_train_sentence` training voices each, rotating."""
    train_voices, unseen_voices = demo_voices(cfg)
    if not 0 < cfg.heldout_sentences < cfg.sentences:
        raise ValueError("data.demo.heldout_sentences must be positive and below data.demo.sentences")
    if not 1 <= cfg.voices_per_train_sentence <= cfg.voices:
        raise ValueError("data.demo.voices_per_train_sentence must be between 1 and data.demo.voices")
    if not 0 <= cfg.heldout_voices <= cfg.voices:
        raise ValueError("data.demo.heldout_voices must be between 0 (all) and data.demo.voices")
    if cfg.sentences_per_heldout_utterance < 1:
        raise ValueError("data.demo.sentences_per_heldout_utterance must be at least 1")
    texts = sentences(cfg.sentences, cfg.seed)
    n = cfg.sentences_per_heldout_utterance
    heldout = [" ".join(texts[i : min(i + n, cfg.heldout_sentences)]) for i in range(0, cfg.heldout_sentences, n)]
    train = texts[cfg.heldout_sentences :]
    ids = list(train_voices)
    # a stride one past even spacing, so the readers differ in accent as well as in variant
    step = len(ids) // cfg.heldout_voices + 1 if cfg.heldout_voices else 1
    seen = ids if not cfg.heldout_voices else [ids[i * step % len(ids)] for i in range(cfg.heldout_voices)]
    readers = [*seen, *unseen_voices]  # a new list: `ids` also picks the training readers
    voices = {**train_voices, **unseen_voices}
    for s, text in enumerate(heldout):
        for speaker in readers:
            yield DemoUtterance(f"heldout_s{s:04d}_{speaker}", speaker, voices[speaker], text, "heldout")
    for s, text in enumerate(train):
        for j in range(cfg.voices_per_train_sentence):
            speaker = ids[(s + j) % len(ids)]
            yield DemoUtterance(f"train_s{s:04d}_{speaker}", speaker, voices[speaker], text, "train")
