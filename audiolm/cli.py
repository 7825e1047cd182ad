"""`audiolm` console script: one-off use of trained components on audio files.

    audiolm tokenize semantic --model runs/demo/semantic IN.wav [IN2.wav ...] -o OUTDIR

Bad input files are reported one line each (file and problem) and the command exits
non-zero; the files that were fine are still written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from audiolm import audio


def _tokenize_semantic(args: argparse.Namespace) -> int:
    from audiolm.semantic.tokenizer import SemanticTokenizer

    try:
        tokenizer = SemanticTokenizer.from_pretrained(args.model)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.output)
    failed = 0
    for path in args.inputs:
        try:
            wav, _ = audio.load(path, tokenizer.sample_rate)
            (ids,) = tokenizer.encode([wav])
            if ids.size == 0:
                raise audio.AudioError(path, "audio too short for a single token frame")
        except audio.AudioError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{Path(path).stem}.npy"
        tmp = target.with_name(f".{target.name}.tmp.npy")
        np.save(tmp, ids.astype(np.int64))
        tmp.replace(target)
        print(f"{path} -> {target} ({ids.size} tokens at {tokenizer.frame_rate:g} Hz)")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audiolm", description="Token-based audio language model pipeline.")
    commands = parser.add_subparsers(dest="command", required=True)
    tokenize = commands.add_parser("tokenize", help="audio files -> token ids (.npy)")
    kinds = tokenize.add_subparsers(dest="kind", required=True)
    semantic = kinds.add_parser("semantic", help="semantic token ids, one int64 row per file")
    semantic.add_argument("--model", required=True, help="semantic tokenizer folder (e.g. runs/demo/semantic)")
    semantic.add_argument("inputs", nargs="+", metavar="IN.wav")
    semantic.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    semantic.set_defaults(func=_tokenize_semantic)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
