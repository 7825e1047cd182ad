"""Every stage, SIGKILLed at random points several times and rerun, ends with the outputs of an
uninterrupted run: same corpus, token ids, codes and weights bit for bit, same continuations
(slow: `make test-slow`). No half-written file is ever left under a name a later stage reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiolm.data import shards
from tests.conftest import REPO

STAGES = ["stage0_corpus", "stage1_semantic", "stage2_codec", "stage3_lm", "stage4_continue"]
KILLS = 3


def _command(stage: str, runs: Path) -> list[str]:
    return [sys.executable, "-m", f"stages.{stage}", "--pipeline", "pipelines/tiny.yaml", f"runs_dir={runs}"]


def _run(stage: str, runs: Path) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(_command(stage, runs), cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return time.monotonic() - start, result.stdout


def _finished_work(run: Path) -> dict[Path, tuple[int, int]]:
    """What a killed run had finished: checkpoints, token shards, continuation wavs (inode, mtime)."""
    files = [p for pattern in ("**/checkpoints/**/*.safetensors", "**/*partial*/**/*.arrow", "continuations/*.wav")
             for p in run.glob(pattern)]
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def _killed(stage: str, runs: Path, after: float) -> bool:
    """Start the stage, SIGKILL it after `after` seconds; False if it finished first."""
    process = subprocess.Popen(_command(stage, runs), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        return True


def _tables(folder: Path) -> dict:
    ds = shards.load_splits(folder)
    return {split: ds[split].to_dict() for split in ds}


def _same_files(a: Path, b: Path, pattern: str) -> None:
    names = sorted(p.relative_to(a) for p in a.glob(pattern))
    assert names and names == sorted(p.relative_to(b) for p in b.glob(pattern)), pattern
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _no_temporaries(run: Path) -> None:
    leftovers = [p for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith(".") and p.is_dir()]
    assert not [p for p in leftovers if "partial" not in str(p)], leftovers


@pytest.mark.slow
def test_every_stage_killed_at_random_points_resumes_to_the_same_outputs(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    rng = np.random.default_rng(0)
    kills = {}
    reused = {}
    for stage in STAGES:
        seconds, _ = _run(stage, reference)
        kills[stage] = 0
        for _ in range(KILLS):  # at random points of what an uninterrupted run takes (imports included)
            kills[stage] += _killed(stage, interrupted, after=float(rng.uniform(0.2, 0.6)) * seconds)
        finished = _finished_work(interrupted / "tiny")
        _run(stage, interrupted)
        _no_temporaries(interrupted / "tiny")
        for path, stamp in finished.items():  # finished work is reused, never written again
            assert not path.exists() or (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, path
        reused[stage] = sum(p.exists() for p in finished)
    print(f"SIGKILLs that hit a running stage: {kills}; finished files kept untouched by the rerun: {reused}")
    assert sum(kills.values()) >= len(STAGES) * 2, kills  # most runs really were killed mid-way

    ref, got = reference / "tiny", interrupted / "tiny"
    assert _tables(ref / "corpus") == _tables(got / "corpus")
    assert _tables(ref / "tokens") == _tables(got / "tokens")
    for part in ("semantic", "codec", "lm-semantic", "lm-coarse", "lm-fine"):
        _same_files(ref / part, got / part, "*.safetensors")
        assert (ref / part / "config.json").read_text() == (got / part / "config.json").read_text()
    _same_files(ref / "continuations", got / "continuations", "*.wav")
    timing = ("generation_real_time_factor",)
    results = [{k: v for k, v in json.loads((r / "continuations" / "results.json").read_text()).items() if k not in timing}
               for r in (ref, got)]
    assert results[0] == results[1]
