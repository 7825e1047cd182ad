"""The benchmark runner works end to end and writes the documented JSON (the figures themselves
are measured by `make bench`, not asserted here: a timed unit test could only be flaky)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow  # ~9 s of measuring on 2 slow cores (make bench runs it anyway): make test stays under 10 min
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


def test_continuation_breakdown_accounts_for_the_whole_call(tiny_continuations):
    """Each part of the cascade is timed inside one real continuation; the parts and the Python
    left over add up to the call, and the wrappers are gone afterwards."""
    import numpy as np

    from audiolm.continuation import AudioLM
    from audiolm.lm import generate
    from benchmarks.breakdown import PARTS, continuation_breakdown

    model = AudioLM.from_pretrained(tiny_continuations.run_dir)
    rate = model.codec.sample_rate
    prompt = 0.1 * np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    sample_next, forward = generate.sample_next, model.models["coarse"].forward
    parts = continuation_breakdown(model, lambda: model.continue_speech(prompt, rate, 0.5))
    assert set(parts) == {*PARTS, "total"}
    for part in ("tokenize prompt", "semantic LM", "coarse LM", "fine LM", "sampling", "codec decode"):
        assert parts[part] > 0, part
    assert sum(parts[p] for p in PARTS) == pytest.approx(parts["total"])
    assert generate.sample_next is sample_next and "forward" not in vars(model.models["coarse"])
    assert model.models["coarse"].forward == forward
