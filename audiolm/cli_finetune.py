"""`audiolm finetune`: adapt a shared model to new data, in full or with LoRA (docs/finetune.md)."""

from __future__ import annotations

import argparse


def _finetune(args: argparse.Namespace) -> int:
    import datasets

    from audiolm.pipeline import finetune

    datasets.disable_progress_bars()  # our own bars say what is happening; its per-shard bars only add noise
    parts = [p.strip() for p in args.parts.split(",") if p.strip()] if args.parts else None
    cfg = finetune.finetune_config(args.bundle, args.data, args.output, parts, args.lora, args.steps, args.minutes,
                                   args.lr, args.overrides)
    markers = finetune.run(cfg)
    print(f"finetune: {args.bundle} adapted on {args.data} -> {cfg.run_dir} (held-out perplexity per LM)")
    print(finetune.table(markers))
    print(f"use it like any model: audiolm continue PROMPT.wav --model {cfg.run_dir} -o OUT.wav; audiolm save "
          f"{cfg.run_dir} DIR writes it merged, standalone")
    return 0


def add_commands(commands: argparse._SubParsersAction) -> None:
    ft = commands.add_parser("finetune", help="adapt a shared model (run folder, bundle or Hub id) to new audio, in full "
                                              "or with LoRA adapters")
    ft.add_argument("bundle", metavar="BUNDLE", help="the model to start from: a run folder, a saved bundle or a Hub id")
    ft.add_argument("--data", required=True, metavar="SOURCE",
                    help="what stage 0 takes: a folder of audio, a manifest (.csv/.tsv/.jsonl) or a Hub dataset id")
    ft.add_argument("-o", "--output", required=True, metavar="RUN", help="the new run folder (rerun to resume)")
    # spelled out, not imported: `audiolm --help` does not import torch
    ft.add_argument("--parts", default=None, help="comma-separated, of codec, semantic, coarse, fine (default: "
                                                  "coarse,fine; codec = its decoder)")
    ft.add_argument("--lora", type=int, default=0, metavar="R", help="train rank-R LoRA adapters of the LMs instead "
                                                                     "of all their weights (saved small, beside a "
                                                                     "reference to BUNDLE)")
    ft.add_argument("--steps", type=int, default=200, help="steps per trained part (default: %(default)s)")
    ft.add_argument("--minutes", type=float, default=4.0,
                    help="wall-time budget shared by the trained parts; the cosine ends in time (default: %(default)s)")
    ft.add_argument("--lr", type=float, default=0.0, help="learning rate (default: a quarter of each part's own; "
                                                          "with --lora, its own)")
    ft.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                    help="pipeline config keys, e.g. --set lm.coarse.train.batch_size=8 data.heldout_fraction=0.1")
    ft.set_defaults(func=_finetune)
