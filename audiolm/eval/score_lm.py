"""`audiolm score-lm`: a benchmark folder's wavs scored by the semantic LM, written as a submission.

DATASET holds any of sLM21's `lexical/{dev,test}` and `syntactic/{dev,test}` (wavs, and a `gold.csv`
where the organisers give one) and StoryCloze folders (wavs named `<id>_correct` / `<id>_incorrect`,
anywhere else under DATASET, e.g. `sSC/` and `tSC/`). For each, SUBMISSION gets the file the benchmark
reads at the same relative path plus `.txt` (`lexical/dev.txt`: `<stem> <score>` per wav), and where
the answers are known (a gold.csv, or StoryCloze's names) the accuracy, printed and in
`SUBMISSION/scores.json`. A part whose file is already there for the same model and score is kept
(a long run killed mid-way resumes); a part with a bad wav is not written, and the others are.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.eval import slm21
from audiolm.eval.lm_score import SpeechLMScorer
from audiolm.files import atomic_write_text

BATCH_FILES = 64  # wavs tokenized together


def find_parts(dataset: Path) -> dict[str, str]:
    """{relative folder: "lexical" | "syntactic" | "storycloze"} of the benchmark folders in DATASET."""
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise FileNotFoundError(f"{dataset}: no such folder")
    parts = {p: p.split("/")[0] for p in slm21.PARTS if any((dataset / p).glob("*.wav"))}
    for folder in sorted({w.parent for w in dataset.rglob("*.wav")}):
        rel = folder.relative_to(dataset).as_posix()
        if rel not in parts and all(slm21.STORY_NAME.match(w.stem) for w in folder.glob("*.wav")):
            parts[rel] = "storycloze"
    if not parts:
        raise ValueError(f"{dataset}: no benchmark folder found (sLM21's lexical/dev, lexical/test, syntactic/dev, "
                         "syntactic/test, or a StoryCloze folder of <id>_correct.wav / <id>_incorrect.wav)")
    return parts


def read_units(tokenizer, folder: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """{stem: semantic ids} of a part's wavs that could be read, and one line per one that could not."""
    wavs = sorted(folder.glob("*.wav"))
    units, errors = {}, []
    for start in tqdm(range(0, len(wavs), BATCH_FILES), desc=f"tokenizing {folder.name}", unit="batch", leave=False):
        read = []
        for path in wavs[start : start + BATCH_FILES]:
            try:
                read.append((path.stem, audio.load(path, tokenizer.sample_rate)[0]))
            except audio.AudioError as err:
                errors.append(str(err))
        for (stem, _), ids in zip(read, tokenizer.encode([w for _, w in read]) if read else [], strict=True):
            if ids.size == 0:
                errors.append(f"{folder / stem}.wav: too short for a single token frame")
            else:
                units[stem] = ids
    return units, errors


def accuracy(kind: str, folder: Path, scores: dict[str, float]) -> dict | None:
    """The part's accuracy by the benchmark's rule, where its answers are known."""
    if kind == "storycloze":
        return slm21.story_accuracy(scores, str(folder))
    gold = folder / "gold.csv"
    if not gold.exists():
        return None
    rows = slm21.read_gold(gold)
    return (slm21.lexical_accuracy if kind == "lexical" else slm21.syntactic_accuracy)(rows, scores, str(gold))


def score_dataset(dataset: Path, scorer: SpeechLMScorer, submission: Path, reduction: str = "mean",
                  batch_size: int = 32, model_name: str = "",
                  units_cache: dict[str, tuple[dict, list[str]]] | None = None) -> tuple[dict, list[str]]:
    """Score every benchmark folder in `dataset` into `submission`; returns (results, error lines).
    `units_cache` ({part: (units, errors)}, filled here) lets a second scorer of the same tokenizer
    (stage 4's bigram baseline) skip the tokenizing."""
    dataset, submission = Path(dataset), Path(submission)
    settings = {"model": model_name, "score": reduction, "dedup": scorer.spec.dedup}
    record = submission / "scores.json"
    previous = json.loads(record.read_text()) if record.exists() else {}
    results: dict = {"settings": settings, "parts": {}}
    errors: list[str] = []
    cache = {} if units_cache is None else units_cache
    for rel, kind in find_parts(dataset).items():
        folder, out = dataset / rel, submission / f"{rel}.txt"
        stems = {w.stem for w in folder.glob("*.wav")}
        if previous.get("settings") == settings and out.exists():
            scores = slm21.read_submission(out, stems)  # done before, with the same model and score
        else:
            if rel not in cache:
                cache[rel] = read_units(scorer.tokenizer, folder)
            units, bad = cache[rel]
            if bad:
                errors += bad
                continue
            values = scorer.scores(list(units.values()), reduction, batch_size)
            scores = {stem: float(v) for stem, v in zip(units, values, strict=True)}
            slm21.write_submission(out, scores)
        results["parts"][rel] = {"kind": kind, "wavs": len(scores), "accuracy": accuracy(kind, folder, scores)}
        atomic_write_text(record, json.dumps(results, indent=2) + "\n")
    return results, errors


def summary_lines(results: dict) -> list[str]:
    lines = []
    for rel, part in results["parts"].items():
        acc = part["accuracy"]
        if acc is None:
            lines.append(f"{rel}: {part['wavs']} wavs scored (no gold.csv: no accuracy)")
            continue
        extra = f", in-vocab {100 * acc['in_vocab']:.1f}%" if "in_vocab" in acc and np.isfinite(acc["in_vocab"]) else ""
        lines.append(f"{rel}: {100 * acc['all']:.1f}% of {acc['pairs']} pairs{extra}")
    return lines
