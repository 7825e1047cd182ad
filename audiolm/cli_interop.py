"""The `audiolm` commands that bring released models in and hand ours out (docs/pretrained.md):
import-kmeans, import-lm, export."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def _import_kmeans(args: argparse.Namespace) -> int:
    from audiolm.interop.joblib_kmeans import import_kmeans

    tokenizer = import_kmeans(args.kmeans, args.encoder, args.layer, args.revision or "", args.device)
    tokenizer.save_pretrained(args.output)
    c = tokenizer.config
    print(f"{args.kmeans} -> {args.output} (a semantic tokenizer: {c.model} block {c.layer}, K={c.num_clusters}, "
          f"{c.frame_rate:g} Hz; read without running the pickle)")
    return 0


def _mean_run(folder: Path) -> float | None:
    """The mean run of the units in a run's token table (stage 1), or None without one."""
    if not (folder / "tokens").is_dir():
        return None
    from audiolm.data.shards import load_split
    from audiolm.lm.sequences import mean_run_length

    table = load_split(folder / "tokens", "train").with_format("numpy")
    return mean_run_length(list(table.select(range(min(len(table), 2000)))["semantic"]))


def _import_lm(args: argparse.Namespace) -> int:
    from audiolm.interop.language_models import write_reference
    from audiolm.semantic.tokenizer import SemanticTokenizer

    out = Path(args.output)
    own = out / "semantic"
    if args.tokenizer and own.exists():
        raise ValueError(f"{own}: {out} has a semantic tokenizer already; leave out --tokenizer to use it")
    if not args.tokenizer and not own.is_dir():
        raise FileNotFoundError(f"{out}: no semantic/ tokenizer; give --tokenizer (e.g. one made by import-kmeans)")
    tokenizer = SemanticTokenizer.from_pretrained(args.tokenizer or own)  # checked before anything is written
    mean_run = args.mean_run or _mean_run(out) or 1.0
    # the model is loaded (and refused, if it is not a unit LM) before the tokenizer is copied
    lm = write_reference(out / "lm-semantic", args.model, tokenizer.num_clusters, tokenizer.frame_rate, args.revision or "",
                         dedup=not args.no_dedup, mean_run=mean_run, context=args.context)
    if args.tokenizer:
        tokenizer.save_pretrained(own)
    bos = f"BOS {lm.ids.bos}" if lm.ids.bos is not None else "no BOS"
    repeats = "with repeats" if args.no_dedup else f"deduplicated, mean run {mean_run:.2f}"
    print(f"{args.model} -> {out / 'lm-semantic'} ({lm.ids.layout} layout: unit u is id u + {lm.ids.offset}, {bos}; "
          f"{lm.num_parameters() / 1e6:.1f}M parameters, {tokenizer.num_clusters} units, {repeats})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from audiolm.interop.export import compare
    from audiolm.pipeline import share

    out = share.save(args.run, args.output, args.repo_id)
    worst = 0.0
    for lm in sorted(p for p in out.iterdir() if p.name.startswith("lm-")):
        if "released" in json.loads((lm / "config.json").read_text()):
            print(f"{lm.name}: a reference to a released model, not ours to export")
            continue
        r = compare(lm)
        worst = max(worst, r["max_abs_diff"])
        what = "the whole model" if r["kind"] == "exact" else "the trunk; inputs_embeds per docs/pretrained.md, depth head apart"
        print(f"{lm.name}: {r['class']} ({what}); logits vs ours: max abs difference {r['max_abs_diff']:.2e}")
    print(f"{args.run} -> {out} (AutoModelForCausalLM.from_pretrained('{out}/lm-semantic'); every audiolm --model takes {out})")
    if worst > args.tolerance:
        raise ValueError(f"{out}: a stock model's logits differ from ours by {worst:.2e} (more than {args.tolerance:g})")
    return 0


def add_commands(commands: argparse._SubParsersAction, device_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    km = commands.add_parser("import-kmeans", help="a textlesslib/slamkit k-means (joblib) -> a semantic tokenizer, "
                                                   "read without running the pickle")
    km.add_argument("kmeans", metavar="KM.bin", help="joblib.dump of a scikit-learn KMeans or MiniBatchKMeans")
    km.add_argument("--encoder", required=True, help="the speech encoder it was fitted on (Hub id or folder), "
                                                     "e.g. slprl/mhubert-base-25hz")
    km.add_argument("--layer", type=int, required=True, help="its block whose output was clustered (e.g. 11)")
    km.add_argument("--revision", default=None, help="the encoder's Hub revision")
    km.add_argument("-o", "--output", required=True, metavar="DIR")
    device_arg(km)
    km.set_defaults(func=_import_kmeans)
    lm = commands.add_parser("import-lm", help="a released unit LM (TWIST, SLAM) as the semantic LM of a model folder")
    lm.add_argument("model", metavar="MODEL", help="Hub id or folder: slamkit's UnitLM layout or a causal LM with `offset`")
    lm.add_argument("-o", "--output", required=True, metavar="DIR",
                    help="a model folder: its lm-semantic/ is written (a run's own semantic LM is replaced)")
    lm.add_argument("--tokenizer", default=None, help="the units' tokenizer (import-kmeans), copied to DIR/semantic "
                                                      "(default: DIR's own)")
    lm.add_argument("--revision", default=None, help="the model's Hub revision")
    lm.add_argument("--no-dedup", action="store_true", help="the LM reads units with their repeats (TWIST and SLAM do not)")
    lm.add_argument("--context", type=int, default=1024, help="ids per window (default: %(default)s, SLAM's training length)")
    lm.add_argument("--mean-run", type=float, default=None,
                    help="frames per deduplicated unit, to re-expand generated units (default: DIR's token table's, else 1)")
    lm.set_defaults(func=_import_lm)
    export = commands.add_parser("export", help="a run as a bundle whose LMs are stock transformers LlamaForCausalLM "
                                                "folders, each checked against ours")
    export.add_argument("run", metavar="RUN_DIR")
    export.add_argument("-o", "--output", required=True, metavar="DIR")
    export.add_argument("--repo-id", default="REPO_ID", help="the id the model card's usage snippet shows")
    export.add_argument("--tolerance", type=float, default=1e-4, help="largest logit difference accepted (fp32)")
    export.set_defaults(func=_export)
