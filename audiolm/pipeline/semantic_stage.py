"""Stage 1: fit the semantic tokenizer on the train split, then tokenize every utterance.

Outputs: `runs/<name>/semantic/` (the tokenizer, loadable with `SemanticTokenizer.from_pretrained`)
and `runs/<name>/tokens/` (Arrow, train/heldout: id, speaker, text, duration, semantic ids).
Tokenization goes shard by shard into `runs/<name>/.tokens.partial/`, so a killed run resumes
at the first unfinished shard.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm.config import PipelineConfig, SemanticConfig, config_hash
from audiolm.data import shards
from audiolm.data.corpus import has_text, select_speakers, voice_groups, wav_batches
from audiolm.data.prefetch import prefetch
from audiolm.devices import resolve_device
from audiolm.hub import content_hash, part_hash, resolve_folder
from audiolm.interop.joblib_kmeans import import_kmeans
from audiolm.pipeline import corpus_stage, encoder_stage, rundir, semantic_eval
from audiolm.semantic.features import build_features
from audiolm.semantic.metrics import voice_consistency
from audiolm.semantic.tokenizer import SemanticTokenizer
from audiolm.text import TextTokenizer, phonemize
from audiolm.tokens import dedup, id_dtype
from audiolm.train import distributed

FIGURE_ROWS = 4000  # held-out rows the stage's figures read at most


def tokenizer_hash(cfg: PipelineConfig) -> str:
    # Where and how fast it runs does not change the result (half precision does, a little: hashed when
    # asked for); the encoder's training only matters when there is one. A bundle's tokenizer is its content.
    if cfg.semantic.init_from:
        parent = part_hash(cfg.semantic.init_from, "semantic")
        return config_hash("semantic-tokenizer-from", parent, cfg.semantic.precision, corpus_stage.corpus_hash(cfg))
    fitted = {k: v for k, v in dataclasses.asdict(cfg.semantic).items()
              if k not in ("device", "dedup", "encoder") and not (k == "precision" and v == "fp32")
              and not (k in ("kmeans_file", "init_from") and not v)}  # runs from before the key existed stay up to date
    trained = ""
    if cfg.semantic.backend == "trained":
        trained = encoder_stage.round_hash(cfg, encoder_stage.rounds(cfg.semantic.encoder)[-1])
    return config_hash("semantic-tokenizer", fitted, trained, corpus_stage.corpus_hash(cfg))


def fit_or_load_tokenizer(cfg: PipelineConfig, corpus: datasets.DatasetDict, corpus_rate: int) -> SemanticTokenizer:
    out = cfg.run_dir / "semantic"
    digest = tokenizer_hash(cfg)
    device = str(resolve_device(cfg.semantic.device))
    if rundir.is_up_to_date(out, digest, saved_part=True):
        return SemanticTokenizer.from_pretrained(out, device=device, precision=cfg.semantic.precision)
    s: SemanticConfig = cfg.semantic
    if s.backend == "trained" and not s.init_from:  # train the encoder first; from then on a local transformers model
        s = dataclasses.replace(s, backend="ssl", model=str(encoder_stage.run(cfg)), revision="")
    if s.init_from:  # a bundle's, as it is (audiolm finetune)
        tokenizer = SemanticTokenizer.from_pretrained(s.init_from, subfolder="semantic", device=device, precision=s.precision)
        print(f"stage 1 (semantic): the tokenizer of {s.init_from} (K={tokenizer.num_clusters})")
    elif s.kmeans_file:
        if s.backend != "ssl":
            raise ValueError(f"semantic.kmeans_file needs semantic.backend 'ssl' (the encoder it was fitted on), "
                             f"not '{s.backend}'")
        tokenizer = import_kmeans(s.kmeans_file, s.model, s.layer, s.revision, device)
        print(f"stage 1 (semantic): the released k-means {s.kmeans_file} (K={tokenizer.num_clusters}) over {s.model} "
              f"block {s.layer}")
    else:
        tokenizer = _fit_tokenizer(s, corpus, corpus_rate, cfg.data.sample_rate, device)
    tokenizer.save_pretrained(out)
    rundir.write_marker(out, digest, stage="semantic-tokenizer")
    return tokenizer


def _fit_tokenizer(s: SemanticConfig, corpus: datasets.DatasetDict, corpus_rate: int, sample_rate: int,
                   device: str) -> SemanticTokenizer:
    """k-means fitted on the training split's features (or the classifier's classes as units)."""
    features = build_features(s.backend, s.model, s.layer, device, sample_rate, s.context_frames, s.revision,
                              s.units, s.precision)
    train = corpus["train"]
    order = np.random.default_rng(s.seed).permutation(train.num_rows).tolist()
    if s.units == "classifier":
        print(f"stage 1 (semantic): units = the {features.dim} classes of {s.model}'s frame classifier")
    else:
        print(f"stage 1 (semantic): fitting k-means (K={s.num_clusters}) on up to {s.kmeans_frames} frames of "
              f"{s.backend}{' ' + s.model + ' layer ' + str(s.layer) if s.backend == 'ssl' else ''} features")
    batches = (wavs for _, wavs in wav_batches(train, order, corpus_rate, features.sample_rate, s.batch_seconds, sort=False))
    if s.units == "kmeans":
        batches = tqdm(batches, desc="features for k-means", unit="batch", leave=False)
    return SemanticTokenizer.fit(s, features, batches)


def _tokenize_split(tokenizer: SemanticTokenizer, split: str, ds: datasets.Dataset, corpus_rate: int,
                    partial: Path, batch_seconds: float, dedup_ids: bool, language: str, progress: tqdm,
                    shard_size: int) -> None:
    durations = ds["duration"]
    ids_type = datasets.Sequence(datasets.Value(id_dtype(tokenizer.num_clusters)))

    def make_shard(indices: list[int]) -> datasets.Dataset:
        ids: dict[int, np.ndarray] = {}
        # on a GPU the next batches are read and resampled while this one runs (on a CPU that would
        # take a core from the model)
        ahead = 0 if tokenizer.device.type == "cpu" else 2
        for batch, wavs in prefetch(wav_batches(ds, indices, corpus_rate, tokenizer.sample_rate, batch_seconds), ahead):
            ids.update(zip(batch, tokenizer.encode(wavs), strict=True))
        meta = ds.select(indices).remove_columns(["audio"])
        meta = meta.add_column("semantic", [ids[i].tolist() for i in indices]).cast_column("semantic", ids_type)
        if dedup_ids:
            meta = meta.add_column("semantic_dedup", [dedup(ids[i]).tolist() for i in indices])
            meta = meta.cast_column("semantic_dedup", ids_type)
        # the text tasks' input: eSpeak NG's phones of the text (empty without text)
        return meta.add_column("phonemes", [phonemize(t, language) if t else [] for t in meta["text"]])

    rundir.sharded(ds.num_rows, split, partial, shard_size, make_shard,
                   lambda indices: progress.update(sum(durations[i] for i in indices)))


def group_key(group: str) -> str:
    """The marker's key suffix for a voice group's figures: "unseen voices" -> "_unseen_voices"."""
    return "_" + group.replace(" ", "_")


def _heldout_figures(rows: datasets.Dataset, corpus_rate: int, frame_rate: float, label: str, key: str) -> dict:
    """PNMI and purities, and the cross-voice consistency of deduplicated tokens, printed and returned
    for the marker (keys `heldout_phones<key>`, `heldout_voice_consistency<key>`)."""
    info = {}
    ids = [np.asarray(x) for x in rows["semantic"]]
    phones = semantic_eval.phone_scores(ids, rows, corpus_rate, frame_rate)
    if phones is not None:
        info[f"heldout_phones{key}"] = dataclasses.asdict(phones)
        print(f"  {label}: PNMI {phones.pnmi:.3f}, phone purity {phones.phone_purity:.3f}, "
              f"cluster purity {phones.cluster_purity:.3f}")
    try:
        vc = voice_consistency(ids, rows["text"], rows["speaker"])
        info[f"heldout_voice_consistency{key}"] = dataclasses.asdict(vc)
        print(f"  {label}: edit distance of deduplicated tokens, same sentence by another voice "
              f"{vc.same_text_other_voice:.3f}, another sentence by the same voice {vc.other_text_same_voice:.3f} "
              f"(AUC {vc.auc:.3f})")
    except ValueError as err:  # corpora without repeated sentences across voices
        print(f"  {label}: no voice-consistency check ({err})")
    return info


def fit_text_tokenizer(cfg: PipelineConfig, corpus: datasets.DatasetDict, force: bool = False) -> Path | None:
    """The sentencepiece model of the training split's text (`runs/<name>/text`, issue 16's text
    tasks); None for a corpus without text (LibriLight), which has no text tasks."""
    out = cfg.run_dir / "text"
    digest = config_hash("text-tokenizer", cfg.text, corpus_stage.corpus_hash(cfg))
    if cfg.semantic.init_from:  # the bundle's own, or none: the text LMs it has read its pieces
        parent = Path(resolve_folder(cfg.semantic.init_from)) / "text"
        digest = config_hash("text-tokenizer-from", content_hash(parent) if parent.is_dir() else None)
    if not force and rundir.is_up_to_date(out, digest, saved_part=True):
        return out
    if cfg.semantic.init_from:
        shutil.rmtree(out, ignore_errors=True)
        if not parent.is_dir():
            return None
        tokenizer = TextTokenizer.from_pretrained(parent)
        tokenizer.save_pretrained(out)
        rundir.write_marker(out, digest, stage="text-tokenizer", vocab_size=tokenizer.vocab_size)
        return out
    if not has_text(corpus["train"]):
        shutil.rmtree(out, ignore_errors=True)  # one made from an earlier corpus
        print("stage 1 (text): the corpus has no text: no text tokenizer, phonemes or text tasks")
        return None
    tokenizer = TextTokenizer.train(corpus["train"]["text"], cfg.text)
    tokenizer.save_pretrained(out)
    rundir.write_marker(out, digest, stage="text-tokenizer", vocab_size=tokenizer.vocab_size)
    print(f"stage 1 (text): {tokenizer.vocab_size} sentencepiece pieces of the training text -> {out}")
    return out


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    """In every process under `accelerate launch`: the encoder trains in all, the text tokenizer
    and k-means are fitted by the main one, every process tokenizes its shards (on its own GPU
    where there is one), and the main one computes the figures and moves the table into place."""
    corpus = corpus_stage.load(cfg)
    corpus_rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    out = cfg.run_dir / "tokens"
    distributed.on_main(fit_text_tokenizer, cfg, corpus, force)
    digest = config_hash("semantic-tokens", tokenizer_hash(cfg), cfg.semantic.dedup, cfg.text.language)
    if not force and rundir.is_up_to_date(out, digest):
        distributed.print_main(f"stage 1 (semantic): {out} is up to date")
        return out
    s = cfg.semantic
    if s.backend == "trained" and s.units == "classifier" and s.encoder.objective != "phones":
        raise ValueError("semantic.units 'classifier' with backend 'trained' needs semantic.encoder.objective "
                         "'phones' (a masked-prediction encoder has no frame classifier to take units from)")
    if s.backend == "trained" and not s.init_from:  # every process trains (the trainer splits the batches)
        encoder_stage.run(cfg)
    distributed.on_main(lambda: fit_or_load_tokenizer(cfg, corpus, corpus_rate) and None)
    tokenizer = SemanticTokenizer.from_pretrained(cfg.run_dir / "semantic", device=resolve_device(cfg.semantic.device),
                                                  precision=cfg.semantic.precision)
    partial = cfg.run_dir / ".tokens.partial"
    distributed.on_main(rundir.prepare_partial, partial, digest, "semantic-tokens", force)
    total = sum(sum(corpus[s]["duration"]) for s in corpus)
    start = time.monotonic()
    with tqdm(total=total, desc="stage 1: tokenizing", unit="s audio", disable=None if distributed.is_main() else True,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]") as progress:
        for split in corpus:
            _tokenize_split(tokenizer, split, corpus[split], corpus_rate, partial, cfg.semantic.batch_seconds,
                            cfg.semantic.dedup, cfg.text.language, progress, cfg.data.shard_size)
    distributed.wait()  # every process's shards are there
    if not distributed.is_main():
        return out
    seconds = time.monotonic() - start
    tokens = shards.load_splits(partial, corpus)
    # the figures read a bounded spread of held-out rows (the demo's all of them), whatever the corpus' size
    heldout = tokens["heldout"].select(rundir.spread_indices(tokens["heldout"].num_rows, FIGURE_ROWS))
    info = {"stage": "semantic-tokens", "semantic_frame_rate": tokenizer.frame_rate,
            "semantic_vocab_size": tokenizer.num_clusters, "semantic_tokenizer": "semantic",
            "tokenize_seconds": round(seconds, 2), "processes": distributed.world_size()}
    groups = voice_groups(corpus)
    info.update(_heldout_figures(heldout, corpus_rate, tokenizer.frame_rate, "held-out, all voices", ""))
    for group, members in (groups.items() if len(groups) > 1 else ()):
        info.update(_heldout_figures(select_speakers(heldout, members), corpus_rate, tokenizer.frame_rate,
                                     f"held-out, {group}", group_key(group)))
    counts = ", ".join(f"{s} {tokens[s].num_rows}" for s in tokens)
    rundir.finish_partial(partial, out, digest, **info)
    rundir.write_resolved_config(cfg, out)
    print(f"stage 1 (semantic): wrote {out} ({counts} utterances, {tokenizer.frame_rate:g} Hz, K={tokenizer.num_clusters})")
    return out
