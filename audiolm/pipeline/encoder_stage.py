"""Stage 1, `semantic.backend: trained`: train the speech encoder from scratch before k-means.

Outputs, per training round (`iter1`, `iter2`, or `phones`): `runs/<name>/encoder/<round>/`, a
transformers folder (config.json, model.safetensors, preprocessor_config.json) that
`AutoModel.from_pretrained` loads like a Hub HuBERT (the phone round is a `HubertForCTC`, so
`AutoModelForCTC` loads its phone classifier too), with a stage.json holding its held-out loss
and accuracy; training state in `runs/<name>/encoder/<round>.train/` (checkpoints, logs), so a
killed run resumes. Each round's targets come from the corpus on disk: MFCC k-means (iteration 1),
k-means of the previous round's encoder (iteration 2), or the corpus' phone alignments (phones).
Speakers in `semantic.encoder.exclude_speakers` are never trained on, so held-out figures can be
given for unheard voices.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from audiolm.config import EncoderConfig, PipelineConfig, config_hash
from audiolm.data.corpus import CorpusAudio, has_phones, read_frame_phones, read_wavs
from audiolm.data.phones import PhoneInventory
from audiolm.devices import resolve_device
from audiolm.files import atomic_dir
from audiolm.pipeline import corpus_stage, rundir
from audiolm.semantic.features import build_features
from audiolm.semantic.pretrain import MaskedPredictor, feature_extractor, new_encoder, num_frames, with_classifier
from audiolm.semantic.tokenizer import SemanticTokenizer
from audiolm.tokens import id_dtype
from audiolm.train import distributed
from audiolm.train.encoder_task import EncoderTask
from audiolm.train.trainer import Trainer

OBJECTIVES = ("hubert", "phones")
FORMAT = 2  # 2: a phone encoder is saved with its classifier (HubertForCTC)


def rounds(e: EncoderConfig) -> list[str]:
    if e.objective not in OBJECTIVES:
        raise ValueError(f"unknown semantic.encoder.objective '{e.objective}' (use {' or '.join(OBJECTIVES)})")
    if e.objective == "phones":
        return ["phones"]
    if e.iterations < 1:
        raise ValueError("semantic.encoder.iterations must be at least 1")
    return [f"iter{i}" for i in range(1, e.iterations + 1)]


def encoder_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "encoder"


def final_encoder(cfg: PipelineConfig) -> Path:
    return encoder_dir(cfg) / rounds(cfg.semantic.encoder)[-1]


def round_hash(cfg: PipelineConfig, upto: str) -> str:
    s = cfg.semantic
    # k-means settings shape the targets of masked prediction; phone targets come from the corpus
    kmeans = (s.kmeans_frames, s.kmeans_steps, s.kmeans_batch_size, s.seed) if s.encoder.objective == "hubert" else None
    names = rounds(s.encoder)
    # how many iterations follow does not change this one: a second iteration reuses the first
    settings = {k: v for k, v in dataclasses.asdict(s.encoder).items() if k != "iterations"}
    return config_hash("encoder", FORMAT, settings, kmeans, names[: names.index(upto) + 1], corpus_stage.corpus_hash(cfg))


def _split(ds: datasets.Dataset, exclude: list[str]) -> datasets.Dataset:
    if not exclude:
        return ds
    keep = [i for i, speaker in enumerate(ds["speaker"]) if speaker not in set(exclude)]
    if not keep:
        raise ValueError(f"semantic.encoder.exclude_speakers {exclude} leaves no training utterance")
    return ds.select(keep)


def _kmeans_targets(cfg: PipelineConfig, previous: Path | None, wavs: Sequence[np.ndarray],
                    heldout: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Iteration 1: MFCC k-means; later: k-means of the previous encoder's `target_layer`."""
    e = cfg.semantic.encoder
    if previous is None:
        s = dataclasses.replace(cfg.semantic, backend="mfcc", context_frames=e.target_context,
                                num_clusters=e.target_clusters, utterance_norm=True)
    else:
        s = dataclasses.replace(cfg.semantic, backend="ssl", model=str(previous), layer=e.target_layer,
                                num_clusters=e.target_clusters, utterance_norm=False)
    # on this process' GPU where there is one (a spectral front end ignores the device)
    features = build_features(s.backend, s.model, s.layer, str(resolve_device(s.device)), cfg.data.sample_rate,
                              s.context_frames)
    order = np.random.default_rng(s.seed).permutation(len(wavs))
    batches = ([wavs[i] for i in order[j : j + 16]] for j in range(0, len(wavs), 16))
    tokenizer = SemanticTokenizer.fit(s, features, tqdm(batches, desc="features for k-means targets", leave=False))
    dtype = id_dtype(e.target_clusters)
    # in batches of 16, read as they are needed (the features do not depend on their batch: test_features.py)
    everything = itertools.chain(wavs, heldout)
    encode = []
    for _ in tqdm(range(0, len(wavs) + len(heldout), 16), desc="k-means targets", leave=False):
        encode += [ids.astype(dtype) for ids in tokenizer.encode(list(itertools.islice(everything, 16)))]
    return encode[: len(wavs)], encode[len(wavs) :]


