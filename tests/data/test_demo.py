import numpy as np

from audiolm.config import DemoCorpusConfig
from audiolm.data.demo import VOICES, demo_utterances, sentences
from audiolm.data.espeak import Synthesizer, synthesize


def test_sentences_are_distinct_varied_and_seeded():
    a = sentences(360, seed=0)
    assert len(set(a)) == 360 and a == sentences(360, seed=0) and a != sentences(360, seed=1)
    assert len({s.split()[0] for s in a}) > 10  # many openings, not one template
    assert sum(s.endswith("?") for s in a) > 20


def test_split_keeps_heldout_sentences_out_of_train_and_read_by_every_voice():
    cfg = DemoCorpusConfig(voices=6, sentences=60, heldout_sentences=8, voices_per_train_sentence=2)
    utts = list(demo_utterances(cfg))
    heldout = [u for u in utts if u.split == "heldout"]
    train = [u for u in utts if u.split == "train"]
    assert not {u.text for u in heldout} & {u.text for u in train}
    assert len({u.text for u in heldout}) == 8
    for text in {u.text for u in heldout}:
        assert {u.speaker for u in heldout if u.text == text} == {f"v{i:02d}" for i in range(6)}
    assert len(train) == 52 * 2 and len({u.id for u in utts}) == len(utts)
    per_voice = np.bincount([int(u.speaker[1:]) for u in train])
    assert per_voice.max() - per_voice.min() <= 2  # rotation shares train sentences fairly


def test_voices_sound_different_and_synthesis_is_deterministic():
    text = "Please open the window before noon."
    items = [(text, voice) for voice in VOICES[:6]]
    first = list(synthesize(items, chunk_size=4))
    Synthesizer.get().speak("Something else first, to move the engine's state on.", VOICES[3])
    again = list(synthesize(items, chunk_size=4))
    centroids = []
    for out, out2 in zip(first, again, strict=True):
        assert np.array_equal(out.wav, out2.wav) and out.sample_rate == 22050
        assert len(out.phonemes) > 10 and out.phonemes[0][1] <= out.phonemes[-1][1]
        spectrum = np.abs(np.fft.rfft(out.wav))
        freqs = np.fft.rfftfreq(len(out.wav), 1 / out.sample_rate)
        centroids.append(float((spectrum * freqs).sum() / spectrum.sum()))
    assert len({round(c, -1) for c in centroids}) == 6  # six different spectral centroids
