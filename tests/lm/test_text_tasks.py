"""The text tasks' sequences: reading (phones -> semantic ids) and transcription (semantic ids -> text
pieces) on the one TaskSpec, their alignment, where the loss is taken, packing and re-expansion."""

import numpy as np
import pytest
import torch

from audiolm.config import SamplingConfig
from audiolm.lm.generate import complete_text
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TaskSpec, unit_runs
from audiolm.text import WORD_PHONE
from audiolm.tokens import TokenLayout
from audiolm.train.lm_task import pad_batch

LAYOUT = TokenLayout(semantic_size=10, codebook_size=64, num_codebooks=4, coarse_codebooks=2, phone_size=6, piece_size=20)
SEMANTIC = np.array([3, 3, 3, 7, 7, 1, 1, 1, 1, 4])
PHONES = np.array([2, 5, WORD_PHONE, 3])
PIECES = np.array([7, 11, 4])


def _spec(task, **kw):
    return TaskSpec(task=task, layout=LAYOUT, semantic_rate=50.0, acoustic_rate=50.0, window_seconds=1.0, dedup=True,
                    end_piece=2, **kw)


def test_text_ids_follow_the_semantic_ids_and_do_not_overlap():
    assert LAYOUT.phone_offset == 4 + 10 and LAYOUT.piece_offset == 4 + 10 + 6
    assert LAYOUT.task_vocab_size("reading") == LAYOUT.task_vocab_size("transcription") == 4 + 10 + 6 + 20
    assert LAYOUT.piece_range == (20, 40)


def test_reading_sequence_is_phones_then_deduplicated_semantic_ids_then_eos():
    spec = _spec("reading")
    ids, first = spec.build(SEMANTIC, (PHONES, None), 0, len(SEMANTIC))
    assert ids[0] == LAYOUT.BOS and ids[first - 1] == LAYOUT.SEP and first == len(PHONES) + 2
    assert (ids[1 : first - 1] - LAYOUT.phone_offset).tolist() == PHONES.tolist()
    assert LAYOUT.from_semantic_ids(ids[first:-1]).tolist() == [3, 7, 1, 4] and ids[-1] == LAYOUT.EOS
    lo, hi = spec.allowed(0)  # EOS and the semantic ids; never a phone or a piece
    assert lo == LAYOUT.EOS and hi == LAYOUT.phone_offset and spec.stop == LAYOUT.EOS
    assert all(lo <= i < hi for i in ids[first:])
    prefix, _ = spec.build(np.zeros(0, np.int64), (PHONES, None), 0, 0, known=0)  # generation: up to SEP
    assert prefix.tolist() == ids[:first].tolist()
    assert len(ids) <= spec.max_length()


def test_transcription_sequence_is_semantic_ids_then_pieces_then_the_end_piece():
    spec = _spec("transcription")
    ids, first = spec.build(SEMANTIC, (None, PIECES), 0, len(SEMANTIC))
    assert LAYOUT.from_semantic_ids(ids[1 : first - 1]).tolist() == [3, 7, 1, 4]
    assert (ids[first:] - LAYOUT.piece_offset).tolist() == [*PIECES.tolist(), 2]
    assert spec.allowed(5) == LAYOUT.piece_range and spec.stop == LAYOUT.piece_offset + 2
    assert spec.target_ranges() == [LAYOUT.piece_range]


def test_loss_is_taken_on_the_targets_only():
    spec = _spec("transcription")
    examples = [spec.build(SEMANTIC, (None, PIECES), 0, 10), spec.build(SEMANTIC[:4], (None, PIECES[:1]), 0, 4)]
    ids, predicts = pad_batch(examples)
    for row, (seq, first) in enumerate(examples):
        predicted = ids[row, 1:][predicts[row, :-1]]  # the ids the masked positions predict
        assert predicted.tolist() == seq[first:].tolist()


def test_packed_utterances_join_text_with_a_word_boundary():
    spec = _spec("reading")
    semantic, (phones, pieces) = spec.concatenate([(SEMANTIC, (PHONES, PIECES)), (SEMANTIC[:3], (PHONES[:2], PIECES[:1]))])
    assert semantic.tolist() == [*SEMANTIC.tolist(), 3, 3, 3]
    assert phones.tolist() == [*PHONES.tolist(), WORD_PHONE, 2, 5] and pieces.tolist() == [*PIECES.tolist(), 7]


def test_a_reading_is_re_expanded_with_each_ids_mean_duration():
    runs = unit_runs([SEMANTIC, np.array([3, 3, 7])], LAYOUT.semantic_size)
    assert runs[3] == pytest.approx(2.5) and runs[1] == 4 and runs[7] == 1.5
    assert runs[9] == pytest.approx(13 / 6)  # never seen: the mean run (13 frames in 6 runs)
    spec = _spec("reading", unit_runs=runs)
    frames = spec.expand(np.array([3, 1, 7]))
    assert frames.tolist() == [3, 3, 1, 1, 1, 1, 7, 7]  # ends at 2.5, 6.5, 8 frames, rounded: 2, 6, 8
    spec = TaskSpec.from_dict(spec.to_dict())  # the runs survive the model's config.json
    assert spec.expand(np.array([3, 1, 7])).tolist() == frames.tolist()


def test_generation_stops_at_the_stop_id_and_is_seeded():
    spec = _spec("transcription")
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=16, layers=1, heads=2, max_positions=spec.max_length()),
                    task=spec.to_dict()).eval()
    with torch.no_grad():  # every piece equally likely: a row stops after ~20 ids, well before the window ends
        model.model.norm.weight.zero_()
    inputs = [(SEMANTIC, (None, None)), (SEMANTIC[:5], (None, None))]
    out = complete_text(model, spec, inputs, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(3))
    again = complete_text(model, spec, inputs, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(3))
    assert [o.tolist() for o in out] == [o.tolist() for o in again]
    longest = spec.max_length() - len(spec.build(SEMANTIC[:5], (None, None), 0, 0, known=0)[0])
    assert all(len(o) < longest and (o >= 0).all() and (o < LAYOUT.piece_size).all() and 2 not in o.tolist() for o in out)
