"""Stage 4: continue held-out prompts with the trained cascade, judge the voices, write a report.

For each chosen held-out utterance (spread over the voices), its first `prompt_seconds` are
continued by `seconds`, once with the acoustic prompt and once with semantic ids only (AudioLM's
two conditions). Writes `runs/<name>/continuations/<id>.prompt.wav`, `<id>.continuation.wav`,
`<id>.full.wav` and `<id>.semantic-only.wav`, `results.json`, and `runs/<name>/report.md` (and .html).
Batches are written as they finish, so a killed run resumes at the first unfinished batch.
A run with the text LMs also gets stage 4's text figures (`audiolm.pipeline.text_eval`) in
`runs/<name>/text-eval/`, with their own up-to-date marker.
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
from audiolm.config import PipelineConfig, config_hash, to_dict
from audiolm.continuation import PARTS, TEXT_PARTS, AudioLM
from audiolm.data.corpus import read_wavs, voice_groups
from audiolm.files import atomic_write_text
from audiolm.pipeline import codec_eval, corpus_stage, lm_stage, report, rundir, scoreboard, speaker_eval, text_eval

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
    settings = {k: v for k, v in to_dict(cfg.continuation).items() if k != "device"}
    return config_hash("continuations", settings, parts, corpus_stage.corpus_hash(cfg))


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


def judges(cfg: PipelineConfig, model: AudioLM, corpus: datasets.DatasetDict, corpus_rate: int, picks: list[int],
           voices: set[str]) -> dict[str, speaker_eval.Judge]:
    """The real-audio and codec judges: learned on the train split (its audio, and the codec's
    rendering of its stored codes), the held-out voices enrolled from their utterances that are not
    prompts (likewise)."""
    tokens = lm_stage.read_tokens(cfg)[0]
    rate = model.codec.sample_rate
    train, heldout = corpus["train"], corpus["heldout"]
    if tokens["train"]["id"] != train["id"] or tokens["heldout"]["id"] != heldout["id"]:
        raise ValueError(f"{lm_stage.tokens_dir(cfg)} does not match the corpus row for row; rerun stages 1-2")
    train_rows = rundir.spread_indices(train.num_rows, cfg.continuation.judge_utterances)
    enrol = speaker_eval.enrolment_rows(heldout["speaker"], picks, voices)
    enrol_rows = [i for rows in enrol.values() for i in rows]
    speakers = train.select(train_rows)["speaker"]

    def decoded(ds: datasets.Dataset, rows: list[int]) -> list[np.ndarray]:
        codes = ds.select(rows)["acoustic_codes"]
        return [model.decode(np.asarray(c)) for c in tqdm(codes, desc="speaker judge: codec renderings", leave=False)]

    def by_voice(wavs: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
        at = dict(zip(enrol_rows, wavs, strict=True))
        return {v: [at[i] for i in rows] for v, rows in enrol.items()}

    return {"real audio": speaker_eval.build_judge(read_wavs(train, train_rows, corpus_rate, rate), speakers,
                                                   by_voice(read_wavs(heldout, enrol_rows, corpus_rate, rate)), rate),
            "codec": speaker_eval.build_judge(decoded(tokens["train"], train_rows), speakers,
                                              by_voice(decoded(tokens["heldout"], enrol_rows)), rate)}


def evaluate(cfg: PipelineConfig, model: AudioLM, corpus: datasets.DatasetDict, corpus_rate: int, picks: list[int],
             out: Path, judge_set: dict[str, speaker_eval.Judge]) -> dict:
    """Lengths and levels of the continuations, and the voice judges' figures per voice group."""
    heldout = corpus["heldout"]
    ids, speakers = heldout["id"], heldout["speaker"]
    loaded = {kind: [audio.load(out / f"{ids[i]}.{kind}.wav")[0] for i in picks] for kind in KINDS}
    rate = model.codec.sample_rate
    real = read_wavs(heldout, picks, corpus_rate, rate)
    spans = [(len(p), len(p) + len(c)) for p, c in zip(loaded["prompt"], loaded["continuation"], strict=True)]
    through = [model.decode(model.encode(w[:b])) for w, (_, b) in zip(real, spans, strict=True)]
    clips = {"real audio": {"prompt": loaded["prompt"],
                            "true continuation": [w[a:b] for w, (a, b) in zip(real, spans, strict=True)]},
             "codec": {"prompt": [w[:a] for w, (a, _) in zip(through, spans, strict=True)],
                       "true continuation, through the codec": [w[a:b] for w, (a, b) in zip(through, spans, strict=True)],
                       "continuation": loaded["continuation"], "semantic-only": loaded["semantic-only"]}}
    voices, groups = [speakers[i] for i in picks], voice_groups(corpus)
    judged = speaker_eval.judge_voices(judge_set, groups, voices, rate, clips)
    seconds = [len(w) / rate for w in loaded["continuation"]]
    rms = [float(np.sqrt(np.mean(w.astype(np.float64) ** 2))) for w in loaded["continuation"]]
    return {
        "prompts": len(picks), "voices": len(set(voices)), "speaker": judged,
        "continuation_seconds": {"min": min(seconds), "max": max(seconds), "asked": cfg.continuation.seconds},
        "continuation_rms": {"min": min(rms), "median": float(np.median(rms))},
        "examples": [ids[i] for i in picks],
        # which prompts are of voices the models trained on and which of voices they never heard (the web page's examples)
        "example_groups": {group: [ids[i] for i, v in zip(picks, voices, strict=True) if v in members]
                           for group, members in groups.items()},
    }


