"""A bank of distinct eSpeak NG voices for a corpus of many speakers.

A voice is an English accent, an eSpeak voice variant (its formant set, voicing, breath, tone), a
pitch, pitch range and speed, and a formant scale (a shorter or longer vocal tract), all drawn from a
seeded generator, so the bank is the same on every machine. The training family uses the formant-
synthesis variants; the Klatt-synthesis variants form a family of their own, never trained on, so a
held-out split can hold voices made differently from every training voice, not only unheard ones.
Variants that do not sound like one human speaker (robots, whispers, echo effects) are left out.
"""

from __future__ import annotations

import math
import random

from audiolm.data.espeak import Voice

ACCENTS = ("en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en")
# eSpeak NG's formant-synthesis variants, male and female, that sound like one human speaker
TRAIN_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene Gene2 Henrique Hugo Jacky "
    "Lee Marco Mario Michael Mike antonio aunty belinda boris croak ed grandma grandpa gustave ian iven iven2 iven3 "
    "john kaukovalta linda marcelo max michel miguel norbert pablo paul pedro quincy rob robert sandro shelby steph "
    "travis victor zac"
).split()
# the Klatt-synthesis variants (a different synthesizer inside eSpeak): the unseen family
UNSEEN_VARIANTS = "klatt klatt2 klatt3 klatt4 klatt5 klatt6 adam benjamin david edward edward2 mike2 Reed announcer".split()


def _draw(rng: random.Random, accent: str, variant: str) -> Voice:
    return Voice(f"{accent}+{variant}", pitch=rng.randint(20, 80), pitch_range=rng.randint(25, 85),
                 rate=rng.randint(135, 190), formant_scale=round(math.exp(rng.uniform(math.log(0.88), math.log(1.13))), 3))


def voice_bank(train: int, unseen: int = 0, seed: int = 0) -> tuple[list[Voice], list[Voice]]:
    """`train` voices of the training family and `unseen` of the Klatt family, each a distinct
    (accent, variant) pair; accents rotate so every accent is spread over both families."""
    if train > len(ACCENTS) * len(TRAIN_VARIANTS) or unseen > len(ACCENTS) * len(UNSEEN_VARIANTS):
        raise ValueError(f"the voice bank holds at most {len(ACCENTS) * len(TRAIN_VARIANTS)} training and "
                         f"{len(ACCENTS) * len(UNSEEN_VARIANTS)} unseen voices")
    rng = random.Random(seed)

    def family(variants: list[str], count: int) -> list[Voice]:
        variants = variants[:]
        rng.shuffle(variants)
        # voice i: variant i mod V with the accent moved on by one each pass over the variants, so no
        # (accent, variant) pair repeats
        v = len(variants)
        return [_draw(rng, ACCENTS[(i % v + i // v) % len(ACCENTS)], variants[i % v]) for i in range(count)]

    return family(TRAIN_VARIANTS, train), family(UNSEEN_VARIANTS, unseen)
