"""Text parts of issue 16: the sentencepiece tokenizer (trained, saved and loaded like every part) and
phonemes of any English text folded onto the corpus' phone labels."""

import json

import pytest

from audiolm.config import TextConfig
from audiolm.data.demo import sentences
from audiolm.data.espeak import Voice, synthesize
from audiolm.data.phones import normalize_phone
from audiolm.text import WORD, TextTokenizer, phonemize


@pytest.fixture(scope="module")
def corpus_text():
    return sentences(120, seed=0)


def test_tokenizer_learns_the_corpus_and_round_trips_any_text(corpus_text, tmp_path):
    tok = TextTokenizer.train(corpus_text, TextConfig(vocab_size=400))
    assert 300 <= tok.vocab_size <= 400  # 3 specials + 256 bytes + the corpus' pieces
    for text in corpus_text[:5] + ["Zephyrs vex quirky astronauts."]:
        assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode("Zephyrs")) >= 2  # "Z" spelt as a byte: no <unk>
    # pieces learnt from the corpus: its sentences take fewer pieces than characters
    assert sum(len(tok.encode(t)) for t in corpus_text) < 0.5 * sum(len(t) for t in corpus_text)
    tok.save_pretrained(tmp_path / "text")
    assert json.loads((tmp_path / "text" / "config.json").read_text())["component"] == "text-tokenizer"
    again = TextTokenizer.from_pretrained(tmp_path / "text")
    assert again.model_proto == tok.model_proto and again.encode(corpus_text[7]) == tok.encode(corpus_text[7])
    # the reading task's phone vocabulary: <unk>, the word boundary, every phone of the corpus' text
    assert again.phones == tok.phones and tok.phones[:2] == ["<unk>", WORD]
    assert set(tok.phones[2:]) == {p for t in corpus_text for p in phonemize(t)} - {WORD}
    assert tok.phone_ids(["D", WORD, "no-such-phone"]).tolist() == [tok.phones.index("D"), 1, 0]
    assert TextTokenizer.train(corpus_text, TextConfig(vocab_size=400)).model_proto == tok.model_proto


def test_empty_corpus_text_is_refused():
    with pytest.raises(ValueError, match="no text"):
        TextTokenizer.train(["", "  "])


def test_phonemize_gives_the_phones_the_synthesizer_speaks_with_word_boundaries():
    text = "The quixotic zephyr bewildered seventeen astronauts."
    phones = phonemize(text)
    assert phones.count(WORD) == len(text.split()) - 1
    # spoken as the corpus is, in a fresh process: eSpeak NG's state from earlier synthesis in this
    # process (other tests) once lost the first word's phone events
    (spoken,) = synthesize([(text, Voice("en-us"))])
    spoken = [normalize_phone(p) for p, _ in spoken.phonemes]
    assert [p for p in phones if p != WORD] == [p for p in spoken if p and p != "sil"]
    assert phonemize("...") == []


def test_stage_1_trains_the_text_tokenizer_once(tiny_run):
    from audiolm.data import shards
    from audiolm.pipeline import semantic_stage

    folder = tiny_run.run_dir / "text"
    tok = TextTokenizer.from_pretrained(folder)
    train = shards.load_split(tiny_run.run_dir / "corpus", "train")["text"]
    assert all(tok.decode(tok.encode(t)) == t for t in train)
    before = (folder / "text.safetensors").stat().st_mtime_ns
    semantic_stage.fit_text_tokenizer(tiny_run, shards.load_splits(tiny_run.run_dir / "corpus"))
    assert (folder / "text.safetensors").stat().st_mtime_ns == before  # up to date: not trained again