def codec_figures(cfg: PipelineConfig, model: AudioLM, corpus: datasets.DatasetDict, corpus_rate: int,
                  clips_per_group: int = 4) -> dict:
    """The codec on held-out sentences of the voices it trained on and, apart, of the voices it never
    heard (in no training split, or in `codec.exclude_speakers`): codec-eval's row with all codebooks (a few clips: Harvest, the
    pitch tracker, runs at ~4x real time; `audiolm codec-eval` gives the full table), and
    spectrograms of two unseen-voice clips for the report."""
    heldout = corpus["heldout"]
    voices = voice_groups(corpus, cfg.codec.exclude_speakers)
    unseen = set(voices.get("unseen voices", []))
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


def print_text_figures(text: dict) -> None:
    for group, f in text["groups"].items():
        line = f"stage 4 (text), {group}: transcription WER {f['transcription']['wer']:.1%}, CER {f['transcription']['cer']:.1%}"
        if "reading" in f:
            r, c = f["reading"], f["conversion"]
            line += (f"; reading: round-trip WER {r['round_trip_wer']:.1%}, PER {r.get('phone_error_rate', float('nan')):.1%}, "
                     f"prompt's voice {r['speaker_accuracy']:.1%}; conversion: target voice {c['target_voice_accuracy']:.1%}, "
                     f"source voice {c['source_voice_accuracy']:.1%} (chance {c['chance']:.1%}), WER {c['wer']:.1%} "
                     f"(source audio {c['source_wer']:.1%})")
        print(line)


