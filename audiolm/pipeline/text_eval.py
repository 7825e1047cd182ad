"""Stage 4 with the text LMs: transcription, reading and voice conversion on held-out sentences,
voices the models trained on and voices no model heard apart.

- transcription: the held-out utterances' semantic ids -> text: WER and CER;
- reading: each held-out sentence read in the voice of a held-out prompt (stage 4's continuation
  prompts, which the speaker judge never enrols): the phone error rate of its semantic ids against
  eSpeak NG's phones of the sentence, the WER of its audio as our recognizer hears it (the round trip),
  and whether the codec judge names the prompt's voice;
- conversion: a prompt utterance's words in the voice of another prompt of its group: the target's
  voice named (should be high), the source's (should fall to chance), and the WER of the converted
  audio next to that of the source audio itself.

Writes `<id>.read.wav` and `<id>.converted.wav` into the folder it is given (stage 4: `text-eval/`).
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.continuation import AudioLM
from audiolm.data.corpus import read_wavs
from audiolm.pipeline.speaker_eval import Judge
from audiolm.pipeline.text_metrics import (
    char_error_rate,
    error_rate,
    text_phones,
    token_unit_phones,
    units_as_phones,
    word_error_rate,
)
from audiolm.speech_text import MIN_VOICE_SECONDS, sentences_of
from audiolm.text import phonemize

BATCH = 8  # renderings generated together


def _batched(items: list, size: int = BATCH) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _identified(judge: Judge, members: list[str], wavs: list[np.ndarray], rate: int) -> list[str]:
    return judge.embedding.identify({v: judge.enrolled[v] for v in members if v in judge.enrolled},
                                    judge.embedding.embed(wavs, rate))


def evaluate(model: AudioLM, tokens, corpus_heldout, groups: dict[str, list[str]], picks: list[int], judge: Judge,
             corpus_rate: int, prompt_seconds: float, out, seed: int = 0, per_group: int = 8) -> dict:
    """`tokens`: the token dataset (train and held-out splits, with text; its held-out rows are the
    corpus' `corpus_heldout`, whose audio the prompts and sources come from); `picks`: the held-out
    prompt rows; `judge`: the codec-domain speaker judge; `per_group` readings and conversions per
    voice group."""
    train, heldout = tokens["train"], tokens["heldout"]
    rate = model.codec.sample_rate
    phones_of_unit = token_unit_phones(train, corpus_rate, model.tokenizer.frame_rate, model.tokenizer.num_clusters)
    sentences = sorted({s for t in heldout["text"] for s in sentences_of(t or "")})
    speakers, texts, ids = heldout["speaker"], heldout["text"], heldout["id"]
    results: dict = {"groups": {}}
    for group, members in groups.items():
        rows = [i for i, s in enumerate(speakers) if s in members]
        figures: dict = {}
        # transcription of the true semantic ids of every held-out utterance of the group
        hyp = model.transcribe_ids([np.asarray(heldout[i]["semantic"]) for i in rows])
        ref = [texts[i] for i in rows]
        figures["transcription"] = {"utterances": len(rows), "wer": word_error_rate(hyp, ref), "cer": char_error_rate(hyp, ref),
                                    "examples": [{"id": ids[i], "text": r, "transcription": h} for i, r, h in
                                                 list(zip(rows, ref, hyp, strict=True))[:3]]}
        prompts = [i for i in picks if speakers[i] in members][:per_group]
        if len({speakers[i] for i in prompts}) < 2:
            results["groups"][group] = figures
            continue
        sources = read_wavs(corpus_heldout, prompts, corpus_rate, corpus_rate)
        voice_wavs = [w[: int(max(prompt_seconds, MIN_VOICE_SECONDS) * corpus_rate)] for w in sources]
        figures["reading"] = _reading(model, judge, members, prompts, voice_wavs, speakers, sentences, phones_of_unit,
                                      corpus_rate, rate, ids, out, seed)
        figures["conversion"] = _conversion(model, judge, members, prompts, sources, voice_wavs, heldout, corpus_rate, rate,
                                            out, seed)
        results["groups"][group] = figures
    return results


def _reading(model, judge, members, prompts, voice_wavs, speakers, sentences, phones_of_unit, corpus_rate, rate, ids,
             out, seed) -> dict:
    texts = [sentences[(k * 5 + 3) % len(sentences)] for k in range(len(prompts))]  # a sentence for each prompt
    wavs, units = [], []
    for n, batch in enumerate(tqdm(_batched(list(range(len(prompts)))), desc="stage 4: reading", leave=False)):
        semantic = model.read([texts[k] for k in batch], seed=seed + n)
        units += [np.asarray(s) for s in semantic]
        wavs += model.render(semantic, [voice_wavs[k] for k in batch], corpus_rate, seed=seed + n)
    for k, w in enumerate(wavs):
        audio.save(out / f"{ids[prompts[k]]}.read.wav", w, rate)
    heard = model.transcribe(wavs, rate)
    named = _identified(judge, members, wavs, rate)
    figures = {"readings": len(wavs), "round_trip_wer": word_error_rate(heard, texts),
               "speaker_accuracy": float(np.mean([v == speakers[i] for v, i in zip(named, prompts, strict=True)])),
               "chance": 1 / len([v for v in members if v in judge.enrolled]),
               "examples": [{"text": t, "heard": h} for t, h in list(zip(texts, heard, strict=True))[:3]]}
    if phones_of_unit is not None:
        figures["phone_error_rate"] = error_rate([units_as_phones(u, phones_of_unit) for u in units],
                                                 [text_phones(phonemize(t, model.text.config.language)) for t in texts])
    return figures


def _conversion(model, judge, members, prompts, sources, voice_wavs, heldout, corpus_rate, rate, out, seed) -> dict:
    """Prompt k's whole utterance in the voice of the next prompt of another voice."""
    speakers = heldout["speaker"]
    targets = [next(j for j in [*range(k + 1, len(prompts)), *range(k)] if speakers[prompts[j]] != speakers[prompts[k]])
               for k in range(len(prompts))]
    converted = []
    for n, batch in enumerate(tqdm(_batched(list(range(len(prompts)))), desc="stage 4: converting", leave=False)):
        semantic = model.tokenizer.encode([audio.resample(sources[k], corpus_rate, model.tokenizer.sample_rate) for k in batch])
        converted += model.render(semantic, [voice_wavs[targets[k]] for k in batch], corpus_rate, seed=seed + n)
    for k, w in enumerate(converted):
        audio.save(out / f"{heldout[prompts[k]]['id']}.converted.wav", w, rate)
    named = _identified(judge, members, converted, rate)
    texts = [heldout[i]["text"] for i in prompts]
    return {"conversions": len(converted), "chance": 1 / len([v for v in members if v in judge.enrolled]),
            "target_voice_accuracy": float(np.mean([v == speakers[prompts[t]] for v, t in zip(named, targets, strict=True)])),
            "source_voice_accuracy": float(np.mean([v == speakers[i] for v, i in zip(named, prompts, strict=True)])),
            "wer": word_error_rate(model.transcribe(converted, rate), texts),
            "source_wer": word_error_rate(model.transcribe(sources, corpus_rate), texts)}
