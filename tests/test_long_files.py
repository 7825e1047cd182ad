"""LibriLight's kind of corpus through every stage: a folder of 15-minute untranscribed FLAC files
(`speaker/book/file.flac`, made here with eSpeak NG), with the tiny pipeline's models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiolm.config import load_config
from audiolm.data import shards
from audiolm.data.audiobooks import write_audiobooks
from audiolm.pipeline import codec_stage, continue_stage, corpus_stage, lm_stage, rundir, semantic_stage

from .conftest import REPO


@pytest.mark.slow  # 100 s on 2 cores (45 minutes of audio made and pushed through every stage)
def test_fifteen_minute_untranscribed_files_run_through_stages_0_to_4(tmp_path, capsys):
    books = tmp_path / "books"
    # three readers; at this held-out fraction the file of reader 1001 is held out (by the hash of its id)
    write_audiobooks(books, speakers=3, minutes=15)
    cfg = load_config(REPO / "pipelines" / "tiny.yaml",
                      [f"runs_dir={tmp_path / 'runs'}", f"data.source={books}", "data.heldout_fraction=0.55"])
    corpus_stage.run(cfg)
    marker = rundir.read_marker(cfg.run_dir / "corpus")
    assert marker["counts"]["train"]["segmented"] == 2 and marker["counts"]["heldout"]["segmented"] == 1
    assert abs(marker["hours"]["train"] - 0.5) < 0.01 and abs(marker["hours"]["heldout"] - 0.25) < 0.01
    source = sum(p.stat().st_size for p in books.rglob("*.flac"))
    assert marker["disk_bytes"] < 1.2 * source  # 16-bit FLAC, about the source's size
    corpus = corpus_stage.load(cfg)
    assert max(corpus["train"]["duration"]) <= cfg.data.max_seconds and set(corpus["heldout"]["speaker"]) == {"1001"}

    semantic_stage.run(cfg)
    out = capsys.readouterr().out
    assert "the corpus has no text" in out and not (cfg.run_dir / "text").exists()
    codec_stage.run(cfg)
    tokens, info = lm_stage.read_tokens(cfg)
    assert tokens["train"].features["semantic"].feature.dtype == "uint8"  # K=32
    assert tokens["train"].features["acoustic_codes"].feature.feature.dtype == "uint8"  # 64 codes a codebook
    row = tokens["heldout"][3]
    assert abs(len(row["semantic"]) - row["duration"] * 50) <= 2 and np.asarray(row["acoustic_codes"]).shape[0] == 4

    lm_stage.run(cfg)  # tiny.yaml asks for the text LMs too: skipped, said once
    out = capsys.readouterr().out
    assert out.count("the corpus has no text") == 1 and not (cfg.run_dir / "lm-reading").exists()
    continue_stage.run(cfg)
    results = json.loads((cfg.run_dir / "continuations" / "results.json").read_text())
    assert results["prompts"] == cfg.continuation.prompts and (cfg.run_dir / "report.html").exists()
    assert not (cfg.run_dir / "text-eval").exists()
    assert len(list((cfg.run_dir / "continuations").glob("*.continuation.wav"))) == cfg.continuation.prompts
    assert shards.is_sharded(cfg.run_dir / "acoustic")