def text_hash(cfg: PipelineConfig) -> str:
    """Stage 4's text figures depend on every part and on the continuation settings (prompts, seed):
    the continuations' hash (which has the cascade's parts) and the text parts'."""
    parts = [(rundir.read_marker(cfg.run_dir / folder) or {}).get("config_hash") for folder in TEXT_PARTS]
    return config_hash("text-eval", continuation_hash(cfg), parts)


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    out, text_out = cfg.run_dir / "continuations", cfg.run_dir / "text-eval"
    digest = continuation_hash(cfg)
    marker = rundir.read_marker(out)
    done = not force and marker and marker.get("config_hash") == digest and marker.get("complete")
    # the text figures (a run with the text LMs) have their own marker: adding the text LMs to a finished
    # run redoes only them
    with_text = all((cfg.run_dir / folder).is_dir() for folder in TEXT_PARTS)
    text_marker = rundir.read_marker(text_out) if with_text else None
    text_done = not with_text or (not force and text_marker and text_marker.get("config_hash") == text_hash(cfg))
    board_done = not force and scoreboard.is_done(cfg)
    if done and text_done and board_done:
        if not (cfg.run_dir / "report.html").exists():  # a run from before the HTML report: written from its results
            results = json.loads((out / "results.json").read_text())
            if with_text:
                results["text"] = json.loads((text_out / "results.json").read_text())
            results["scoreboard"] = json.loads((cfg.run_dir / "scoreboard" / "results.json").read_text())
            report.write(cfg, results)
        print(f"stage 4 (continuation): {out} is up to date; report: {cfg.run_dir / 'report.md'} (and .html)")
        return out
    model = AudioLM.from_pretrained(cfg.run_dir, device=cfg.continuation.device)
    corpus = corpus_stage.load(cfg)
    corpus_rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    heldout = corpus["heldout"]
    c = cfg.continuation
    # long enough for the true next seconds (the judge's calibration), and to end a prompt inside speech
    picks = choose_prompts(heldout, c.prompts, c.prompt_seconds + max(1.0, c.seconds))
    judge_set = judges(cfg, model, corpus, corpus_rate, picks, {heldout["speaker"][i] for i in picks})
    if done:
        results = json.loads((out / "results.json").read_text())
    else:
        if force:
            shutil.rmtree(out, ignore_errors=True)
        rundir.prepare_partial(out, digest, "continuations")
        spent = _generate(cfg, model, heldout, corpus_rate, picks, out)
        results = evaluate(cfg, model, corpus, corpus_rate, picks, out, judge_set)
        results["codec"] = codec_figures(cfg, model, corpus, corpus_rate)
        if spent:  # both conditions were generated: 2 x prompts x seconds of audio
            results["generation_real_time_factor"] = 2 * len(picks) * cfg.continuation.seconds / spent
        atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
        rundir.write_marker(out, digest, stage="continuations", complete=True)
        print_voice_figures(results)
    if with_text:
        if text_done:
            text = json.loads((text_out / "results.json").read_text())
        else:
            text_out.mkdir(parents=True, exist_ok=True)
            text = text_eval.evaluate(model, lm_stage.read_tokens(cfg)[0], heldout, voice_groups(corpus), picks,
                                      judge_set["codec"], corpus_rate, c.prompt_seconds, text_out, c.seed)
            atomic_write_text(text_out / "results.json", json.dumps(text, indent=2) + "\n")
            rundir.write_marker(text_out, text_hash(cfg), stage="text-eval")
        print_text_figures(text)
        results = {**results, "text": text}
    if board_done:
        board = json.loads((cfg.run_dir / "scoreboard" / "results.json").read_text())
    else:
        board = scoreboard.evaluate(cfg, lm_stage.read_tokens(cfg)[0], corpus, corpus_rate)
    scoreboard.print_figures(board)
    results["scoreboard"] = board
    report.write(cfg, results)
    print(f"stage 4 (continuation): wavs in {out}/, report in {cfg.run_dir / 'report.md'} and report.html")
    return out


def print_voice_figures(results: dict) -> None:
    for group, r in results["speaker"].items():
        acc = {name: v["accuracy"] for name, v in r["scores"].items()}
        print(f"stage 4 (continuation), {group} ({r['voices']}): the prompt's voice named for {acc['continuation']:.1%} "
              f"of continuations with the acoustic prompt, {acc['semantic-only']:.1%} with semantic ids only (chance "
              f"{r['chance']:.1%}; calibration: true continuations {acc['true continuation']:.1%}, swapped "
              f"{acc['swapped']:.1%}; through the codec {acc['true continuation, through the codec']:.1%} and "
              f"{acc['swapped, through the codec']:.1%})")
