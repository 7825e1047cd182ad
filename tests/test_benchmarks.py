"""The benchmark runner works end to end and writes the documented JSON (the figures themselves
are measured by `make bench`, not asserted here: a timed unit test could only be flaky)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_runner_writes_flat_figures_with_same_run_baselines(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", "machine", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert {f["name"] for f in figures} == {"matmul_peak_gflops", "memory_bandwidth_gb_s", "peak_rss_mb_machine"}
    for f in figures:
        assert set(f) == {"name", "value", "unit", "baseline", "ratio"} and f["value"] > 0
        if f["baseline"] is not None:
            assert abs(f["ratio"] - f["value"] / f["baseline"]) < 1e-9
    assert "matmul_peak_gflops" in result.stdout  # the printed table


@pytest.mark.slow  # ~28 s on 2 slow cores: make test stays under 10 min
def test_stage1_benchmark_follows_the_demo_config(tmp_path):
    """The tokenize group builds the demo's stage-1 tokenizer from pipelines/demo.yaml: when the
    demo's semantic settings change, this is what notices (it once failed on backend 'trained')."""
    out = tmp_path / "figures.json"
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--only", "tokenize", "--json", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = {f["name"]: f for f in json.loads(out.read_text())}
    stage1 = figures["semantic_tokenize_audio_s_per_s_demo"]
    assert stage1["value"] > 1 and stage1["baseline"] > 1 and "53 phone units" in stage1["unit"]
    assert figures["stage2_tokenize_audio_s_per_s_demo"]["value"] > 1
