"""`make gpu-check` (benchmarks/gpu_check.py): one line and exit 0 on a machine without a GPU, and its
whole code path run here with the device forced to the CPU at toy sizes, on a copy of the tiny run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import torch

from benchmarks import gpu_check
from tests.conftest import REPO


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0():
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU"), done.stdout


def test_the_watch_names_a_module_that_runs_off_the_device():
    layer = torch.nn.Linear(2, 2)
    with gpu_check.DeviceWatch("cuda") as watch:
        layer(torch.zeros(1, 2))
    assert watch.elsewhere == {"Linear": 1} and not watch.on
    with gpu_check.DeviceWatch("cpu") as watch:
        layer(torch.zeros(1, 2))
    assert watch.on == {"Linear": 1} and not watch.elsewhere


def test_the_check_on_the_cpu_at_toy_sizes(tiny_continuations, tmp_path, capsys):
    """Stages 0-4 (up to date on the copy: seconds), the throughput figures, an LM step and the
    continuation's real-time factor, every module watched on the device it was given."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_continuations.run_dir, runs / "tiny", symlinks=True)
    out = tmp_path / "gpu-check.json"
    assert gpu_check.main(["--device", "cpu", "--small", "--work", str(runs), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["failures"] == [] and report["modules_elsewhere"] == {} and report["modules_on_device"] > 100
    assert set(report["pipeline_seconds"]) == {f"stage {i}" for i in range(5)}
    for key in ("stage1_hours_per_s", "stage2_hours_per_s", "lm_tokens_per_s", "lm_mfu_vs_matmul",
                "continuation_x_realtime_batch1", "continuation_x_realtime_batch8"):
        assert report[key] > 0, key
    printed = capsys.readouterr().out
    assert "lm_mfu_vs_790" in printed and "continuation_x_realtime_batch8" in printed
