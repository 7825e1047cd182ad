"""What each LM reads and predicts: sequence layout, time alignment of 50 Hz semantic ids with 75 Hz
codec frames, windows, and the unigram baseline."""

import numpy as np
import pytest

from audiolm.lm.sequences import TaskSpec, expand_runs, mean_run_length, unigram_perplexity
from audiolm.tokens import TokenLayout, dedup

LAYOUT = TokenLayout(semantic_size=100, codebook_size=1000, num_codebooks=4, coarse_codebooks=2)


def _spec(task, window=1.0, semantic_rate=50.0, acoustic_rate=75.0, **kw):
    return TaskSpec(task=task, layout=LAYOUT, semantic_rate=semantic_rate, acoustic_rate=acoustic_rate,
                    window_seconds=window, **kw)


def _utterance(seconds=3.0):
    """Semantic id = its 20 ms frame index mod 100; code of codebook q = 75 Hz frame index (the time)."""
    semantic = np.arange(int(seconds * 50)) % 100
    frames = int(seconds * 75)
    codes = np.stack([np.arange(frames)] * LAYOUT.num_codebooks)
    return semantic, codes


def test_coarse_sequence_conditions_on_the_semantic_ids_of_the_same_time_span():
    spec = _spec("coarse")
    semantic, codes = _utterance()
    ids, first = spec.build(semantic, codes, 30, 105)  # codec frames 30..105 = 0.4 s .. 1.4 s
    assert ids[0] == LAYOUT.BOS and ids[first - 1] == LAYOUT.SEP
    cond = LAYOUT.from_semantic_ids(ids[1 : first - 1])
    assert cond.tolist() == list(range(20, 70))  # semantic frames 20..70 = 0.4 s .. 1.4 s
    target = LAYOUT.unflatten(ids[first:], LAYOUT.codebooks("coarse"))
    assert target.shape == (2, 75) and target[0].tolist() == list(range(30, 105))
    assert len(ids) <= spec.max_length()


def test_fine_sequence_and_partial_targets_for_generation():
    spec = _spec("fine", window=0.5)
    semantic, codes = _utterance()
    ids, first = spec.build(semantic, codes, 10, 20, known=4)
    coarse = LAYOUT.unflatten(ids[1 : first - 1], LAYOUT.codebooks("coarse"))
    fine = LAYOUT.unflatten(ids[first:], LAYOUT.codebooks("fine"))
    assert coarse.shape == (2, 10) and fine.shape == (2, 4) and fine[1].tolist() == [10, 11, 12, 13]
    assert [spec.allowed(i) for i in range(3)] == [(LAYOUT.codebook_offset(2), LAYOUT.codebook_offset(3)),
                                                   (LAYOUT.codebook_offset(3), LAYOUT.codebook_offset(4)),
                                                   (LAYOUT.codebook_offset(2), LAYOUT.codebook_offset(3))]


def test_frame_positions_hold_a_frame_per_position():
    """The same window as the flat sequence, a position per frame: BOS, the coarse frames (2 ids and
    PAD), SEP, the fine frames (2 ids); the targets read back as the flat ones."""
    semantic, codes = _utterance()
    flat, grouped = _spec("fine", window=0.5), _spec("fine", window=0.5, frame_positions=True)
    ids, first = grouped.build(semantic, codes, 10, 20, known=4)
    assert ids.shape == (1 + 10 + 1 + 4, 2) and first == 12 and grouped.group == 2
    assert ids[0].tolist() == [LAYOUT.BOS, LAYOUT.PAD] and ids[first - 1].tolist() == [LAYOUT.SEP, LAYOUT.PAD]
    flat_ids, flat_first = flat.build(semantic, codes, 10, 20, known=4)
    assert np.array_equal(ids[1 : first - 1].reshape(-1), flat_ids[1 : flat_first - 1])
    assert np.array_equal(grouped.target_codes(ids[first:], codes, 10, 4), flat.target_codes(flat_ids[flat_first:], codes, 10, 4))
    assert np.array_equal(grouped.targets(semantic, codes), flat.targets(semantic, codes))
    coarse = _spec("coarse", frame_positions=True)
    ids, first = coarse.build(semantic, codes, 30, 105)
    assert ids.shape == (1 + 50 + 1 + 75, 2) and (ids[1 : first - 1, 1] == LAYOUT.PAD).all()
    assert len(ids) <= coarse.max_length() < _spec("coarse").max_length()
    with pytest.raises(ValueError, match="one id per frame"):
        _spec("semantic", frame_positions=True)


def test_semantic_sequence_raw_and_deduplicated():
    semantic = np.array([5, 5, 5, 7, 7, 2, 2, 2, 2, 9])
    raw, first = _spec("semantic").build(semantic, None, 0, 10)
    assert first == 1 and LAYOUT.from_semantic_ids(raw[1:]).tolist() == semantic.tolist()
    deduped, _ = _spec("semantic", dedup=True).build(semantic, None, 0, 10)
    assert LAYOUT.from_semantic_ids(deduped[1:]).tolist() == [5, 7, 2, 9]
    assert mean_run_length([semantic]) == 2.5
    expanded = expand_runs(dedup(semantic), 2.5, 10)
    assert len(expanded) == 10 and dedup(expanded).tolist() == [5, 7, 2, 9]


def test_training_windows_are_random_crops_and_eval_windows_cover_everything():
    spec = _spec("coarse", window=1.0)
    semantic, codes = _utterance(3.4)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(20):
        ids, first = spec.training_example(semantic, codes, rng)
        target = LAYOUT.unflatten(ids[first:], LAYOUT.codebooks("coarse"))
        assert target.shape[1] == 75  # a full window of a long utterance
        starts.add(int(target[0, 0]))
    assert len(starts) > 5
    windows = spec.eval_windows(semantic, codes)
    covered = np.concatenate([LAYOUT.unflatten(ids[first:], LAYOUT.codebooks("coarse"))[0] for ids, first in windows])
    assert covered.tolist() == list(range(codes.shape[1]))


def test_unigram_perplexity_of_uniform_ids_is_the_vocabulary_size():
    spec = _spec("semantic")
    rng = np.random.default_rng(0)
    train = [LAYOUT.semantic_ids(rng.integers(0, 100, 20000))]
    held = [LAYOUT.semantic_ids(rng.integers(0, 100, 5000))]
    assert unigram_perplexity(spec, train, held) == pytest.approx(100, rel=0.03)
    peaked = [LAYOUT.semantic_ids(np.r_[np.zeros(19000, int), rng.integers(0, 100, 1000)])]
    assert unigram_perplexity(spec, peaked, peaked) < 2


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown language-model task"):
        _spec("medium")


def test_concatenated_utterances_stay_aligned_in_time():
    spec = _spec("coarse")
    a, b = _utterance(1.0), _utterance(0.6)
    semantic = a[0][:-1]  # a tokenizer that made one frame too few: the last id is held
    joined_s, joined_c = spec.concatenate([(semantic, a[1]), b])
    assert joined_c.shape == (4, 75 + 45) and len(joined_s) == 50 + 30
    assert joined_s[49] == joined_s[48] and joined_s[50:].tolist() == b[0].tolist()
    ids, first = spec.build(joined_s, joined_c, 75, 120)  # the second utterance exactly
    assert LAYOUT.from_semantic_ids(ids[1 : first - 1]).tolist() == b[0].tolist()
