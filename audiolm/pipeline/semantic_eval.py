"""`audiolm semantic-eval`: how much of what is said, and how little of who says it, semantic tokens carry.

For each tokenizer (a saved one, a Hub id, or a spectral baseline `mfcc:K` / `logmel:K` fitted here
on the corpus' train split), on one split of a corpus: PNMI, phone purity and cluster purity
against frame-level phone labels (where the corpus has them), and cross-voice consistency (edit
distances of deduplicated tokens, same sentence by other voices vs other sentences by the same
voice, and the AUC of telling the two apart). See audiolm/semantic/metrics.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm.config import SemanticConfig
from audiolm.data import shards
from audiolm.data.corpus import has_phones, read_frame_phones, read_wavs
from audiolm.data.phones import PhoneInventory
from audiolm.eval.speaker import SpeakerClassifier
from audiolm.pipeline import rundir
from audiolm.semantic.features import build_features
from audiolm.semantic.metrics import PhoneMetrics, phone_metrics, voice_consistency
from audiolm.semantic.tokenizer import SemanticTokenizer

SPECTRAL = ("mfcc", "logmel")


@dataclass
class Row:
    name: str
    clusters: int
    utterances: int
    pnmi: float | None
    phone_purity: float | None
    cluster_purity: float | None
    same_sentence: float | None  # mean normalised edit distance, same sentence, other voice
    other_sentence: float | None  # ... other sentence, same voice
    auc: float | None
    tokens_per_second: float  # after removing repeats
    voice_probe: float | None  # speaker named from the token histogram (classifier trained on the train split)


def open_corpus(data: str) -> tuple[datasets.DatasetDict, int]:
    """A corpus folder (`runs/<name>/corpus`) or a run folder (its corpus), and its sample rate."""
    path = Path(data)
    if shards.is_sharded(path / "corpus"):
        path = path / "corpus"
    if not shards.is_sharded(path):
        raise FileNotFoundError(f"{data}: not a corpus folder (runs/<name>/corpus, written by stage 0) or a run folder")
    rate = (rundir.read_marker(path) or {}).get("sample_rate", 16000)
    return shards.load_splits(path), rate


def spectral_baseline(spec: str, corpus: datasets.DatasetDict, rate: int, context: int, seed: int = 0) -> SemanticTokenizer:
    """`mfcc:K` / `logmel:K`: k-means of that front end (CMVN, +-`context` frames) fitted on the train split."""
    kind, _, k = spec.partition(":")
    s = dataclasses.replace(SemanticConfig(), backend=kind, num_clusters=int(k or 100), context_frames=context, seed=seed)
    features = build_features(kind, sample_rate=rate, context=context)
    train = corpus["train"]
    order = np.random.default_rng(seed).permutation(train.num_rows).tolist()
    batches = (read_wavs(train, order[i : i + 32], rate, features.sample_rate) for i in range(0, len(order), 32))
    return SemanticTokenizer.fit(s, features, batches)


def load_tokenizer(spec: str, corpus: datasets.DatasetDict, rate: int, context: int,
                   device: str = "cpu") -> tuple[str, SemanticTokenizer]:
    if spec.partition(":")[0] in SPECTRAL:
        return f"{spec} (+-{context})", spectral_baseline(spec, corpus, rate, context)
    return spec, SemanticTokenizer.from_pretrained(spec, device=device)


def phone_scores(ids: list[np.ndarray], ds: datasets.Dataset, rate: int, frame_rate: float) -> PhoneMetrics | None:
    """PNMI and purities of per-utterance token ids against the rows' phone alignments (None without)."""
    if not has_phones(ds):
        return None
    labels = read_frame_phones(ds, [len(x) for x in ids], rate, frame_rate)
    inventory = PhoneInventory([p for row in labels for p in row])
    return phone_metrics(ids, [inventory.ids(row) for row in labels])


def voice_from_histograms(train_ids: list[np.ndarray], train_speakers: list[str], test_ids: list[np.ndarray],
                          test_speakers: list[str], num_tokens: int) -> float:
    """How much of the voice is left in tokens: the stage-4 speaker classifier (logistic regression),
    fed each utterance's token histogram instead of its spectrum, trained on one split and tested on
    another. Content-only tokens would leave it little beyond the speakers' accents and tempo."""
    def histograms(ids: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.bincount(np.asarray(x, dtype=np.int64), minlength=num_tokens)[:num_tokens] / max(1, len(x))
                         for x in ids])

    probe = SpeakerClassifier.fit_features(histograms(train_ids), list(train_speakers), weight_decay=1e-2)
    predicted = probe.predict_features(histograms(test_ids))
    return float(np.mean([p == s for p, s in zip(predicted, test_speakers, strict=True)]))


def _tokenize(name: str, tokenizer: SemanticTokenizer, ds: datasets.Dataset, rate: int) -> list[np.ndarray]:
    ids = []
    for start in tqdm(range(0, ds.num_rows, 16), desc=f"tokenizing ({name})", leave=False):
        wavs = read_wavs(ds, list(range(start, min(ds.num_rows, start + 16))), rate, tokenizer.sample_rate)
        ids += tokenizer.encode(wavs)
    return ids


def evaluate(name: str, tokenizer: SemanticTokenizer, ds: datasets.Dataset, rate: int,
             probe_on: datasets.Dataset | None = None) -> Row:
    """`probe_on`: a split to train the token-histogram speaker probe on (None: no probe)."""
    ids = _tokenize(name, tokenizer, ds, rate)
    seconds = float(sum(ds["duration"]))
    dedup_tokens = sum(int(1 + np.count_nonzero(np.diff(x))) for x in ids if len(x))
    pm, vc = phone_scores(ids, ds, rate, tokenizer.frame_rate), None
    try:
        vc = voice_consistency(ids, ds["text"], ds["speaker"])
    except ValueError:  # no sentence read by two voices
        pass
    probe = None
    if probe_on is not None and len(set(probe_on["speaker"])) > 1:
        train_ids = _tokenize(f"{name}, probe", tokenizer, probe_on, rate)
        probe = voice_from_histograms(train_ids, probe_on["speaker"], ids, ds["speaker"], tokenizer.num_clusters)
    return Row(name, tokenizer.num_clusters, ds.num_rows, pm and pm.pnmi, pm and pm.phone_purity, pm and pm.cluster_purity,
               vc and vc.same_text_other_voice, vc and vc.other_text_same_voice, vc and vc.auc, dedup_tokens / seconds,
               probe)


def format_table(rows: list[Row]) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    head = ["tokens", "K", "PNMI", "phone purity", "cluster purity", "same sentence, other voice",
            "other sentence, same voice", "AUC", "tokens/s (dedup)", "voice from histogram"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(f"| {r.name} | {r.clusters} | {f(r.pnmi)} | {f(r.phone_purity)} | {f(r.cluster_purity)} | "
                     f"{f(r.same_sentence)} | {f(r.other_sentence)} | {f(r.auc)} | {r.tokens_per_second:.1f} | "
                     f"{f(r.voice_probe)} |")
    return "\n".join(lines)
