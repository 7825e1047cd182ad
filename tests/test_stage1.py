"""Stages 0-1 end to end on pipelines/tiny.yaml (a few seconds)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from audiolm.config import load_config
from audiolm.data import shards
from audiolm.data.corpus import read_wavs, select_speakers, voice_groups
from audiolm.pipeline import corpus_stage, rundir, semantic_stage
from audiolm.semantic.metrics import voice_consistency
from audiolm.semantic.tokenizer import SemanticTokenizer

from .conftest import REPO


def test_token_dataset_is_complete(tiny_run):
    tokens = shards.load_splits(tiny_run.run_dir / "tokens")
    corpus = shards.load_splits(tiny_run.run_dir / "corpus")
    marker = rundir.read_marker(tiny_run.run_dir / "tokens")
    assert marker["semantic_frame_rate"] == 50.0 and marker["semantic_vocab_size"] == 32
    assert (tiny_run.run_dir / "tokens" / "config.yaml").exists()
    for split in ("train", "heldout"):
        assert tokens[split]["id"] == corpus[split]["id"]
        for row in tokens[split]:
            assert set(row) >= {"id", "speaker", "text", "duration", "semantic"}
            assert abs(len(row["semantic"]) - row["duration"] * 50) <= 2
            assert 0 <= min(row["semantic"]) and max(row["semantic"]) < 32
    # the saved tokenizer gives the same ids on the same audio
    tok = SemanticTokenizer.from_pretrained(tiny_run.run_dir / "semantic")
    (wav,) = read_wavs(corpus["heldout"], [0], 16000, 16000)
    assert tok.encode([wav])[0].tolist() == tokens["heldout"][0]["semantic"]


def test_tokens_follow_content_not_voice(tiny_run):
    held = shards.load_splits(tiny_run.run_dir / "tokens")["heldout"]
    vc = voice_consistency([np.asarray(x) for x in held["semantic"]], held["text"], held["speaker"])
    # measured 0.38 vs 0.72 on tiny; the demo pipeline gives 0.49 vs 0.84 (see docs/semantic.md)
    assert vc.same_text_other_voice + 0.15 < vc.other_text_same_voice


def test_rerun_is_up_to_date_and_override_invalidates(tiny_run, capsys):
    semantic_stage.run(tiny_run)
    assert "is up to date" in capsys.readouterr().out
    changed = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tiny_run.runs_dir}", "semantic.num_clusters=16"])
    assert semantic_stage.tokenizer_hash(changed) != semantic_stage.tokenizer_hash(tiny_run)
    assert not rundir.is_up_to_date(changed.run_dir / "semantic", semantic_stage.tokenizer_hash(changed))
    same = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tiny_run.runs_dir}", "semantic.device=cpu"])
    assert semantic_stage.tokenizer_hash(same) == semantic_stage.tokenizer_hash(tiny_run)


def test_killed_tokenization_resumes_and_reproduces(tiny_run, tmp_path, monkeypatch):
    """Kill stage 1 after its first shard; the rerun keeps that shard and ends with the same tokens."""
    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tmp_path}", "data.shard_size=8"])
    shutil.copytree(tiny_run.run_dir / "corpus", cfg.run_dir / "corpus")
    calls = {"n": 0}
    real = shards.write_shard

    def dying_write(final, table, info=None):
        if final.parent.parent.name == ".tokens.partial":
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
        return real(final, table, info)

    monkeypatch.setattr(shards, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        semantic_stage.run(cfg)
    partial = cfg.run_dir / ".tokens.partial"
    assert shards.shard_paths(partial, "train") == [partial / "train" / "00000"]
    calls["n"] = 10
    written = []
    monkeypatch.setattr(shards, "write_shard", lambda final, table, info=None: (written.append(final), real(final, table, info)))
    semantic_stage.run(cfg)
    names = [f"{p.parent.name}/{p.name}" for p in written]
    assert "train/00000" not in names and "train/00001" in names  # the finished shard was reused
    assert not partial.exists()
    again = shards.load_splits(cfg.run_dir / "tokens")
    want = shards.load_splits(tiny_run.run_dir / "tokens")
    assert len(shards.shard_paths(cfg.run_dir / "tokens", "heldout")) == 3  # 24 utterances, 8 a shard
    assert again["train"]["semantic"] == want["train"]["semantic"]
    assert again["heldout"]["semantic"] == want["heldout"]["semantic"]


def test_stage_cli_up_to_date_and_errors(tiny_run, capsys):
    from audiolm.pipeline.cli import stage_main

    ok = subprocess.run([sys.executable, "-m", "stages.stage1_semantic", "--pipeline", "pipelines/tiny.yaml",
                         f"runs_dir={tiny_run.runs_dir}"], cwd=REPO, capture_output=True, text=True)
    assert ok.returncode == 0 and "up to date" in ok.stdout
    # the same entry's error path in this process (a fresh one costs 5 s of imports)
    assert stage_main(semantic_stage.run, "", ["--pipeline", str(REPO / "pipelines" / "tiny.yaml"),
                                              f"runs_dir={tiny_run.runs_dir}", "semantic.num_clusterz=3"]) == 2
    assert "unknown config key 'semantic.num_clusterz'" in capsys.readouterr().err


def test_corpus_stage_records_counts(tiny_run):
    marker = rundir.read_marker(corpus_stage.corpus_dir(tiny_run))
    assert marker["counts"]["train"]["kept"] == 18 and marker["counts"]["heldout"]["kept"] == 24
    assert marker["sample_rate"] == 16000


@pytest.mark.slow
def test_demo_tokens_beat_mfcc_kmeans(tmp_path):
    """On the full demo corpus (about 5 minutes): the demo's semantic tokens (the phone decisions of
    an encoder trained here, K=55) against MFCC k-means (CMVN, +-4 frames) at the same K, for the
    training voices and, apart, the voices no model trains on (issue 15's targets: PNMI at least 0.1
    higher, cross-voice AUC >= 0.95). On the 2-core AVX2 machine without bf16 of 2026-11-30 the
    encoder's 200 steps miss them: PNMI 0.388 / 0.331 against MFCC k-means' 0.365 / 0.373, AUC
    0.999 / 0.950 (docs/demo.md); `make demo-long`'s encoder met the PNMI target (K=53, docs/demo.md)."""
    from audiolm.pipeline import semantic_eval

    cfg = load_config(REPO / "pipelines" / "demo.yaml", [f"runs_dir={tmp_path}"])
    corpus_stage.run(cfg)
    semantic_stage.run(cfg)
    marker = rundir.read_marker(cfg.run_dir / "tokens")
    corpus, rate = semantic_eval.open_corpus(str(cfg.run_dir))
    assert marker["semantic_vocab_size"] == 55  # eSpeak NG's English phones (with those named by a digit) and silence
    mfcc = semantic_eval.spectral_baseline(f"mfcc:{marker['semantic_vocab_size']}", corpus, rate, context=4)
    heldout = corpus["heldout"]
    for group, members in voice_groups(corpus).items():
        baseline = semantic_eval.evaluate("mfcc", mfcc, select_speakers(heldout, members), rate)
        key = semantic_stage.group_key(group)
        ours = marker[f"heldout_phones{key}"]["pnmi"], marker[f"heldout_voice_consistency{key}"]["auc"]
        assert ours[0] >= baseline.pnmi + 0.1 and ours[1] >= 0.95, (group, ours, baseline)


def test_dedup_option_adds_repeat_free_ids_and_reuses_the_tokenizer(tiny_run, tmp_path):
    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={tmp_path}", "semantic.dedup=true"])
    shutil.copytree(tiny_run.run_dir / "corpus", cfg.run_dir / "corpus")
    shutil.copytree(tiny_run.run_dir / "semantic", cfg.run_dir / "semantic")
    before = (cfg.run_dir / "semantic" / "kmeans.safetensors").stat().st_mtime_ns
    semantic_stage.run(cfg)
    assert (cfg.run_dir / "semantic" / "kmeans.safetensors").stat().st_mtime_ns == before  # not refitted
    row = shards.load_splits(cfg.run_dir / "tokens")["heldout"][0]
    raw, short = row["semantic"], row["semantic_dedup"]
    assert short == [x for i, x in enumerate(raw) if i == 0 or raw[i - 1] != x] and len(short) < len(raw)
