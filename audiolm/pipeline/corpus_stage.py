"""Stage 0: prepare the corpus of a pipeline as `runs/<name>/corpus` (sharded Arrow, train/heldout).

Shards are built under `runs/<name>/.corpus.partial/`: a killed run resumes at the missing ones;
under `accelerate launch` (`make stage-0 PROCS=N`) process r builds shards r, r + N, ... and the
main process moves the finished folder into place.
"""

from __future__ import annotations

import time
from pathlib import Path

import datasets

from audiolm.config import PipelineConfig, config_hash, to_dict
from audiolm.data import shards
from audiolm.data.corpus import FORMAT, SPLITS, build_split, check_split, describe_source, split_report
from audiolm.pipeline import rundir
from audiolm.train import distributed


def corpus_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "corpus"


def corpus_hash(cfg: PipelineConfig) -> str:
    return config_hash("corpus", to_dict(cfg.data), FORMAT)


def run(cfg: PipelineConfig, force: bool = False) -> Path:
    out = corpus_dir(cfg)
    digest = corpus_hash(cfg)
    if not force and rundir.is_up_to_date(out, digest):
        distributed.print_main(f"stage 0 (corpus): {out} is up to date")
        return out
    partial = cfg.run_dir / ".corpus.partial"
    distributed.print_main(f"stage 0 (corpus): preparing {describe_source(cfg.data)} corpus '{cfg.data.source}' -> {out}"
                           + (f" in {distributed.world_size()} processes" if distributed.world_size() > 1 else ""))
    distributed.on_main(rundir.prepare_partial, partial, digest, "corpus", force)
    start = time.monotonic()
    for split in SPLITS:
        build_split(cfg.data, split, partial, progress=distributed.is_main())
    distributed.wait()
    seconds = time.monotonic() - start
    if not distributed.is_main():
        return out
    report = {split: split_report(partial, split) for split in SPLITS}
    for split in SPLITS:
        check_split(cfg.data, split, report[split])
    hours = {split: round(report[split]["seconds"] / 3600, 4) for split in SPLITS}
    disk = shards.disk_bytes(partial)
    mb_per_hour = disk / 2**20 / max(sum(hours.values()), 1e-9)
    rundir.finish_partial(partial, out, digest, stage="corpus", sample_rate=cfg.data.sample_rate, counts=report,
                          hours=hours, disk_bytes=disk, disk_mb_per_hour=round(mb_per_hour, 2),
                          build_seconds=round(seconds, 2), processes=distributed.world_size())
    rundir.write_resolved_config(cfg, cfg.run_dir)
    for split, counts in report.items():
        cut = f", {counts['segmented']} long files cut at silences" if counts["segmented"] else ""
        print(f"  {split}: {counts['kept']} clips ({hours[split]:.2f} h) kept{cut}; dropped {counts['too short']} too short, "
              f"{counts['too long']} too long, {counts['silent']} silent, {counts['unreadable']} unreadable")
    print(f"  disk: {disk / 2**20:.1f} MB ({mb_per_hour:.1f} MB per hour of audio, 16-bit FLAC)")
    return out


def load(cfg: PipelineConfig) -> datasets.DatasetDict:
    out = corpus_dir(cfg)
    if rundir.read_marker(out) is None:
        raise FileNotFoundError(f"{out}: no corpus yet; run stage 0 first (make stage-0)")
    return shards.load_splits(out, SPLITS)
