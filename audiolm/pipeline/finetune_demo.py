"""`make finetune-demo`: the demo model adapted to a voice it never trained on (docs/finetune.md).

The new voice is one of the demo's unseen voices (u00 by default: the Klatt family, which no model
trained on), reading training sentences of the demo corpus, synthesized here with eSpeak NG: 2 or 5
minutes of them to adapt on, 8 more as the fine-tune's held-out split. Its own held-out sentences
(the demo corpus' held-out split) are kept apart: they are the prompts and enrolment of the
evaluation, which stage 4's speaker judge scores for the parent and for each adapted model:

- voice kept for the new voice's prompts (its held-out utterances, a few seeds each), among the
  unseen voices (chance 1 in 12 on the demo);
- the same for the other voices, per group, after adapting (what the model already did);
- the codec's mel distance and PESQ on the new voice's held-out utterances, before and after;
- each LM's held-out perplexity on the new voice and on the demo's held-out data, before and after.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import time
from pathlib import Path

from audiolm import audio
from audiolm.config import PipelineConfig
from audiolm.continuation import AudioLM
from audiolm.data.corpus import read_wavs, voice_groups
from audiolm.data.demo import demo_voices, sentences
from audiolm.data.espeak import synthesize
from audiolm.eval.speaker import voice_scores
from audiolm.files import atomic_write_text
from audiolm.pipeline import codec_eval, continue_stage, corpus_stage, finetune, rundir
from audiolm.pipeline.adapt import parent_run


def write_manifest(manifest: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """A stage-0 manifest of (path, text, speaker, split) rows, written whole or not at all."""
    text = io.StringIO()
    csv.writer(text).writerows([("path", "text", "speaker", "split"), *rows])
    atomic_write_text(manifest, text.getvalue())


def voice_data(parent: PipelineConfig, folder: Path, voice: str, minutes: float, heldout: int = 8) -> Path:
    """`folder/manifest.csv`: `voice` reading the parent corpus' training sentences in order, `minutes`
    of them for training and the next `heldout` as the fine-tune's held-out split (made once)."""
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    d = parent.data.demo
    _, unseen = demo_voices(d)
    if voice not in unseen:
        raise ValueError(f"{voice}: not one of the demo's unseen voices ({', '.join(unseen)})")
    texts = sentences(d.sentences, d.seed)[d.heldout_sentences :]
    folder.mkdir(parents=True, exist_ok=True)
    rows, seconds = [], 0.0
    for i, s in enumerate(synthesize([(t, unseen[voice]) for t in texts])):
        split = "train" if seconds < 60 * minutes else "heldout"
        if split == "heldout" and sum(r[3] == "heldout" for r in rows) == heldout:
            break
        path = folder / f"{voice}_{i:04d}.wav"
        audio.save(path, s.wav, s.sample_rate)
        rows.append((path.name, texts[i], voice, split))
        seconds += len(s.wav) / s.sample_rate if split == "train" else 0.0
    write_manifest(manifest, rows)
    print(f"finetune-demo: {seconds / 60:.1f} min of {voice} ({sum(r[3] == 'train' for r in rows)} sentences) + "
          f"{heldout} held-out -> {manifest}")
    return manifest


