"""How far half precision moves a run's semantic ids: the held-out utterances tokenized with the
encoder's forward in fp32, then in bf16 and fp16 autocast (`semantic.precision`), and the share of
frames whose id is the same.

    python -m benchmarks.semantic_precision --run runs/demo [--device cpu] [--utterances 200] [--json OUT]

The run's tokenizer must have a speech encoder (`semantic.backend` ssl or trained); a spectral front
end has no forward to run in half precision. On a CPU without native bf16 the half-precision passes
are emulated (slow, and the same numbers).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from audiolm.data import shards
from audiolm.data.corpus import read_wavs
from audiolm.pipeline import rundir
from audiolm.semantic.tokenizer import SemanticTokenizer


def agreement(run: Path, device: str, utterances: int) -> dict:
    corpus = run / "corpus"
    rate = rundir.read_marker(corpus)["sample_rate"]
    heldout = shards.load_split(corpus, "heldout")
    rows = rundir.spread_indices(heldout.num_rows, utterances)
    result: dict = {"utterances": len(rows)}
    ids = {}
    for precision in ("fp32", "bf16", "fp16"):
        tokenizer = SemanticTokenizer.from_pretrained(run / "semantic", device=device, precision=precision)
        if not hasattr(tokenizer.features, "frames_on_device"):
            raise SystemExit(f"{run}/semantic: a spectral front end ({tokenizer.config.backend}); nothing runs in half precision")
        wavs = read_wavs(heldout, rows, rate, tokenizer.sample_rate)
        start = time.perf_counter()
        ids[precision] = np.concatenate([i for j in range(0, len(wavs), 16) for i in tokenizer.encode(wavs[j : j + 16])])
        result[f"{precision}_seconds"] = round(time.perf_counter() - start, 2)
    result["frames"] = int(len(ids["fp32"]))
    for precision in ("bf16", "fp16"):
        result[f"{precision}_same_ids"] = float((ids[precision] == ids["fp32"]).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = agreement(Path(args.run), args.device, args.utterances)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
