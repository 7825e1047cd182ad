"""The command-line shell shared by every stage: `--pipeline`, `--force`, `key=value` overrides,
and one-line errors (no traceback) for the mistakes a user can fix."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from audiolm.audio import AudioError
from audiolm.config import ConfigError, load_config
from audiolm.train import distributed

USER_ERRORS = (ConfigError, AudioError, OSError, ValueError)  # OSError: also a full disk or a read-only folder


def stage_main(run: Callable[..., Path], description: str, argv: list[str] | None = None,
               options: dict[str, dict[str, Any]] | None = None) -> int:
    """`options`: a stage's own flags (argparse keyword arguments), passed to `run` by their dest."""
    parser = argparse.ArgumentParser(description=description)
    for flag, spec in (options or {}).items():
        parser.add_argument(flag, **spec)
    parser.add_argument("--pipeline", default="pipelines/demo.yaml", help="pipeline YAML (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="redo the stage even if its output is up to date")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. semantic.num_clusters=200")
    args = parser.parse_args(argv)
    distributed.die_with_launcher()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    datasets.disable_progress_bars()  # our own bars say what is happening; its per-shard bars only add noise
    cfg = None
    try:
        cfg = load_config(args.pipeline, args.overrides)
        dests = [spec.get("dest", flag.lstrip("-").replace("-", "_")) for flag, spec in (options or {}).items()]
        run(cfg, args.force, **{d: getattr(args, d) for d in dests})
    except USER_ERRORS as err:
        if isinstance(err, OSError) and not err.filename and err.strerror and cfg is not None:
            # e.g. Arrow's ENOSPC names no file: say where the stage was writing, and that it can resume
            err = f"cannot write under {cfg.run_dir}: {err.strerror}; finished outputs are intact, rerun to resume"
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