def language_data(parent: PipelineConfig, folder: Path, language: str, minutes: float, voices: int = 8,
                  heldout: int = 24, seed: int = 0) -> Path:
    """`folder/manifest.csv`: `minutes` of eSpeak NG's `language` read by `voices` of the demo's training
    voices (their variants, pitches and speeds, the language swapped in), sentences of its frequent
    words (wordfreq's list, Zipf-weighted: the language's sounds and word shapes, not its grammar), and
    `heldout` more sentences by the same voices as the held-out split (made once)."""
    import random

    import wordfreq

    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest
    bank = list(demo_voices(parent.data.demo)[0].values())[:voices]
    readers = [dataclasses.replace(v, name=f"{language}+{v.name.split('+')[1]}") for v in bank]
    words = [w for w in wordfreq.top_n_list(language, 3000) if w.isalpha()][:2000]
    rng = random.Random(seed)
    weights = [1 / (rank + 10) for rank in range(len(words))]

    def sentence() -> str:
        text = " ".join(rng.choices(words, weights, k=rng.randint(5, 10)))
        return text[0].upper() + text[1:] + "."

    folder.mkdir(parents=True, exist_ok=True)
    rows, seconds, count, kept_out = [], 0.0, 0, 0
    while kept_out < heldout:
        batch = [(sentence(), readers[(count + j) % voices]) for j in range(32)]
        for (text, _), s in zip(batch, synthesize(batch), strict=True):
            split = "train" if seconds < 60 * minutes else "heldout"
            if kept_out == heldout:
                break
            kept_out += split == "heldout"
            path = folder / f"{language}_{count:05d}.wav"
            audio.save(path, s.wav, s.sample_rate)
            rows.append((path.name, text, f"{language}{count % voices}", split))
            seconds += len(s.wav) / s.sample_rate if split == "train" else 0.0
            count += 1
    write_manifest(manifest, rows)
    print(f"finetune-demo: {seconds / 60:.1f} min of '{language}' by {voices} voices -> {manifest}")
    return manifest


