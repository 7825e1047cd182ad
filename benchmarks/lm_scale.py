"""Stage 3 on token tables of 1, 100 and 1,000 hours: start-up, memory and step time must not grow
with the number of tokens.

    python -m benchmarks.lm_scale [--hours 1 100 1000] [--steps 20] [--out runs/bench-lm-scale] [--json OUT.json]

Real token rows (stages 0-2 of pipelines/tiny.yaml, made here) are repeated under new ids up to each
size (no audio needed) and written as the sharded token and code tables stage 3 reads. For each size,
stage 3's coarse LM (the demo's size: its rows are the largest, codes) trains `--steps` steps in a
process of its own, 1 torch thread: seconds from the process' start to its first training step,
peak resident memory (all of it, and its anonymous part sampled), wall seconds. Then, in this
process at the largest size, seconds per step through the real data path (windows read from the
memory-mapped table) against the same steps on one batch held in memory.

Checks of issue 28: at the largest size, start-up <= 30 s; peak memory <= 1.2 x the smallest size's
+ 300 MB; steps on the real data path within 1.1 x the held batch's. The memory check is on the
resident total and on its anonymous part (heap, tensors): the total also counts the pages of the
memory-mapped table that windows and the start-up statistics have read (with the kernel's
read-around, 64 KB or more each), page cache that grows with the part of the table touched and that
the kernel takes back under pressure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets.table import InMemoryTable

from audiolm.config import load_config
from audiolm.data import shards
from audiolm.pipeline import codec_stage, corpus_stage, lm_stage, semantic_stage
from audiolm.train.trainer import Trainer
from benchmarks.scale import measured

REPO = Path(__file__).resolve().parent.parent
# the demo's coarse LM (pipelines/demo.yaml) on the tiny run's tokens: a step costs what a real one does
COARSE = ["lm.coarse.dim=128", "lm.coarse.layers=4", "lm.coarse.heads=4", "lm.coarse.window_seconds=3.0",
          "lm.coarse.train.batch_size=16", "lm.coarse.train.eval_every=100000", "lm.coarse.train.checkpoint_every=100000"]
SHARD_ROWS = 50_000  # rows per written shard


def base_run(out: Path) -> Path:
    """Stages 0-2 of the tiny pipeline: the real token rows to repeat."""
    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={out / 'base'}"])
    corpus_stage.run(cfg)
    semantic_stage.run(cfg)
    codec_stage.run(cfg)
    return cfg.run_dir


def repeated_tables(base: Path, hours: float, out: Path) -> Path:
    """A run folder whose training tokens and codes are the base run's, repeated to `hours` of audio
    under new ids (held-out rows as they are)."""
    run = out / f"h{hours:g}" / "tiny"
    if (run / "acoustic" / "stage.json").exists():
        return run
    shutil.rmtree(run, ignore_errors=True)
    for part in ("tokens", "acoustic"):
        table = shards.load_splits(base / part)
        train = table["train"].data.table
        seconds = sum(shards.load_split(base / "tokens", "train")["duration"])
        copies = max(1, round(hours * 3600 / seconds))
        per_shard = max(1, SHARD_ROWS // train.num_rows)
        ids = np.asarray(train.column("id").to_pylist(), dtype=object)
        for index, first in enumerate(range(0, copies, per_shard)):
            count = min(per_shard, copies - first)
            block = pa.concat_tables([train] * count).combine_chunks()  # one record batch, as stage 1 writes
            new_ids = [f"{i}~{first + k}" for k in range(count) for i in ids]
            block = block.set_column(block.schema.get_field_index("id"), "id", pa.array(new_ids))
            shards.write_shard(shards.shard_path(run / part, "train", index), datasets.Dataset(InMemoryTable(block)))
        shutil.copytree(base / part / "heldout", run / part / "heldout")
        shutil.copy(base / part / "stage.json", run / part / "stage.json")
    return run


def stage3(runs: Path, steps: int) -> dict:
    """The coarse LM's stage 3 in a process of its own: start-up, wall seconds, peak memory."""
    shutil.rmtree(runs / "tiny" / "lm-coarse-train", ignore_errors=True)  # --force alone resumes its checkpoints
    command = [sys.executable, "-m", "stages.stage3_lm", "--pipeline", "pipelines/tiny.yaml", "--task", "coarse",
               "--force", f"runs_dir={runs}", f"lm.coarse.train.steps={steps}", *COARSE]
    seconds, peak, anonymous = measured(command, runs / "stage3.log")
    marker = json.loads((runs / "tiny" / "lm-coarse" / "stage.json").read_text())
    return {"seconds": seconds, "startup_seconds": marker["startup_seconds"], "peak_mb": peak, "anonymous_mb": anonymous}


