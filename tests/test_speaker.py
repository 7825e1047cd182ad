"""The speaker judges on a small corpus of many eSpeak voices: the embedding learned on training
voices identifies voices of another family (Klatt synthesis) that it never saw, from other sentences
than those they were enrolled with; a clip of another voice is not taken for the claimed one."""

import numpy as np
import pytest

from audiolm.config import DemoCorpusConfig
from audiolm.data.demo import demo_voices, sentences
from audiolm.data.espeak import synthesize
from audiolm.eval.speaker import SpeakerEmbedding, mel_statistics


@pytest.fixture(scope="module")
def voices():
    train, unseen = demo_voices(DemoCorpusConfig(bank="many", voices=24, unseen_voices=6))
    texts = sentences(60, seed=3)
    items = [(texts[(i * 4 + j) % 40], v) for i, v in enumerate(train.values()) for j in range(4)]
    items += [(texts[40 + j], v) for v in unseen.values() for j in range(6)]
    feats = np.stack([mel_statistics(o.wav, o.sample_rate) for o in synthesize(items, chunk_size=len(items))])
    train_ids = [s for s in train for _ in range(4)]
    unseen_ids = np.array([s for s in unseen for _ in range(6)])
    return feats[: len(train_ids)], train_ids, feats[len(train_ids) :], unseen_ids


def test_embedding_identifies_voices_it_never_trained_on(voices):
    train_x, train_ids, unseen_x, unseen_ids = voices
    judge = SpeakerEmbedding.fit_features(train_x, train_ids)
    e = judge.embed_features(unseen_x)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0)
    names = sorted(set(unseen_ids))
    enrolled = {s: e[unseen_ids == s][:3] for s in names}  # 3 sentences to enrol, 3 others to judge
    clips = np.concatenate([e[unseen_ids == s][3:] for s in names])
    truth = [s for s in names for _ in range(3)]
    accuracy = np.mean([p == t for p, t in zip(judge.identify(enrolled, clips), truth, strict=True)])
    swapped = [names[(names.index(t) + 1) % len(names)] for t in truth]  # each clip claimed for the next voice
    swapped_accuracy = np.mean([p == t for p, t in zip(judge.identify(enrolled, clips), swapped, strict=True)])
    assert accuracy >= 0.9 and swapped_accuracy <= 1 / len(names), (accuracy, swapped_accuracy)
    # the same clips in the raw features (no projection learned from training voices) are judged worse
    raw = unseen_x - train_x.mean(0)
    raw = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    plain = SpeakerEmbedding(train_x.mean(0) * 0, np.eye(train_x.shape[1]))
    raw_pred = plain.identify({s: raw[unseen_ids == s][:3] for s in names},
                              np.concatenate([raw[unseen_ids == s][3:] for s in names]))
    assert np.mean([p == t for p, t in zip(raw_pred, truth, strict=True)]) < accuracy


def test_embedding_needs_two_training_voices():
    with pytest.raises(ValueError, match="at least two training speakers"):
        SpeakerEmbedding.fit_features(np.zeros((4, 80)), ["a"] * 4)


def test_stage_4_judge_is_calibrated_on_real_continuations(tmp_path):
    """Stage 4's protocol on a small corpus of many voices: the judge learned on the train split names
    the prompt's voice for the true next seconds of held-out utterances, of training voices and of
    Klatt voices it never heard, and rejects another voice's next seconds claimed for the prompt."""
    from audiolm.config import DataConfig
    from audiolm.data.corpus import build_corpus, read_wavs, voice_groups
    from audiolm.pipeline import speaker_eval

    demo = DemoCorpusConfig(bank="many", voices=24, unseen_voices=5, heldout_voices=5, sentences=72, heldout_sentences=8,
                            sentences_per_heldout_utterance=2, voices_per_train_sentence=2)
    corpus, _ = build_corpus(DataConfig(demo=demo), tmp_path / "cache")
    heldout, rate = corpus["heldout"], 16000
    groups = voice_groups(corpus)
    assert set(groups) == {"training voices", "unseen voices"} and all(len(g) == 5 for g in groups.values())
    speakers = heldout["speaker"]
    picks = [i for i, s in enumerate(speakers) if i == speakers.index(s)]  # each voice's first utterance prompts
    enrol = speaker_eval.enrolment_rows(speakers, picks, set(speakers))
    assert all(len(rows) == 3 and not set(rows) & set(picks) for rows in enrol.values())
    judge = speaker_eval.build_judge(read_wavs(corpus["train"], list(range(corpus["train"].num_rows)), rate, rate),
                                     corpus["train"]["speaker"],
                                     {v: read_wavs(heldout, rows, rate, rate) for v, rows in enrol.items()}, rate)
    wavs = read_wavs(heldout, picks, rate, rate)
    assert min(len(w) for w in wavs) >= 4 * rate
    clips = {"real audio": {"prompt": [w[: 2 * rate] for w in wavs], "true continuation": [w[2 * rate : 4 * rate] for w in wavs]}}
    judged = speaker_eval.judge_voices({"real audio": judge}, groups, [speakers[i] for i in picks], rate, clips)
    for group, r in judged.items():
        true, swap = r["scores"]["true continuation"], r["scores"]["swapped"]
        assert r["chance"] == 1 / 5 and true["accuracy"] >= 0.8 and swap["accuracy"] <= r["chance"], (group, r)
        assert true["cosine"] > swap["cosine"], (group, r)
    with pytest.raises(ValueError, match="no utterance left to enrol"):
        speaker_eval.enrolment_rows(speakers, list(range(heldout.num_rows)), set(speakers))
