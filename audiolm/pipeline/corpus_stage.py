"""Stage 0: prepare the corpus of a pipeline as `runs/<name>/corpus` (Arrow, train/heldout)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import datasets

from audiolm.config import PipelineConfig, config_hash, to_dict
from audiolm.data.corpus import FORMAT, build_corpus, describe_source
from audiolm.files import sweep_temporaries
from audiolm.pipeline import rundir

log = logging.getLogger(__name__)


def corpus_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "corpus"


def corpus_hash(cfg: PipelineConfig) -> str:
    # how many processes prepare and tokenize it does not change the corpus (nor the tokens)
    return config_hash("corpus", {k: v for k, v in to_dict(cfg.data).items() if k != "workers"}, FORMAT)


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    out = corpus_dir(cfg)
    digest = corpus_hash(cfg)
    if not force and rundir.is_up_to_date(out, digest):
        print(f"stage 0 (corpus): {out} is up to date")
        return out
    print(f"stage 0 (corpus): preparing {describe_source(cfg.data)} corpus '{cfg.data.source}' -> {out}")
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(cfg.run_dir, ".corpus-cache.")
    cache = Path(tempfile.mkdtemp(dir=cfg.run_dir, prefix=".corpus-cache."))
    try:
        ds, report = build_corpus(cfg.data, cache)
        rundir.save_dataset(ds, out)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    hours = {split: round(sum(ds[split]["duration"]) / 3600, 3) for split in ds}
    rundir.write_marker(out, digest, stage="corpus", sample_rate=cfg.data.sample_rate, counts=report, hours=hours)
    rundir.write_resolved_config(cfg, cfg.run_dir)
    for split, counts in report.items():
        print(f"  {split}: {counts['kept']} clips ({hours[split]:.2f} h) kept; dropped {counts['too short']} too short, "
              f"{counts['too long']} too long, {counts['unreadable']} unreadable")
    return out


def load(cfg: PipelineConfig) -> datasets.DatasetDict:
    out = corpus_dir(cfg)
    if rundir.read_marker(out) is None:
        raise FileNotFoundError(f"{out}: no corpus yet; run stage 0 first (make stage-0)")
    return datasets.load_from_disk(str(out))
