"""Stage 4: continue held-out prompts with the trained cascade, judge the voices, write a report.

For each chosen held-out utterance (spread over the voices), its first `prompt_seconds` are
continued by `seconds`, once with the acoustic prompt and once with semantic ids only (AudioLM's
two conditions). Writes `runs/<name>/continuations/<id>.prompt.wav`, `<id>.continuation.wav`,
`<id>.full.wav` and `<id>.semantic-only.wav`, `results.json`, and `runs/<name>/report.md`.
Batches are written as they finish, so a killed run resumes at the first unfinished batch.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.config import PipelineConfig, config_hash
from audiolm.continuation import PARTS, AudioLM
from audiolm.data.corpus import read_wavs
from audiolm.eval.speaker import SpeakerClassifier
from audiolm.files import atomic_write_text
from audiolm.pipeline import codec_eval, corpus_stage, lm_stage, report, rundir

KINDS = ("prompt", "continuation", "full", "semantic-only")


def choose_prompts(heldout: datasets.Dataset, count: int, min_seconds: float) -> list[int]:
    """Up to `count` utterances at least `min_seconds` long, taken from each voice in turn (the
    caller asks for a second more than the prompt, so that a prompt ends inside speech, not in the
    silence after it, which the LMs rightly continue with silence)."""
    by_voice: dict[str, list[int]] = defaultdict(list)
    for i, (speaker, duration) in enumerate(zip(heldout["speaker"], heldout["duration"], strict=True)):
        if duration >= min_seconds:
            by_voice[speaker].append(i)
    if not by_voice:
        raise ValueError(f"no held-out utterance is {min_seconds:g} s long; lower continuation.prompt_seconds")
    picks: list[int] = []
    queues = [by_voice[v] for v in sorted(by_voice)]
    while len(picks) < (count or sum(map(len, queues))) and any(queues):
        for q in queues:
            if q and len(picks) < (count or len(picks) + 1):
                picks.append(q.pop(0))
    return sorted(picks)


def continuation_hash(cfg: PipelineConfig) -> str:
    parts = [(rundir.read_marker(cfg.run_dir / folder) or {}).get("config_hash") for folder in PARTS]
    return config_hash("continuations", cfg.continuation, parts, corpus_stage.corpus_hash(cfg))


def _generate(cfg: PipelineConfig, model: AudioLM, heldout: datasets.Dataset, corpus_rate: int, picks: list[int],
              out: Path) -> float:
    """Writes the wavs of every unfinished batch; returns the seconds spent generating."""
    c = cfg.continuation
    sampling = {"semantic": c.semantic, "coarse": c.coarse, "fine": c.fine}
    ids = heldout["id"]
    spent = 0.0
    batches = [picks[i : i + c.batch_size] for i in range(0, len(picks), c.batch_size)]
    for number, batch in enumerate(tqdm(batches, desc="stage 4: continuing", unit="batch")):
        if all((out / f"{ids[i]}.{kind}.wav").exists() for i in batch for kind in KINDS):
            continue
        wavs = [w[: int(c.prompt_seconds * corpus_rate)] for w in read_wavs(heldout, batch, corpus_rate, corpus_rate)]
        start = time.monotonic()
        prompted = model.continue_batch(wavs, corpus_rate, c.seconds, c.seed + number, sampling)
        semantic_only = model.continue_batch(wavs, corpus_rate, c.seconds, c.seed + number, sampling, acoustic_prompt=False)
        spent += time.monotonic() - start
        for i, a, b in zip(batch, prompted, semantic_only, strict=True):
            for kind, wav in zip(KINDS, (a.prompt, a.continuation, a.full, b.continuation), strict=True):
                audio.save(out / f"{ids[i]}.{kind}.wav", wav, a.sample_rate)
    return spent


def fit_speaker_classifier(cfg: PipelineConfig, model: AudioLM, utterances: int = 320) -> SpeakerClassifier:
    """Trained on train-split audio as the codec renders it (decoded from the stored acoustic codes):
    the codec colours the spectrum, and the question is whether the LMs keep the voice, not whether
    the codec does (a classifier trained on the original audio judged the demo codec's own
    resynthesis right only half of the time)."""
    tokens = lm_stage.read_tokens(cfg)[0]["train"]
    rows = tokens.select(rundir.spread_indices(tokens.num_rows, utterances)).select_columns(["speaker", "acoustic_codes"])
    wavs = [model.decode(np.asarray(codes)) for codes in tqdm(rows["acoustic_codes"], desc="speaker classifier", leave=False)]
    return SpeakerClassifier.fit(wavs, rows["speaker"], model.codec.sample_rate)


def evaluate(cfg: PipelineConfig, model: AudioLM, heldout: datasets.Dataset, picks: list[int], out: Path) -> dict:
    classifier = fit_speaker_classifier(cfg, model)
    ids, speakers = heldout["id"], heldout["speaker"]
    truth = [speakers[i] for i in picks]
    loaded = {kind: [audio.load(out / f"{ids[i]}.{kind}.wav") for i in picks] for kind in KINDS}
    rate = loaded["prompt"][0][1]
    wavs = {kind: [w for w, _ in pairs] for kind, pairs in loaded.items()}
    wavs["resynthesized prompt"] = [model.decode(model.encode(w)) for w in wavs["prompt"]]
    seconds = [len(w) / rate for w in wavs["continuation"]]
    rms = [float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) for w in wavs["continuation"]]
    return {
        "prompts": len(picks), "voices": len(set(truth)), "chance": 1 / len(classifier.labels),
        "speaker_accuracy": {kind: classifier.accuracy(wavs[kind], truth, rate)
                             for kind in ("resynthesized prompt", "continuation", "semantic-only")},
        "continuation_seconds": {"min": min(seconds), "max": max(seconds), "asked": cfg.continuation.seconds},
        "continuation_rms": {"min": min(rms), "median": float(np.median(rms))},
        "examples": [ids[i] for i in picks],
    }


def codec_figures(cfg: PipelineConfig, model: AudioLM, heldout: datasets.Dataset, corpus_rate: int,
                  clips_per_group: int = 4) -> dict:
    """The codec on held-out sentences of the voices it trained on and, apart, of the voices it never
    heard (`codec.exclude_speakers`): codec-eval's row with all codebooks (a few clips: Harvest, the
    pitch tracker, runs at ~4x real time; `audiolm codec-eval` gives the full table), and
    spectrograms of two unseen-voice clips for the report."""
    unseen = set(cfg.codec.exclude_speakers)
    speakers = heldout["speaker"]
    groups = {"seen voices": [i for i, s in enumerate(speakers) if s not in unseen],
              "unseen voices": [i for i, s in enumerate(speakers) if s in unseen]}
    codebooks = [model.codec.num_codebooks]
    rows, plots = {}, []
    for name, indices in groups.items():
        if not indices:
            continue
        indices = indices[:: max(1, len(indices) // clips_per_group)][:clips_per_group]
        clips = read_wavs(heldout, indices, corpus_rate, codec_eval.EVAL_RATE)
        rows[name] = [dataclasses.asdict(r) for r in codec_eval.codec_rows(model.codec, clips, codebooks, f", {name}")]
        if name == "unseen voices" or not unseen:
            stem = "codec-unseen" if unseen else "codec"
            paths = codec_eval.plot_resyntheses(model.codec, clips[:2], cfg.run_dir / "report", stem)
            plots = [str(p.relative_to(cfg.run_dir)) for p in paths]
    return {"rows": rows, "plots": plots, "unseen_speakers": sorted(unseen)}


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    out = cfg.run_dir / "continuations"
    digest = continuation_hash(cfg)
    marker = rundir.read_marker(out)
    if not force and marker and marker.get("config_hash") == digest and marker.get("complete"):
        print(f"stage 4 (continuation): {out} is up to date; report: {cfg.run_dir / 'report.md'}")
        return out
    model = AudioLM.from_pretrained(cfg.run_dir)
    corpus = corpus_stage.load(cfg)
    corpus_rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    heldout = corpus["heldout"]
    picks = choose_prompts(heldout, cfg.continuation.prompts, cfg.continuation.prompt_seconds + 1.0)
    if force:
        shutil.rmtree(out, ignore_errors=True)
    rundir.prepare_partial(out, digest, "continuations")
    spent = _generate(cfg, model, heldout, corpus_rate, picks, out)
    results = evaluate(cfg, model, heldout, picks, out)
    results["codec"] = codec_figures(cfg, model, heldout, corpus_rate)
    if spent:  # both conditions were generated: 2 x prompts x seconds of audio
        results["generation_real_time_factor"] = 2 * len(picks) * cfg.continuation.seconds / spent
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    report.write(cfg, results)
    rundir.write_marker(out, digest, stage="continuations", complete=True)
    acc = results["speaker_accuracy"]
    print(f"stage 4 (continuation): speaker accuracy {acc['continuation']:.1%} with the acoustic prompt, "
          f"{acc['semantic-only']:.1%} with semantic ids only (chance {results['chance']:.1%}; "
          f"the prompts resynthesized by the codec {acc['resynthesized prompt']:.1%})")
    print(f"stage 4 (continuation): wavs in {out}/, report in {cfg.run_dir / 'report.md'}")
    return out
