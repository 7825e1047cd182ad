"""The field's scoreboard for spoken LMs: ZeroSpeech 2021's scoring rules on known scores, the
submission format, the semantic LM's scores, and `audiolm score-lm` on an sLM21-layout folder."""

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from audiolm import cli
from audiolm.eval import slm21
from audiolm.eval.lm_score import SpeechLMScorer
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout
from tests.conftest import run_cli


def _gold(rows, columns):
    return [dict(zip(columns, map(str, r), strict=True)) for r in rows]


LEXICAL = ("filename", "id", "voice", "frequency", "word", "phones", "length", "correct")


def test_lexical_accuracy_by_the_zerospeech_rule():
    """Pairs scored 1 / 0.5 (tie) / 0, averaged over voices per id, then over ids; in-vocab leaves out
    frequency 0; bands as the benchmark cuts them ([5, 20) is its "6-20")."""
    gold = _gold([("w1a", 1, "a", 3, "cat", "k a t", 3, 1), ("n1a", 1, "a", 3, "cet", "k e t", 3, 0),
                  ("w1b", 1, "b", 3, "cat", "k a t", 3, 1), ("n1b", 1, "b", 3, "cet", "k e t", 3, 0),
                  ("w2a", 2, "a", 5, "dog", "d o g", 3, 1), ("n2a", 2, "a", 5, "dag", "d a g", 3, 0),
                  ("w2b", 2, "b", 5, "dog", "d o g", 3, 1), ("n2b", 2, "b", 5, "dag", "d a g", 3, 0),
                  ("w3a", 3, "a", 0, "zyx", "z y x", 3, 1), ("n3a", 3, "a", 0, "zyq", "z y q", 3, 0)], LEXICAL)
    scores = {"w1a": -1.0, "n1a": -2.0,  # right
              "w1b": -3.0, "n1b": -3.0,  # tie: 0.5 -> id 1: 0.75
              "w2a": -5.0, "n2a": -1.0,  # wrong
              "w2b": -1.0, "n2b": -5.0,  # right -> id 2: 0.5
              "w3a": -1.0, "n3a": -1.5}  # right, out of vocabulary -> id 3: 1
    acc = slm21.lexical_accuracy(gold, scores)
    assert acc["pairs"] == 3
    assert acc["all"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert acc["in_vocab"] == pytest.approx((0.75 + 0.5) / 2)
    assert acc["by_frequency"]["1-5"]["score"] == 0.75 and acc["by_frequency"]["6-20"]["score"] == 0.5
    assert acc["by_frequency"]["oov"]["n"] == 1
    with pytest.raises(ValueError, match="no score for 1"):
        slm21.lexical_accuracy(gold, {k: v for k, v in scores.items() if k != "n3a"})
    swapped = [dict(r) for r in gold]
    swapped[1]["voice"] = "b"  # paired in file order with a row of another voice
    with pytest.raises(ValueError, match="must share id and voice"):
        slm21.lexical_accuracy(swapped, scores)


def test_syntactic_accuracy_by_pair_then_type():
    columns = ("filename", "type", "subtype", "correct", "id", "voice")
    gold = _gold([("s1a", "agreement", "n", 1, 1, "a"), ("u1a", "agreement", "n", 0, 1, "a"),
                  ("s1b", "agreement", "n", 1, 1, "b"), ("u1b", "agreement", "n", 0, 1, "b"),
                  ("s2a", "order", "v", 1, 2, "a"), ("u2a", "order", "v", 0, 2, "a")], columns)
    scores = {"s1a": 0.0, "u1a": -1.0, "s1b": -2.0, "u1b": -1.0, "s2a": -1.0, "u2a": -1.0}
    acc = slm21.syntactic_accuracy(gold, scores)
    assert acc["all"] == pytest.approx((0.5 + 0.5) / 2)  # id 1: (1 + 0) / 2, id 2: a tie
    assert acc["by_type"]["agreement"]["score"] == 0.5 and acc["by_type"]["order"]["n"] == 1


def test_submission_files_follow_the_format(tmp_path):
    path = tmp_path / "lexical" / "dev.txt"
    slm21.write_submission(path, {"b": -1.25, "a": 3e-9})
    assert path.read_text() == "a 3e-09\nb -1.25\n"  # one line per wav, sorted stems, floats exactly
    assert slm21.read_submission(path, {"a", "b"}) == {"a": 3e-9, "b": -1.25}
    with pytest.raises(ValueError, match="missing"):
        slm21.read_submission(path, {"a", "b", "c"})
    for bad in ({"x.wav": 1.0}, {"a b": 1.0}, {"a": math.nan}):
        with pytest.raises(ValueError):
            slm21.write_submission(tmp_path / "bad.txt", bad)
    (tmp_path / "two.txt").write_text("a 1.0\na 2.0\n")
    with pytest.raises(ValueError, match="appears twice"):
        slm21.read_submission(tmp_path / "two.txt")


def test_story_pairs_by_name():
    assert slm21.story_pairs(["2_incorrect", "2_correct", "10_correct", "10_incorrect"], "x") == [
        ("10_correct", "10_incorrect"), ("2_correct", "2_incorrect")]
    with pytest.raises(ValueError, match="both endings"):
        slm21.story_pairs(["1_correct"], "x")
    assert slm21.story_accuracy({"1_correct": -1.0, "1_incorrect": -2.0, "2_correct": -2.0, "2_incorrect": -2.0})["all"] == 0.75


class _Ids:
    """A tokenizer stand-in: the ids are the wav's samples."""
    sample_rate = 16000

    def encode(self, wavs):
        return [np.asarray(w, dtype=np.int64) for w in wavs]


def _scorer(window_seconds=0.2, dedup=False):
    layout = TokenLayout(semantic_size=20, codebook_size=8, num_codebooks=2, coarse_codebooks=1)
    spec = TaskSpec(task="semantic", layout=layout, semantic_rate=50.0, acoustic_rate=50.0, window_seconds=window_seconds,
                    dedup=dedup)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=16, layers=1, heads=2, max_positions=spec.max_length()),
                    task=spec.to_dict())
    return SpeechLMScorer(_Ids(), model), spec