class HeldBatch:
    """A task whose every batch is the one given (the baseline: no data path at all)."""

    def __init__(self, task, batch):
        self.task, self.held, self.models = task, batch, task.models

    def batch(self, step, micro, rank=0, world=1):
        return self.held

    def step(self, batch, step, update):
        return self.task.step(batch, step, update)

    def evaluate(self):
        return {"loss": 0.0}


def step_seconds(runs: Path, steps: int) -> tuple[float, float]:
    """Seconds per step of the coarse LM through the real data path, and on one held batch."""
    torch.set_num_threads(1)
    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={runs}", *COARSE, f"lm.coarse.train.steps={steps}"])
    ds, marker = lm_stage.read_tokens(cfg)
    train = lm_stage.utterances(ds["train"])
    spec = lm_stage.task_spec(cfg, "coarse", marker, train)
    out = []
    for held in (False, True):
        torch.manual_seed(0)
        model = lm_stage.build_model(spec, cfg.lm.coarse, cfg.lm.ordinal_pitch)
        task = lm_stage.LMTask(model, spec, cfg.lm.coarse.train, train, [], lm_stage.speaker_codes(ds["train"]))
        task.evaluate = lambda: {"loss": 0.0}
        if held:
            task = HeldBatch(task, task.batch(0, 0))
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(task, cfg.lm.coarse.train, Path(folder), betas=(0.9, 0.95))
            start = time.monotonic()
            trainer.fit()
            out.append((time.monotonic() - start) / steps)
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 100.0, 1000.0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-lm-scale")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = base_run(args.out)
    results = []
    for hours in args.hours:
        run = repeated_tables(base, hours, args.out)
        figures = stage3(run.parent, args.steps)
        disk = sum(shards.disk_bytes(run / part) for part in ("tokens", "acoustic")) / 2**20
        results.append({"hours": hours, "table_mb": disk, **figures})
        print(f"{hours:>7g} h of tokens ({disk:,.0f} MB): start-up {figures['startup_seconds']:.1f} s, "
              f"{figures['seconds']:.1f} s in all, peak {figures['peak_mb']:.0f} MB ({figures['anonymous_mb']:.0f} MB anonymous)",
              flush=True)
    real, held = step_seconds(run.parent, args.steps)
    print(f"{args.hours[-1]:g} h: {real * 1000:.1f} ms per step on the real data path, {held * 1000:.1f} ms on a held batch")
    small, large = results[0], results[-1]
    checks = [(f"start-up at {large['hours']:g} h {large['startup_seconds']:.1f} s <= 30 s", large["startup_seconds"] <= 30)]
    for key, what in (("peak_mb", "peak resident"), ("anonymous_mb", "anonymous peak")):
        checks.append((f"{what} {large[key]:.0f} MB <= 1.2 x {small[key]:.0f} + 300", large[key] <= 1.2 * small[key] + 300))
    checks.append((f"a step on the real data path {real / held:.2f} x a held batch's (<= 1.1)", real <= 1.1 * held))
    for line, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {line}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "real_step_seconds": real, "held_step_seconds": held,
                                         "checks": [{"check": c, "ok": ok} for c, ok in checks]}, indent=2) + "\n")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
