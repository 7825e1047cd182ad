"""Shared fixtures: small real audio made here (eSpeak NG), and one tiny pipeline run per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolm.config import load_config

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked `network` need the Hugging Face Hub: they run only with AUDIOLM_TEST_NETWORK=1."""
    if os.environ.get("AUDIOLM_TEST_NETWORK") == "1":
        return
    skip = pytest.mark.skip(reason="needs the Hugging Face Hub; set AUDIOLM_TEST_NETWORK=1 to run")
    for item in items:
        if "network" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """About 2 s of synthesized speech at eSpeak NG's native rate (22.05 kHz)."""
    from audiolm.data.demo import VOICES
    from audiolm.data.espeak import Synthesizer

    out = Synthesizer.get().speak("The old river garden was quiet this morning.", VOICES[0])
    return out.wav, out.sample_rate


@pytest.fixture
def speech_wav(tmp_path, speech) -> Path:
    wav, rate = speech
    path = tmp_path / "speech.wav"
    sf.write(path, wav, rate)
    return path


@pytest.fixture
def bad_audio_files(tmp_path, speech_wav) -> list[tuple[Path, str]]:
    """(file, the problem its error must name): a corrupt wav, an empty wav, a text file named .wav,
    and a path that does not exist."""
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(speech_wav.read_bytes()[:40])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    return [(corrupt, "not a readable audio file"), (empty, "empty audio"), (text, "not a readable audio file"),
            (tmp_path / "missing.wav", "no such file")]


def run_cli(*args) -> subprocess.CompletedProcess:
    """`audiolm ARGS...` in a fresh process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "audiolm.cli", *map(str, args)], cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Stages 0 and 1 of pipelines/tiny.yaml in a temporary runs folder; returns the config."""
    from audiolm.pipeline import corpus_stage, semantic_stage

    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={runs}"])
    corpus_stage.run(cfg)
    semantic_stage.run(cfg)
    return cfg


@pytest.fixture(scope="session")
def tiny_continuations(tiny_run):
    """Stages 2-4 of pipelines/tiny.yaml on top of `tiny_run`; returns the config."""
    from audiolm.pipeline import codec_stage, continue_stage, lm_stage

    codec_stage.run(tiny_run)
    lm_stage.run(tiny_run)
    continue_stage.run(tiny_run)
    return tiny_run


@pytest.fixture(scope="module")
def served(tiny_continuations):
    """`audiolm serve` of the tiny run on a free local port: (url, gradio Blocks)."""
    import socket

    from audiolm import web

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    blocks = web.serve(str(tiny_continuations.run_dir), port=port, block=False)
    yield blocks.local_url, blocks
    blocks.close()
