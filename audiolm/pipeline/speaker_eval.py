"""Stage 4's judge: do continuations keep the voice of their prompt, for voices the models trained on
and, apart, for voices no model ever heard?

A speaker embedding (`audiolm.eval.speaker.SpeakerEmbedding`) is learned on train-split audio only.
Each held-out voice is enrolled from its held-out utterances that are not prompts, and a clip is
named as the enrolled voice (of its group) nearest in cosine. There are two such judges, one per
domain, because the codec colours every voice (on the demo, a judge of real audio named the voice of
codec-resynthesized true continuations a quarter of the time): the real-audio judge is calibrated on
real audio (the prompt utterance's own next seconds must be named as its voice, another voice's next
seconds must not), and the codec judge, learned and enrolled on the codec's rendering of the same
utterances, judges what the cascade makes, with the codec's rendering of the true continuation as its
ceiling.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from audiolm.eval.speaker import SpeakerEmbedding, swapped, voice_scores

# the judge of each domain, and how its true and swapped continuations are named
SUFFIX = {"real audio": "", "codec": ", through the codec"}
# condition -> (the judge that names it, what it is), in the order the report lists them
CONDITIONS = {
    "true continuation": ("real audio", "the prompt utterance's own next seconds: the judge's calibration, >= 90%"),
    "swapped": ("real audio", "another voice's true continuation, claimed for this prompt: the judge's "
                              "calibration, <= chance"),
    "true continuation, through the codec": ("codec", "the real next seconds encoded and decoded by the codec: "
                                                      "the most the cascade could keep"),
    "swapped, through the codec": ("codec", "another voice's, through the codec: <= chance"),
    "continuation": ("codec", "generated, with the acoustic prompt"),
    "semantic-only": ("codec", "generated from the semantic ids only (no acoustic prompt)"),
}


@dataclass
class Judge:
    embedding: SpeakerEmbedding
    enrolled: dict[str, np.ndarray]  # voice -> embeddings of its enrolment utterances


def enrolment_rows(speakers: list[str], picks: list[int], voices: set[str]) -> dict[str, list[int]]:
    """voice -> its held-out rows that are not prompts."""
    prompts = set(picks)
    rows: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(speakers):
        if s in voices and i not in prompts:
            rows[s].append(i)
    missing = sorted(voices - set(rows))
    if missing:
        raise ValueError(f"held-out voices {', '.join(missing)} have no utterance left to enrol them (every one is a "
                         "prompt); lower continuation.prompts")
    return dict(sorted(rows.items()))


def build_judge(train_wavs: list[np.ndarray], train_speakers: list[str], enrol: dict[str, list[np.ndarray]],
                rate: int) -> Judge:
    """An embedding learned on `train_wavs` and the held-out voices enrolled from `enrol`."""
    embedding = SpeakerEmbedding.fit(train_wavs, train_speakers, rate)
    return Judge(embedding, {v: embedding.embed(wavs, rate) for v, wavs in enrol.items()})


def judge_voices(judges: dict[str, Judge], groups: dict[str, list[str]], voices: list[str], rate: int,
                 clips: dict[str, dict[str, list[np.ndarray]]]) -> dict[str, dict]:
    """`voices[i]`: the voice of prompt i; `clips[domain]`: "prompt" and the conditions that domain's
    judge names (CONDITIONS) -> one wav per prompt (the swapped ones are made here, from the true
    continuations). Per voice group with two voices or more: its voices, prompts, chance, and per
    condition the identification accuracy and the cosine with the prompt (of the same domain)."""
    embedded = {domain: {name: judges[domain].embedding.embed(wavs, rate) for name, wavs in named.items()}
                for domain, named in clips.items()}
    out = {}
    for group, members in groups.items():
        rows = [i for i, v in enumerate(voices) if v in members]
        if len({voices[i] for i in rows}) < 2:
            continue  # identification needs at least two candidates
        group_voices = [voices[i] for i in rows]
        other = [rows[j] for j in swapped(group_voices)]
        scores = {}
        for domain, e in embedded.items():
            judge = judges[domain]
            conditions = {name: e[name][rows] for name, (d, _) in CONDITIONS.items() if d == domain and name in e}
            conditions["swapped" + SUFFIX[domain]] = e["true continuation" + SUFFIX[domain]][other]
            candidates = {v: judge.enrolled[v] for v in members if v in judge.enrolled}
            scores.update(voice_scores(judge.embedding, candidates, group_voices, e["prompt"][rows], conditions))
        out[group] = {"voices": len(set(group_voices)), "candidates": len(candidates), "prompts": len(rows),
                      "chance": 1 / len(candidates), "scores": {name: scores[name] for name in CONDITIONS if name in scores}}
    return out
