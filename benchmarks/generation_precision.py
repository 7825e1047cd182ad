"""What the low-precision generation copies (`Decoder.prepare_generation`: fp16 or int8 weights) cost
in quality: each of a trained run's audio LMs' held-out perplexity (stage 3's windows and loss)
with its fp32 weights, then computed through each kind of copy (their speed: `make bench`).

The copies serve only batches of up to `MATVEC_ROWS` rows (generation); for this measurement the
limit is lifted: the held-out windows then go through the copies in one forward each, which is
what generating them token by token computes, up to rounding.

    python -m benchmarks.generation_precision [--run runs/demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from audiolm.config import load_config
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TASKS
from audiolm.pipeline import rundir
from audiolm.pipeline.lm_stage import read_tokens, task_spec, utterances
from audiolm.train.lm_task import LMTask


def heldout_perplexity(model: Decoder, task: LMTask, kind: str | None) -> float:
    """Stage 3's held-out perplexity, through the `kind` copies (None: the fp32 weights)."""
    if kind is not None:
        model.prepare_generation(kind, max_rows=1 << 30)  # every batch through the copies
    task.models["lm"] = model
    return task.evaluate()["perplexity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    args = parser.parse_args()
    cfg = load_config(args.run / "config.yaml")
    ds, marker = read_tokens(cfg)
    train = utterances(ds["train"])
    heldout = list(utterances(ds["heldout"], rundir.spread_indices(ds["heldout"].num_rows, cfg.lm.eval_utterances)))
    print(f"held-out perplexity of {args.run}'s LMs ({len(heldout)} utterances), torch threads {torch.get_num_threads()}")
    print("| LM | fp32 weights | fp16 copies | int8 copies |\n|---|---|---|---|")
    for name in TASKS:
        folder = args.run / f"lm-{name}"
        if not folder.exists():
            continue
        model = Decoder.from_pretrained(folder).eval()
        task = LMTask(model, task_spec(cfg, name, marker, train), getattr(cfg.lm, name).train, train, heldout)
        with torch.no_grad():
            figures = [heldout_perplexity(model, task, kind) for kind in (None, "fp16", "int8")]
        print(f"| {name} | " + " | ".join(f"{p:.5f}" for p in figures) + " |")


if __name__ == "__main__":
    main()