def _direct(model, spec, units):
    """Sum of log p of each id given all before it, from the full-vocabulary logits of one forward."""
    ids = torch.from_numpy(spec.build(units, None, 0, len(units))[0])[None]
    lo, hi = spec.target_ranges()[0]
    with torch.no_grad():
        logits = model(ids)[0, :-1, lo:hi].float()
    return float(torch.log_softmax(logits, -1).gather(1, (ids[0, 1:] - lo)[:, None]).sum())


def test_scores_are_the_lm_log_likelihood_of_each_unit():
    scorer, spec = _scorer()
    rng = np.random.default_rng(0)
    units = [rng.integers(0, 20, n) for n in (1, 4, 9, 10)]  # the window is 10 ids
    totals = scorer.log_likelihoods(units, batch_size=3)
    for u, (total, count) in zip(units, totals, strict=True):
        assert count == len(u) and total == pytest.approx(_direct(scorer.model, spec, u), abs=1e-4)
    means = scorer.scores(units, "mean")
    np.testing.assert_allclose(means, [t / n for t, n in totals], rtol=1e-6)
    long = rng.integers(0, 20, 37)  # longer than a window: scored in windows, each id once
    total, count = scorer.log_likelihoods([long])[0]
    assert count == 37 and np.isfinite(total)
    head = scorer.log_likelihoods([long[:10]])[0][0]  # the first window's ids have the same context either way
    assert total < head


def test_a_deduplicating_lm_scores_the_runs():
    scorer, _ = _scorer(dedup=True)
    assert scorer.log_likelihoods([np.array([3, 3, 3, 5, 5, 7])])[0][1] == 3


