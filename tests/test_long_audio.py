"""A 30-minute recording through every command that reads audio: read in blocks, tokenized and
encoded in chunks, and only its end used as a prompt, in bounded memory (slow: `make test-slow`)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiolm.audio import resample
from tests.conftest import REPO

MINUTES = 30
RATE = 22050  # not the pipeline's rate: resampled on the way in


def _peak_rss_run(*args) -> tuple[subprocess.CompletedProcess, float]:
    """`audiolm ARGS` in a fresh process; also its peak resident memory in MB."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (pytest) through fork and exec.
    code = ("import re, runpy, sys\n"
            f"sys.argv = ['audiolm', *{[str(a) for a in args]!r}]\n"
            "try:\n    runpy.run_module('audiolm.cli', run_name='__main__')\n"
            "finally:\n    kb = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
            "    print(f'PEAK_RSS_MB {kb / 1024:.0f}', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    peak = float(result.stderr.rsplit("PEAK_RSS_MB ", 1)[1].split()[0])
    return result, peak


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory, speech):
    wav, rate = speech
    piece = resample(np.concatenate([wav, np.zeros(rate // 2, np.float32)]), rate, RATE)
    path = tmp_path_factory.mktemp("long") / "thirty minutes.wav"
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:  # written in pieces: never 30 min in memory
        written = 0
        while written < MINUTES * 60 * RATE:
            f.write(piece)
            written += len(piece)
    return path, written / RATE


@pytest.mark.slow
def test_a_thirty_minute_file_through_every_command(long_recording, tiny_continuations, tmp_path):
    path, seconds = long_recording
    run = tiny_continuations.run_dir
    result, tokenize_mb = _peak_rss_run("tokenize", "semantic", "--model", run / "semantic", path, "-o", tmp_path / "ids")
    assert result.returncode == 0, result.stderr
    ids = np.load(tmp_path / "ids" / "thirty minutes.npy")
    assert abs(len(ids) - seconds * 50) <= 2
    result, encode_mb = _peak_rss_run("encode", "--codec", run / "codec", path, "-o", tmp_path / "codes")
    assert result.returncode == 0, result.stderr
    codes = np.load(tmp_path / "codes" / "thirty minutes.npy")
    assert codes.shape[0] == 4 and abs(codes.shape[1] - seconds * 50) <= 1
    result, continue_mb = _peak_rss_run("continue", path, "-o", tmp_path / "out.wav", "--model", run, "--seconds", "1")
    assert result.returncode == 0, result.stderr
    assert abs(sf.info(tmp_path / "out.wav").duration - 1.0) <= 0.04
    # 30 minutes at 16 kHz are 115 MB of float32; the file's own samples are never all in memory at once
    print(f"peak RSS: tokenize {tokenize_mb:.0f} MB, encode {encode_mb:.0f} MB, continue {continue_mb:.0f} MB")
    assert max(tokenize_mb, encode_mb) < 1200 and continue_mb < 700
