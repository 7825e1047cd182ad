"""The language models' training data at scale: token rows read in place from the memory-mapped table,
windows drawn uniformly over frames, and each process building only its rows of the same global batch."""

import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch

from audiolm.config import TrainConfig
from audiolm.data import shards
from audiolm.data.token_rows import TextRows, TokenRows
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout
from audiolm.train.lm_task import LMTask, next_of_speaker
from audiolm.train.trainer import Trainer
from tests.conftest import REPO

LAYOUT = TokenLayout(semantic_size=300, codebook_size=32, num_codebooks=3, coarse_codebooks=1)


def _table(folder, lengths, seed=0):
    """A token table of utterances of the given lengths (semantic ids uint16 at 50 Hz, codes uint8 at
    75 Hz), written as shards of 3 rows and read back concatenated, as stage 3 reads it."""
    rng = np.random.default_rng(seed)
    features = datasets.Features({"id": datasets.Value("string"), "speaker": datasets.Value("string"),
                                  "semantic": datasets.Sequence(datasets.Value("uint16")),
                                  "acoustic_codes": datasets.Sequence(datasets.Sequence(datasets.Value("uint8")))})
    rows = [{"id": f"u{i}", "speaker": "ab"[i % 2], "semantic": rng.integers(0, 300, n).tolist(),
             "acoustic_codes": rng.integers(0, 32, (3, n * 3 // 2)).tolist()} for i, n in enumerate(lengths)]
    for index, start in enumerate(range(0, len(rows), 3)):
        part = {k: [r[k] for r in rows[start : start + 3]] for k in features}
        shards.write_shard(shards.shard_path(folder, "train", index), datasets.Dataset.from_dict(part, features=features))
    return shards.load_split(folder, "train"), rows


def test_token_rows_read_the_mapped_table_as_int64(tmp_path):
    table, rows = _table(tmp_path, [5, 9, 1, 12, 7, 3, 8])
    read = TokenRows(table)
    assert len(read) == 7
    for (semantic, codes), row in zip(read, rows, strict=True):
        assert semantic.dtype == np.int64 and codes.dtype == np.int64
        np.testing.assert_array_equal(semantic, row["semantic"])
        np.testing.assert_array_equal(codes, row["acoustic_codes"])
    np.testing.assert_array_equal(read.lengths(acoustic=False), [5, 9, 1, 12, 7, 3, 8])
    np.testing.assert_array_equal(read.lengths(acoustic=True), [n * 3 // 2 for n in [5, 9, 1, 12, 7, 3, 8]])
    picked = TokenRows(table.select([6, 2, 4]), np.array([1, 0]))  # a selection, then rows of it
    np.testing.assert_array_equal(picked[0][0], rows[2]["semantic"])
    np.testing.assert_array_equal(picked[1][1], rows[6]["acoustic_codes"])
    np.testing.assert_array_equal(picked.lengths(acoustic=False), [1, 8])


class CharTokens:
    """A text tokenizer of one id per character (what TextRows asks of audiolm.text.TextTokenizer)."""

    def phone_ids(self, phones):
        return np.array([ord(p) for p in phones], dtype=np.int64)

    def encode(self, text):
        return [ord(c) for c in text]


def test_text_rows_read_and_tokenize_the_rows_with_text(tmp_path):
    lengths = [5, 9, 1, 12, 7, 3, 8]
    texts = ["ab", "", "c", None, "de", "f", "gh"]
    phonemes = [["a", "b"], ["x"], [], ["y"], ["d", "e"], None, ["g"]]
    table, rows = _table(tmp_path, lengths)
    table = table.add_column("text", texts).add_column("phonemes", phonemes)
    read = TextRows(table, CharTokens())
    with_text = [0, 4, 6]  # rows with both a text and its phones
    np.testing.assert_array_equal(read.positions, with_text)
    np.testing.assert_array_equal(read.lengths(), [lengths[i] for i in with_text])
    for (semantic, (phones, pieces)), i in zip(read, with_text, strict=True):
        np.testing.assert_array_equal(semantic, rows[i]["semantic"])
        np.testing.assert_array_equal(phones, [ord(p) for p in phonemes[i]])
        np.testing.assert_array_equal(pieces, [ord(c) for c in texts[i]])
    kept = read.keep(read.lengths() <= 7)
    assert len(kept) == 2 and kept.positions.tolist() == [0, 4] and kept[1][1][1].tolist() == [ord("d"), ord("e")]
    picked = TextRows(table.select([6, 5, 4, 3]), CharTokens(), np.array([0, 1, 2]))  # a selection, then rows of it
    np.testing.assert_array_equal(picked.positions, [0, 2])
    np.testing.assert_array_equal(picked[1][0], rows[4]["semantic"])


def test_next_of_speaker_follows_each_speakers_utterances_in_order():
    np.testing.assert_array_equal(next_of_speaker(["a", "b", "a", "c", "b", "a"], 6), [2, 4, 5, 3, 1, 0])
    np.testing.assert_array_equal(next_of_speaker(None, 3), [0, 1, 2])


def _task(train, batch_size=8, speakers=None, task="semantic", window_seconds=0.2, voice_pool=False):
    spec = TaskSpec(task=task, layout=LAYOUT, semantic_rate=50.0, acoustic_rate=75.0, window_seconds=window_seconds)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=16, layers=1, heads=2, max_positions=spec.max_length(),
                                  voice_pool=voice_pool))
    cfg = TrainConfig(steps=6, batch_size=batch_size, learning_rate=3e-3, warmup_steps=1, checkpoint_every=3,
                      eval_every=1000, log_every=1)
    return LMTask(model, spec, cfg, train, list(train)[:2], speakers)


@pytest.mark.parametrize("task", ["semantic", "coarse"])
def test_each_process_builds_its_rows_of_the_global_batch_of_one(tmp_path, task):
    table, _ = _table(tmp_path, [40, 90, 15, 120, 70, 33, 80])
    lm = _task(TokenRows(table), speakers=table["speaker"], task=task, voice_pool=task == "coarse")
    for step in range(3):
        whole = lm.batch(step, 0)
        parts = [lm.batch(step, 0, rank, 2) for rank in range(2)]
        assert [p[0].shape[0] for p in parts] == [4, 4]  # half the rows each
        for row in range(8):  # row r of the global batch is row r // 2 of process r % 2's, padding aside
            mine = parts[row % 2]
            for a, b in zip(whole, mine, strict=True):
                n = min(a.shape[1], b.shape[1])
                torch.testing.assert_close(a[row, :n], b[row // 2, :n])
                assert not (a[row, n:].any() if a.dtype == torch.bool else (a[row, n:] != LAYOUT.PAD).any())
    assert not torch.equal(lm.batch(0, 0)[0], lm.batch(1, 0)[0])


def test_windows_start_uniformly_over_frames():
    """Utterances of 10, 100 and 1,000 frames, each of one repeated id: a window's first id says where
    it started. Drawn in proportion to length (10 : 100 : 1,000), not a third each."""
    lengths = [10, 100, 1000]
    train = [(np.full(n, i), None) for i, n in enumerate(lengths)]
    lm = _task(train, batch_size=64)
    firsts = np.concatenate([lm.batch(step, 0)[0][:, 1].numpy() for step in range(40)]) - LAYOUT.semantic_ids(np.zeros(1))[0]
    counts = np.bincount(firsts, minlength=3)
    expected = np.array(lengths) / sum(lengths) * counts.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8, (counts, chi2)  # chi-square with 2 degrees of freedom: p > 0.001
    assert counts[0] < 0.03 * counts.sum()  # a third each would be 853 of 2,560


def test_batches_built_by_a_worker_process_train_the_same_model(tmp_path):
    train = [(np.arange(n) % 300, None) for n in (40, 90, 15, 120)]
    weights = []
    for workers in (0, 1):
        lm = _task(train)
        lm.cfg.data_workers = workers
        Trainer(lm, lm.cfg, tmp_path / f"w{workers}", betas=(0.9, 0.95)).fit()
        weights.append(lm.models["lm"].state_dict())
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0)


STEPS = 4


def task_for_processes() -> LMTask:
    """The task tests/lm_rows_worker.py trains in each process: packed, voice-pooling coarse windows."""
    rng = np.random.default_rng(5)
    train = [(rng.integers(0, 300, n), rng.integers(0, 32, (3, n * 3 // 2))) for n in (40, 90, 15, 120, 70, 33)]
    return _task(train, speakers=list("ababab"), task="coarse", voice_pool=True)


@pytest.mark.slow
def test_two_launched_processes_draw_the_global_batch_of_one(tmp_path):
    """Through `accelerate launch` and the trainer's own batch stream: at every step the two processes'
    rows, interleaved, are one process' batch, and each built half of them."""
    from tests.test_distributed import ACCELERATE

    worker = [str(REPO / "tests" / "lm_rows_worker.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, *worker], cwd=REPO, check=True, capture_output=True, env=env)
    subprocess.run([*ACCELERATE, "--num_processes", "2", *worker], cwd=REPO, check=True, capture_output=True, env=env)
    one = np.load(tmp_path / "rank0-of-1.npz")
    two = [np.load(tmp_path / f"rank{r}-of-2.npz") for r in range(2)]
    for step in range(STEPS):
        for i in range(3):  # ids, predicts, reference
            whole = one[f"{step}.{i}"]
            assert all(part[f"{step}.{i}"].shape[0] == whole.shape[0] // 2 for part in two)
            for row in range(whole.shape[0]):
                mine = two[row % 2][f"{step}.{i}"][row // 2]
                n = min(len(mine), whole.shape[1])
                np.testing.assert_array_equal(whole[row, :n], mine[:n])