def _phone_targets(train: datasets.Dataset, heldout: datasets.Dataset, wavs: Sequence[np.ndarray],
                   heldout_wavs: list[np.ndarray], rate: int) -> tuple[list[np.ndarray], list[np.ndarray], PhoneInventory]:
    if not has_phones(train):
        raise ValueError("semantic.encoder.objective 'phones' needs a corpus with phone alignments "
                         "(the demo corpus has them; this one has none)")
    inventory = PhoneInventory([p for row in train["phones"] for p in row])

    def labels(ds: datasets.Dataset, ws: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [inventory.ids(row) for row in read_frame_phones(ds, [num_frames(len(w)) for w in ws], rate)]

    return labels(train, wavs), labels(heldout, heldout_wavs), inventory


def _train_round(cfg: PipelineConfig, name: str, wavs: Sequence[np.ndarray], targets: list[np.ndarray],
                 heldout: list[tuple[np.ndarray, np.ndarray]], num_targets: int, digest: str,
                 inventory: PhoneInventory | None, speakers: list[str]) -> dict[str, float]:
    e = cfg.semantic.encoder
    torch.manual_seed(e.train.seed)
    model = MaskedPredictor(new_encoder(e), num_targets)
    work = encoder_dir(cfg) / f"{name}.train"
    distributed.on_main(rundir.prepare_partial, work, digest, f"encoder-{name}")
    params = sum(p.numel() for p in model.encoder.parameters()) / 1e6
    distributed.print_main(f"stage 1 (encoder {name}): training a {params:.1f}M-parameter HuBERT-style encoder on "
                           f"{len(targets)} utterances, {num_targets} {'phones' if inventory else 'k-means targets'}, "
                           f"{e.train.steps} steps")
    task = EncoderTask(model, e, wavs, targets, heldout)  # wavs read from the corpus when a crop needs them
    trainer = Trainer(task, e.train, work)
    metrics: dict[str, float] = {}

    def report(m: dict[str, float]) -> None:
        metrics.update(m)
        tqdm.write(f"  step {trainer.step}: held-out loss {m['loss']:.3f}, accuracy {m['accuracy']:.3f}")

    trainer.fit(on_eval=report)
    predictor = trainer.accelerator.unwrap_model(task.models["encoder"]).cpu().eval()
    # A phone classifier is kept with its head (semantic.units: classifier takes tokens from it);
    # k-means targets' head means nothing once training is over.
    encoder = with_classifier(predictor, inventory.names) if inventory is not None else predictor.encoder
    out = encoder_dir(cfg) / name

    def export() -> None:  # the main process' (under `accelerate launch`, the others wait for it)
        with atomic_dir(out) as tmp:
            encoder.save_pretrained(tmp, safe_serialization=True)
            feature_extractor(cfg.data.sample_rate).save_pretrained(tmp)
        rundir.write_marker(out, digest, stage=f"encoder-{name}", steps=trainer.step, train_utterances=len(targets),
                            train_speakers=sorted(set(speakers)), **{f"heldout_{k}": v for k, v in metrics.items()})

    distributed.on_main(export)
    return metrics


def run(cfg: PipelineConfig) -> Path:
    """Train every round that is not up to date; returns the final encoder's folder."""
    e: EncoderConfig = cfg.semantic.encoder
    names = rounds(e)
    if all(rundir.is_up_to_date(encoder_dir(cfg) / n, round_hash(cfg, n)) for n in names):
        return final_encoder(cfg)
    if cfg.data.sample_rate != 16000:
        raise ValueError("semantic.backend 'trained' works at 16 kHz (HuBERT's frame grid); set data.sample_rate: 16000")
    corpus = corpus_stage.load(cfg)
    rate = rundir.read_marker(corpus_stage.corpus_dir(cfg))["sample_rate"]
    train_ds = _split(corpus["train"], e.exclude_speakers)
    heldout_ds = corpus["heldout"].select(rundir.spread_indices(corpus["heldout"].num_rows, 32))
    wavs = CorpusAudio(train_ds, list(range(train_ds.num_rows)), rate, 16000)
    heldout_wavs = read_wavs(heldout_ds, list(range(heldout_ds.num_rows)), rate, 16000)
    previous: Path | None = None
    for name in names:
        digest, out = round_hash(cfg, name), encoder_dir(cfg) / name
        if not rundir.is_up_to_date(out, digest):
            inventory = None
            if name == "phones":
                targets, heldout_targets, inventory = _phone_targets(train_ds, heldout_ds, wavs, heldout_wavs, rate)
                num_targets = len(inventory)
            else:
                targets, heldout_targets = _kmeans_targets(cfg, previous, wavs, heldout_wavs)
                num_targets = e.target_clusters
            heldout = list(zip(heldout_wavs, heldout_targets, strict=True))
            _train_round(cfg, name, wavs, targets, heldout, num_targets, digest, inventory, train_ds["speaker"])
        previous = out
    return final_encoder(cfg)
