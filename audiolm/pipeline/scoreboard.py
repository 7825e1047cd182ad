"""Stage 4's scoreboard: the field's tests of spoken LMs and speech units on the demo's own material.

- Lexical, syntactic and topic-StoryCloze sets (audiolm.data.benchmark_sets), made with eSpeak NG in
  voices no model trained on, in the benchmarks' layouts under `runs/<name>/scoreboard/dataset/`,
  scored by `score-lm`'s own code (audiolm.eval.score_lm) into `submission/`; the same tests by a
  bigram LM counted on the training ids (`baseline/`): what the units alone give.
- ABX within and across speakers (audiolm.eval.abx) on the held-out utterances of the voices no model
  trained on, triphones from the corpus' phone alignments: the units (one-hot), the features they are
  assigned from, and MFCC k-means units of the same K fitted on the train split (the baseline).
Every figure is reported beside chance and the published anchors, which were measured on LibriSpeech
and LibriLight with models of another size (not the same test; a place on the map, not a comparison).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm.config import PipelineConfig, config_hash
from audiolm.data import benchmark_sets
from audiolm.data.corpus import has_phones, read_wavs, voice_groups
from audiolm.data.demo import demo_voices
from audiolm.eval.abx import ABX, items_from_alignment, one_hot, write_items
from audiolm.eval.lm_score import SpeechLMScorer
from audiolm.eval.score_lm import score_dataset
from audiolm.files import atomic_write_text
from audiolm.lm.sequences import dedup
from audiolm.pipeline import rundir
from audiolm.pipeline.semantic_eval import spectral_baseline

FORMAT = 2  # 2: each sentence pair read by one voice
SETS = {"lexical": 100, "syntactic": 60, "stories": 40}  # pairs of each set (about 11 min of speech in all)
SET_VOICES = 2  # unseen voices reading the sets
ABX_VOICES = 6  # unseen voices whose held-out utterances make the ABX items (about 3,000 triphones)

# Published figures (accuracy %, ABX error %): LibriSpeech/LibriLight-trained models, not our test
ANCHORS = {
    "AudioLM": {"lexical": 71.5, "lexical in-vocab": 83.7, "syntactic": 64.7, "ABX across": 6.7},
    "GSLM": {"lexical": 64.8, "syntactic": 54.2, "tSC": 66.6},
    "TWIST-13B": {"lexical": 74.5, "syntactic": 59.2, "tSC": 76.4},
    "SpiritLM 7B": {"lexical": 69.0, "syntactic": 58.3, "tSC": 82.9},
    "Slam": {"syntactic": 58.9, "tSC": 82.0},
}


class BigramScorer:
    """Log-likelihood of units under a bigram counted on the training ids (deduplicated as the LM's
    are), interpolated with the unigram: p(b | a) = (c(a, b) + p(b)) / (c(a) + 1), p(b) add-one."""

    def __init__(self, lm: SpeechLMScorer, train_ids: list[np.ndarray]):
        self.tokenizer, self.spec = lm.tokenizer, lm.spec
        size = lm.tokenizer.num_clusters
        bigrams, unigrams = np.zeros((size, size)), np.ones(size)
        for ids in train_ids:
            ids = dedup(ids) if self.spec.dedup else np.asarray(ids)
            np.add.at(unigrams, ids, 1)
            np.add.at(bigrams, (ids[:-1], ids[1:]), 1)
        self.unigram = unigrams / unigrams.sum()
        self.log_p = np.log((bigrams + self.unigram[None]) / (bigrams.sum(1, keepdims=True) + 1))

    def scores(self, units: list[np.ndarray], reduction: str = "mean", batch_size: int = 0) -> np.ndarray:
        out = []
        for ids in units:
            ids = dedup(ids) if self.spec.dedup else np.asarray(ids)
            total = math.log(self.unigram[ids[0]]) + self.log_p[ids[:-1], ids[1:]].sum()
            out.append(total / len(ids) if reduction == "mean" else total)
        return np.array(out)


def scoreboard_hash(cfg: PipelineConfig) -> str:
    parts = [(rundir.read_marker(cfg.run_dir / p) or {}).get("config_hash") for p in ("semantic", "lm-semantic")]
    return config_hash("scoreboard", FORMAT, SETS, SET_VOICES, ABX_VOICES, parts, cfg.data.demo.seed)


def build_sets(cfg: PipelineConfig, corpus: datasets.DatasetDict, folder: Path) -> dict[str, int] | None:
    """The three sets, read by the demo's first unseen voices (None: not the demo corpus, or no unseen voice)."""
    if cfg.data.source != "demo" or not cfg.data.demo.unseen_voices:
        return None
    _, unseen = demo_voices(cfg.data.demo)
    voices = {name: unseen[name] for name in sorted(unseen)[:SET_VOICES]}
    texts = sorted(set(corpus["train"]["text"]))
    return benchmark_sets.write_sets(folder, voices, texts, seed=cfg.data.demo.seed, **SETS)