def _write(path, wav, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, rate)


def test_score_lm_writes_a_submission_and_the_accuracy(tiny_continuations, tmp_path, speech, capsys):
    """The tiny run scores an sLM21-layout folder (eSpeak NG words and pseudo-words, two voices) and
    a StoryCloze folder; the accuracy written is the rule's on the submission's own scores."""
    from audiolm.data.demo import VOICES
    from audiolm.data.espeak import Synthesizer

    data = tmp_path / "dataset"
    pairs = [("garden", "gardel"), ("river", "rivem"), ("quiet", "quiot")]
    rows = []
    for i, (word, non_word) in enumerate(pairs):
        for v, voice in enumerate(VOICES[:2]):
            for text, correct in ((word, 1), (non_word, 0)):
                name = f"{text}{v}"
                out = Synthesizer.get().speak(text, voice)
                _write(data / "lexical" / "dev" / f"{name}.wav", out.wav, out.sample_rate)
                rows.append((name, i, f"v{v}", 10 * i, word, "-", len(word), correct))
    with open(data / "lexical" / "dev" / "gold.csv", "w", newline="") as f:
        csv.writer(f).writerows([LEXICAL, *rows])
    wav, rate = speech
    _write(data / "syntactic" / "test" / "a.wav", wav, rate)  # no gold: a submission, no accuracy
    _write(data / "syntactic" / "test" / "b.wav", wav[::-1].copy(), rate)
    _write(data / "sSC" / "1_correct.wav", wav, rate)
    _write(data / "sSC" / "1_incorrect.wav", wav[: len(wav) // 2], rate)
    out = tmp_path / "submission"
    result = run_cli("score-lm", data, "--model", tiny_continuations.run_dir, "-o", out, "--score", "sum")
    assert result.returncode == 0, result.stderr
    assert "lexical/dev:" in result.stdout and "sSC:" in result.stdout
    lines = (out / "lexical" / "dev.txt").read_text().splitlines()
    assert sorted(line.split(" ")[0] for line in lines) == sorted(r[0] for r in rows)
    scores = slm21.read_submission(out / "lexical" / "dev.txt", {r[0] for r in rows})  # the format rules
    assert set(slm21.read_submission(out / "syntactic" / "test.txt")) == {"a", "b"}
    record = json.loads((out / "scores.json").read_text())
    assert record["settings"]["score"] == "sum" and record["parts"]["syntactic/test"]["accuracy"] is None
    by_id = {}  # the rule by hand: each voice's pair, then the mean over voices per id
    for i in range(len(pairs)):
        by_id[i] = np.mean([slm21.pair_score(scores[f"{pairs[i][0]}{v}"], scores[f"{pairs[i][1]}{v}"]) for v in range(2)])
    assert record["parts"]["lexical/dev"]["accuracy"]["all"] == pytest.approx(np.mean(list(by_id.values())))
    assert record["parts"]["lexical/dev"]["accuracy"]["in_vocab"] == pytest.approx(np.mean([by_id[1], by_id[2]]))
    assert record["parts"]["sSC"]["accuracy"]["pairs"] == 1
    run = str(tiny_continuations.run_dir)  # the next two in this process (a fresh one costs 5 s of imports)
    assert cli.main(["score-lm", str(data), "--model", run, "-o", str(out), "--score", "sum"]) == 0
    assert json.loads((out / "scores.json").read_text()) == record  # kept, not redone
    (data / "lexical" / "dev" / "broken.wav").write_bytes(b"RIFF0000WAVE")
    capsys.readouterr()
    assert cli.main(["score-lm", str(data), "--model", run, "-o", str(tmp_path / "other")]) == 1
    assert "broken.wav" in capsys.readouterr().err
    assert not (tmp_path / "other" / "lexical" / "dev.txt").exists() and (tmp_path / "other" / "sSC.txt").exists()
