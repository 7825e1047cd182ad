"""Every stage, SIGKILLed at random points several times and rerun, ends with the outputs of an
uninterrupted run: same corpus, token ids, codes and weights bit for bit, same continuations
(slow: `make test-slow`). No half-written file is ever left under a name a later stage reads. The
same for stages 0-2 run by two processes (`accelerate launch`), killed between shards."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiolm.config import load_config
from audiolm.data import shards
from audiolm.pipeline import codec_stage, corpus_stage, lm_stage, semantic_stage
from tests.conftest import REPO
from tests.test_distributed import checked
from tests.test_distributed import stage as launch

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


# 2 utterances a shard: a dozen shards a split or more, so a kill lands between shards of every stage
SMALL_SHARDS = ["data.shard_size=2"]
PARTIALS = {"stage0_corpus": ".corpus.partial", "stage1_semantic": ".tokens.partial", "stage2_codec": ".acoustic.partial"}


def _written_shards(folder: Path) -> int:
    return sum(len(shards.shard_paths(folder, split)) for split in ("train", "heldout"))


def _killed_after_shards(name: str, runs: Path, wanted: int) -> int:
    """Start stage `name` in two processes and SIGKILL the launcher and its workers once `wanted`
    shards are written; the number there at the kill."""
    process = launch(name, runs, *SMALL_SHARDS, processes=2, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = runs / "tiny" / PARTIALS[name]
    deadline = time.monotonic() + 600
    while _written_shards(partial) < wanted and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    alive = process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert alive, f"{name} ended before {wanted} shards were written"
    return _written_shards(partial)


@pytest.mark.slow
def test_stages_0_to_2_killed_in_two_processes_resume_to_the_table_of_one(tmp_path):
    """The reference encodes with the codec the two processes trained: two processes average their
    gradients in another order than one, so their codec's codes differ (its kills and resumes are the
    test above's; its two-process training, tests/test_distributed.py's)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    one = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tmp_path / 'one'}", *SMALL_SHARDS])
    corpus_stage.run(one)
    semantic_stage.run(one)
    total = _written_shards(one.run_dir / "tokens")
    assert total >= 12

    runs = tmp_path / "two"
    for name, partial in PARTIALS.items():
        at = _killed_after_shards(name, runs, rng.randrange(1, total // 2))
        assert 0 < at < total, (name, at, seed)
        checked(launch(name, runs, *SMALL_SHARDS, processes=2))
        assert not (runs / "tiny" / partial).exists(), name
    two = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={runs}", *SMALL_SHARDS])
    shutil.copytree(two.run_dir / "codec", one.run_dir / "codec")
    codec_stage.run(one)  # encodes only: the codec is up to date
    assert _tables(one.run_dir / "corpus") == _tables(two.run_dir / "corpus"), seed
    want, got = lm_stage.read_tokens(one)[0], lm_stage.read_tokens(two)[0]
    for split in want:
        assert got[split].to_dict() == want[split].to_dict(), (split, seed)