def language_case(parent_dir: str, out: Path, language: str, minutes: float, steps: int, train_minutes: float) -> dict:
    """The semantic and coarse LMs adapted to `language`, against the same LMs trained from scratch on
    the same data for the same time (the demo's shapes and learning rates), both over the demo's own
    tokenizer and codec: held-out perplexity on the language, and, for the adapted, on the demo's data."""
    data = str(language_data(parent_run(Path(parent_dir)), out / f"data-{language}", language, minutes))
    adapted = finetune.finetune_config(parent_dir, data, out / f"{language}-finetune", ["semantic", "coarse"], 0, steps,
                                       train_minutes)
    results = {"finetune": finetune.run(adapted)}
    parent = parent_run(Path(parent_dir))
    scratch = [f"lm.{t}.{k}={v}" for t in ("semantic", "coarse") for k, v in (
        ("init_from", ""), ("train.learning_rate", getattr(parent.lm, t).train.learning_rate),
        ("train.warmup_steps", max(1, steps // 10)))]
    fresh = finetune.finetune_config(parent_dir, data, out / f"{language}-scratch", ["semantic", "coarse"], 0, steps,
                                     train_minutes, overrides=scratch)
    results["scratch"] = finetune.run(fresh)
    return results


def voice_figures(parent: PipelineConfig, model: AudioLM, voice: str, seeds: int = 3, voice_prompts: int = 4,
                  judge_utterances: int = 400) -> dict:
    """Stage 4's codec judge on the parent's held-out split: voice kept with the acoustic prompt for
    `voice_prompts` utterances of `voice` (x `seeds`) and, per group, one continuation of each other
    prompt stage 4 would choose."""
    corpus = corpus_stage.load(parent)
    rate = rundir.read_marker(corpus_stage.corpus_dir(parent))["sample_rate"]
    heldout = corpus["heldout"]
    speakers, durations = heldout["speaker"], heldout["duration"]
    c = parent.continuation
    shortest = c.prompt_seconds + max(1.0, c.seconds)
    picks = continue_stage.choose_prompts(heldout, c.prompts, shortest)
    own = [i for i, (s, d) in enumerate(zip(speakers, durations, strict=True)) if s == voice and d >= shortest][:voice_prompts]
    prompts = sorted(set(picks) | set(own))
    cfg = dataclasses.replace(parent, continuation=dataclasses.replace(c, judge_utterances=judge_utterances))
    judge = continue_stage.judges(cfg, model, corpus, rate, prompts, {speakers[i] for i in prompts})["codec"]
    jobs = [(i, 0) for i in picks if speakers[i] != voice] + [(i, s) for i in own for s in range(seeds)]
    wavs = dict(zip(prompts, read_wavs(heldout, prompts, rate, model.codec.sample_rate), strict=True))
    cut = int(c.prompt_seconds * model.codec.sample_rate)
    made = []
    for start in range(0, len(jobs), c.batch_size):
        batch = jobs[start : start + c.batch_size]
        made += model.continue_batch([wavs[i][:cut] for i, _ in batch], model.codec.sample_rate, c.seconds,
                                     [c.seed + 1000 * s + i for i, s in batch])
    embed = judge.embedding.embed
    groups = voice_groups(corpus)
    out = {}
    for name, members in {**groups, f"new voice {voice}": [voice]}.items():
        rows = [j for j, (i, _) in enumerate(jobs) if speakers[i] in members and (speakers[i] != voice or len(members) == 1)]
        if not rows:
            continue
        pool = members if len(members) > 1 else next(m for m in groups.values() if voice in m)
        candidates = {v: judge.enrolled[v] for v in pool if v in judge.enrolled}
        voices = [speakers[jobs[j][0]] for j in rows]
        through = [model.decode(model.encode(wavs[jobs[j][0]][: cut + int(c.seconds * model.codec.sample_rate)])) for j in rows]
        clips = {"continuation": embed([made[j].continuation for j in rows], model.codec.sample_rate),
                 "true continuation, through the codec": embed([w[cut:] for w in through], model.codec.sample_rate)}
        scores = voice_scores(judge.embedding, candidates, voices, embed([w[:cut] for w in through], model.codec.sample_rate),
                              clips)
        out[name] = {"continuations": len(rows), "candidates": len(candidates), "chance": 1 / len(candidates),
                     **{k: v["accuracy"] for k, v in scores.items()}}
    return out


def codec_figures(parent: PipelineConfig, model: AudioLM, voice: str) -> dict:
    """The codec (all codebooks) on `voice`'s held-out utterances: mel distance, PESQ, F0 error."""
    corpus = corpus_stage.load(parent)
    rate = rundir.read_marker(corpus_stage.corpus_dir(parent))["sample_rate"]
    heldout = corpus["heldout"]
    rows = [i for i, s in enumerate(heldout["speaker"]) if s == voice]
    clips = read_wavs(heldout, rows, rate, codec_eval.EVAL_RATE)
    row = codec_eval.codec_rows(model.codec, clips, [model.codec.num_codebooks])[0]
    return {"clips": len(clips), "mel_distance": row.mel, "pesq": row.pesq, "f0_cents": row.f0_cents}


def evaluate(parent: PipelineConfig, folder: Path, voice: str) -> dict:
    model = AudioLM.from_pretrained(folder)
    start = time.monotonic()
    out = {"voice": voice_figures(parent, model, voice), "codec": codec_figures(parent, model, voice)}
    out["eval_seconds"] = round(time.monotonic() - start, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", default="runs/demo", help="the run to adapt (default: %(default)s)")
    parser.add_argument("--voice", default="u00", help="an unseen voice of the parent's demo corpus (default: %(default)s)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0], help="minutes of the voice to adapt on")
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--train-minutes", type=float, default=3.0, help="training budget of each fine-tune, shared by "
                                                                         "its parts (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=0.0, help="learning rate (default: finetune's)")
    parser.add_argument("--out", default="runs/finetune-demo")
    parser.add_argument("--language", default="", help="instead of the voice: adapt to this eSpeak NG language (e.g. "
                                                       "de), against the same LMs trained from scratch")
    args = parser.parse_args(argv)
    parent = parent_run(Path(args.parent))
    if parent is None or not (Path(args.parent) / "lm-fine" / "config.json").exists():
        print(f"finetune-demo: {args.parent} is not a finished run; run `make demo` first")
        return 2
    out = Path(args.out)
    if args.language:
        minutes = args.minutes[0] if args.minutes != [5.0] else 10.0
        language = language_case(args.parent, out, args.language, minutes, args.steps, args.train_minutes)
        atomic_write_text(out / f"{args.language}.json", json.dumps(language, indent=2) + "\n")
        print(language_report(language, args.language))
        return 0
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if "parent" not in results:
        results["parent"] = evaluate(parent, Path(args.parent), args.voice)
        atomic_write_text(results_file, json.dumps(results, indent=2) + "\n")
    for minutes in args.minutes:
        data = voice_data(parent, out / f"data-{minutes:g}min", args.voice, minutes)
        for mode in args.modes:
            name = f"{minutes:g}min-{mode}"
            if name in results:
                continue
            cfg = finetune.finetune_config(args.parent, str(data), out / name, ["codec", "coarse", "fine"],
                                           args.rank if mode == "lora" else 0, args.steps, args.train_minutes, args.lr)
            start = time.monotonic()
            markers = finetune.run(cfg)
            seconds = time.monotonic() - start
            results[name] = {"finetune_seconds": round(seconds, 1), "lms": markers, **evaluate(parent, cfg.run_dir, args.voice)}
            atomic_write_text(results_file, json.dumps(results, indent=2) + "\n")
    text = report(results, args.voice)
    atomic_write_text(out / "report.md", text + "\n")
    print(text)
    return 0


def language_report(results: dict, language: str) -> str:
    lines = [f"| LM | the demo's, on {language} | adapted: {language} | adapted: the demo's data (before -> after) | "
             f"from scratch: {language} (unigram) | steps adapted / from scratch |", "|---|---|---|---|---|---|"]
    for task in ("semantic", "coarse"):
        a, f = results["finetune"][task], results["scratch"][task]
        old = f"{a['before'].get('old', float('nan')):.2f} -> {a['after'].get('old', float('nan')):.2f}"
        lines.append(f"| {task} | {a['before']['new']:.2f} | {a['after']['new']:.2f} | {old} | "
                     f"{f['heldout_perplexity']:.2f} ({f['unigram_perplexity']:.2f}) | {a['steps']} / {f['steps']} |")
    return "\n".join(lines)


def _kept(figures: dict, group: str, key: str = "continuation") -> str:
    return f"{figures[group][key]:.0%} of {figures[group]['continuations']}" if group in figures else "-"


def _ppl(result: dict, task: str) -> str:
    m = result.get("lms", {}).get(task)
    return f"{m['after']['new']:.1f} / {m['after'].get('old', float('nan')):.1f}" if m else "-"


def report(results: dict, voice: str) -> str:
    """The before / after table."""
    new = f"new voice {voice}"
    lines = [f"| model | fine-tune (s) | {voice} kept | its ceiling (codec) | training voices kept | unseen voices kept | "
             f"codec mel ({voice}) | PESQ ({voice}) | coarse ppl new / old | fine ppl new / old |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        v, codec = r["voice"], r["codec"]
        lines.append(f"| {name} | {r.get('finetune_seconds', '-')} | {_kept(v, new)} | "
                     f"{_kept(v, new, 'true continuation, through the codec')} | {_kept(v, 'training voices')} | "
                     f"{_kept(v, 'unseen voices')} | {codec['mel_distance']:.3f} | {codec['pesq'] or float('nan'):.2f} | "
                     f"{_ppl(r, 'coarse')} | {_ppl(r, 'fine')} |")
    first = next((r for r in results.values() if "lms" in r), None)
    if first:  # the parent's perplexities on the new voice and the old data: the adapted runs' "before"
        b = {t: first["lms"][t]["before"] for t in ("coarse", "fine")}
        lines.append(f"\nBefore adapting (the parent): coarse LM perplexity {b['coarse']['new']:.1f} on {voice}, "
                     f"{b['coarse'].get('old', float('nan')):.1f} on the demo's held-out data; fine LM {b['fine']['new']:.1f} / "
                     f"{b['fine'].get('old', float('nan')):.1f}.")
    return "\n".join(lines)