def abx_figures(cfg: PipelineConfig, lm: SpeechLMScorer, corpus: datasets.DatasetDict, rate: int, folder: Path) -> dict:
    """ABX within / across (%) of the units, their features and MFCC k-means units of the same K, on the
    held-out utterances of the voices no model trained on (all held-out voices if there are none)."""
    heldout = corpus["heldout"]
    if not has_phones(heldout):
        return {}
    unseen = set(voice_groups(corpus).get("unseen voices", [])[:ABX_VOICES])
    rows = [i for i, s in enumerate(heldout["speaker"]) if not unseen or s in unseen]
    table = heldout.select(rows)
    wavs = read_wavs(table, list(range(len(rows))), rate, lm.tokenizer.sample_rate)
    items = [item for row, wav in zip(table.select_columns(["id", "phones", "phone_starts", "speaker"]), wavs, strict=True)
             for item in items_from_alignment(row["id"], row["phones"],
                                              [round(s * lm.tokenizer.sample_rate / rate) for s in row["phone_starts"]],
                                              len(wav), lm.tokenizer.sample_rate, row["speaker"])]
    write_items(folder / "heldout.item", items)
    k = lm.tokenizer.num_clusters
    mfcc = spectral_baseline(f"mfcc:{k}", corpus, rate, context=4)
    shift = 1.0 / lm.tokenizer.frame_rate
    ids, features = table["id"], lm.tokenizer.normalized_features(wavs)  # the encoder runs once for both
    kinds = {
        "units": {i: one_hot(u, k) for i, u in zip(ids, lm.tokenizer.assign_features(features), strict=True)},
        "features": {i: f.numpy() for i, f in zip(ids, features, strict=True)},
        f"MFCC k-means (K={k})": {i: one_hot(u, k) for i, u in zip(ids, mfcc.encode(wavs), strict=True)},
    }
    out = {"items": len(items), "voices": sorted({i.speaker for i in items}), "frame_shift": shift}
    for name, features in tqdm(kinds.items(), desc="ABX", leave=False):
        abx = ABX(items, features, shift)
        out[name] = {mode: abx.error(mode) for mode in ("within", "across")}
    return out


def evaluate(cfg: PipelineConfig, tokens: datasets.DatasetDict, corpus: datasets.DatasetDict, rate: int) -> dict:
    """Build the sets, score them (LM and bigram) and the ABX; writes `scoreboard/results.json`."""
    folder, digest = cfg.run_dir / "scoreboard", scoreboard_hash(cfg)
    if (rundir.read_marker(folder) or {}).get("config_hash") != digest:
        shutil.rmtree(folder, ignore_errors=True)  # made for other models: the submissions would be kept otherwise
        folder.mkdir(parents=True)
        rundir.write_marker(folder, digest, stage="scoreboard")
    lm = SpeechLMScorer.from_pretrained(str(cfg.run_dir), device=cfg.continuation.device)
    sets = folder / "dataset"
    if not rundir.is_up_to_date(sets, digest):  # a killed run made part of them: made again
        shutil.rmtree(sets, ignore_errors=True)
        sizes = build_sets(cfg, corpus, sets)
        if sizes:
            rundir.write_marker(sets, digest, stage="scoreboard-sets", **sizes)
    results: dict = {"sets": {k: v for k, v in (rundir.read_marker(sets) or {}).items() if k in SETS}}
    if results["sets"]:
        cache: dict = {}
        bigram = BigramScorer(lm, list(tokens["train"]["semantic"]))
        # the mean log-likelihood per unit (score-lm's default, slamkit's) and the sum (ZeroSpeech 2021's
        # baselines): the units are tokenized once, scoring them twice costs seconds
        for name, scorer, reduction, out in (("lm", lm, "mean", "submission"), ("bigram", bigram, "mean", "baseline"),
                                             ("lm-sum", lm, "sum", "submission-sum"),
                                             ("bigram-sum", bigram, "sum", "baseline-sum")):
            scored, errors = score_dataset(folder / "dataset", scorer, folder / out, reduction=reduction,
                                           units_cache=cache, model_name=name)
            if errors:
                raise ValueError(f"scoreboard: {len(errors)} wavs could not be scored: {errors[0]}")
            results[name] = {part: r["accuracy"] for part, r in scored["parts"].items()}
    results["abx"] = abx_figures(cfg, lm, corpus, rate, folder)
    results["anchors"] = ANCHORS
    atomic_write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    rundir.write_marker(folder, digest, stage="scoreboard", complete=True)
    return results


def is_done(cfg: PipelineConfig) -> bool:
    marker = rundir.read_marker(cfg.run_dir / "scoreboard") or {}
    return bool(marker.get("complete")) and marker.get("config_hash") == scoreboard_hash(cfg)


def print_figures(results: dict) -> None:
    for test, ours, baseline, chance, _ in table(results):
        print(f"stage 4 (scoreboard): {test}: {ours} (baseline {baseline or 'n/a'}, chance {chance})")


def table(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(test, ours, baseline, chance, published) rows of the report's table."""
    rows = []

    def pct(x: float | None) -> str:
        return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"

    def anchors(key: str) -> str:
        return ", ".join(f"{name} {figures[key]:g}" for name, figures in ANCHORS.items() if key in figures)

    tests = (("sWUGGY-style lexical, all (%)", "lexical/dev", "lexical"),
             ("sBLIMP-style syntactic (%)", "syntactic/dev", "syntactic"), ("topic StoryCloze (%)", "tSC", "tSC"))
    for suffix, label in (("", ""), ("-sum", ", summed log-likelihood")):
        if f"lm{suffix}" in results:
            lm, bigram = results[f"lm{suffix}"], results[f"bigram{suffix}"]
            rows += [(test.replace(" (%)", f"{label} (%)"), pct(lm[part]["all"]), pct(bigram[part]["all"]), "50",
                      anchors(key) if not suffix else "") for test, part, key in tests]
    abx = results.get("abx") or {}
    baseline = next((v for k, v in abx.items() if k.startswith("MFCC")), None)
    for mode in ("within", "across"):
        if "units" in abx:
            rows.append((f"ABX {mode} speakers, units (error %)", f"{abx['units'][mode]:.1f}",
                         f"{baseline[mode]:.1f}" if baseline else "n/a", "50", anchors(f"ABX {mode}")))
            rows.append((f"ABX {mode} speakers, features (error %)", f"{abx['features'][mode]:.1f}", "", "50", ""))
    return rows
