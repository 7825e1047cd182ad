"""Stage 4's scoreboard: the demo's sWUGGY-, sBLIMP- and StoryCloze-style sets (their text, their
layouts), the bigram baseline, and the sets and ABX scored on the tiny run."""

import math
import random
import re

import numpy as np
import pytest

from audiolm.data import benchmark_sets as sets
from audiolm.data import demo
from audiolm.eval import slm21

TRAIN = demo.sentences(120, 0)[10:]


def test_segments_are_runs_of_vowel_and_consonant_letters():
    assert sets.segments("garden") == ["g", "a", "rd", "e", "n"]
    assert sets.segments("yellow") == ["y", "e", "ll", "o", "w"]  # a first y before a vowel is a consonant
    assert sets.segments("library") == ["l", "i", "br", "a", "r", "y"]


def test_pseudo_words_keep_the_shape_and_are_no_word():
    pairs = sets.lexical_pairs(TRAIN, 40, seed=0)
    counts = sets.training_words(TRAIN)
    assert len(pairs) == 40 and len({w for w, _, _ in pairs}) == 40
    for word, pseudo, frequency in pairs:
        assert frequency == counts[word] > 0
        assert pseudo not in counts and not sets.is_english(pseudo) and abs(len(pseudo) - len(word)) <= 1
        a, b = sets.segments(word), sets.segments(pseudo)
        assert len(a) == len(b), (word, pseudo)  # one or two segments swapped, each for one of its kind and place
        changed = [k for k in range(len(a)) if a[k] != b[k]]
        assert 1 <= len(changed) <= 2 and all(sets._slot(a, k) == sets._slot(b, k) for k in changed), (word, pseudo)
    with pytest.raises(ValueError, match="no pseudo-word"):  # every candidate a known word
        sets.pseudo_word("garden", set(counts), random.Random(0), known=lambda w: True)


def _words(text):
    return sorted(re.findall(r"[a-z]+", text.lower()))


def test_syntactic_pairs_break_order_or_verb_form_of_new_sentences():
    pairs = sets.syntactic_pairs(20, seed=1, exclude=set(TRAIN))
    past_of = demo.VERB_FORMS
    for kind, subtype, good, bad in pairs:
        assert good not in TRAIN and bad != good
        if kind == "word order":  # the same words, an article after the word it belongs before
            assert _words(good) == _words(bad) and re.search(r"\b(the|a) [.,?]|\b(\w+) (the|a) \b", bad.lower())
        else:  # one verb in the other form
            (said, broken), *more = [(x, y) for x, y in zip(good.split(), bad.split(), strict=True) if x != y]
            base, past = (broken, said) if subtype == "base form for past" else (said, broken)
            assert not more and past_of[base] == past, (good, bad)
    assert {k for k, *_ in pairs} == {"word order", "verb form"}


def test_story_endings_are_about_the_first_sentence_or_not():
    for first, true, wrong in sets.story_pairs(12, seed=2):
        name, noun = first.split()[0], first.split()[-3]
        assert name in true and noun in true and name not in wrong and noun not in wrong, (first, true, wrong)
        assert re.sub(r"[A-Z]\w+|\b\w+\b", "w", true) == re.sub(r"[A-Z]\w+|\b\w+\b", "w", wrong)  # one template


class _FakeLM:
    class tokenizer:  # noqa: N801
        num_clusters = 3
        sample_rate = 16000

    class spec:  # noqa: N801
        dedup = False


def test_bigram_baseline_by_hand():
    from audiolm.pipeline.scoreboard import BigramScorer

    bigram = BigramScorer(_FakeLM(), [np.array([0, 1, 0, 1]), np.array([1, 2])])
    unigram = np.array([3, 4, 2]) / 9  # counts 2, 3, 1, plus one
    np.testing.assert_allclose(bigram.unigram, unigram)
    # bigrams (0, 1) x2, (1, 0), (1, 2): from 0 two, from 1 two
    want = math.log(unigram[0]) + math.log((2 + unigram[1]) / (2 + 1)) + math.log((1 + unigram[2]) / (2 + 1))
    assert bigram.scores([np.array([0, 1, 2])], "sum")[0] == pytest.approx(want)
    assert bigram.scores([np.array([0, 1, 2])], "mean")[0] == pytest.approx(want / 3)


def test_sets_in_the_benchmark_layouts_scored_on_the_tiny_run(tiny_continuations, tmp_path):
    from audiolm.eval.lm_score import SpeechLMScorer
    from audiolm.eval.score_lm import score_dataset
    from audiolm.pipeline import lm_stage
    from audiolm.pipeline.scoreboard import BigramScorer, abx_figures

    sizes = sets.write_sets(tmp_path / "data", {"va": demo.VOICES[0], "vb": demo.VOICES[3]}, TRAIN,
                            lexical=4, syntactic=4, stories=3)
    assert sizes == {"lexical": 4, "syntactic": 4, "stories": 3}
    lexical = slm21.read_gold(tmp_path / "data" / "lexical" / "dev" / "gold.csv")
    assert len(lexical) == 4 * 2 * 2 and {r["voice"] for r in lexical} == {"va", "vb"}
    assert {p.stem for p in (tmp_path / "data" / "lexical" / "dev").glob("*.wav")} == {r["filename"] for r in lexical}
    assert len(list((tmp_path / "data" / "tSC").glob("*.wav"))) == 6
    syntactic = slm21.read_gold(tmp_path / "data" / "syntactic" / "dev" / "gold.csv")
    assert len(syntactic) == 4 * 2 and [r["voice"] for r in syntactic[::2]] == ["va", "vb", "va", "vb"]  # one voice each
    lm = SpeechLMScorer.from_pretrained(str(tiny_continuations.run_dir), device="cpu")
    cache: dict = {}
    tokens = lm_stage.read_tokens(tiny_continuations)[0]
    for name, scorer in (("lm", lm), ("bigram", BigramScorer(lm, list(tokens["train"]["semantic"])))):
        results, errors = score_dataset(tmp_path / "data", scorer, tmp_path / name, units_cache=cache, model_name=name)
        assert not errors and set(results["parts"]) == {"lexical/dev", "syntactic/dev", "tSC"}
        assert 0 <= results["parts"]["syntactic/dev"]["accuracy"]["all"] <= 1
    assert set(cache) == {"lexical/dev", "syntactic/dev", "tSC"}  # tokenized once for both
    from audiolm.pipeline import corpus_stage, rundir

    corpus = corpus_stage.load(tiny_continuations)
    rate = rundir.read_marker(corpus_stage.corpus_dir(tiny_continuations))["sample_rate"]
    abx = abx_figures(tiny_continuations, lm, corpus, rate, tmp_path)
    assert abx["items"] > 100 and (tmp_path / "heldout.item").exists()
    for kind in ("units", "features", f"MFCC k-means (K={lm.tokenizer.num_clusters})"):
        assert 0 <= abx[kind]["within"] < 50 and 0 <= abx[kind]["across"] < 50, (kind, abx[kind])
