import dataclasses

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


def test_many_voices_bank_is_seeded_distinct_and_keeps_the_unseen_family_out_of_training():
    from audiolm.data.demo import demo_voices
    from audiolm.data.voices import UNSEEN_VARIANTS

    cfg = DemoCorpusConfig(bank="many", voices=64, unseen_voices=8, heldout_voices=8, sentences=120, heldout_sentences=10)
    train_voices, unseen_voices = demo_voices(cfg)
    assert list(train_voices) == [f"v{i:02d}" for i in range(64)] and list(unseen_voices) == [f"u{i:02d}" for i in range(8)]
    assert demo_voices(cfg) == (train_voices, unseen_voices)  # seeded: the same bank on every build
    pairs = [(v.language, v.variant) for v in train_voices.values()]
    assert len(set(pairs)) == 64 and len({v.language for v in train_voices.values()}) == 8  # every accent
    assert all(v.variant in UNSEEN_VARIANTS for v in unseen_voices.values())
    assert not {v.variant for v in train_voices.values()} & set(UNSEEN_VARIANTS)  # a family absent from training
    utts = list(demo_utterances(cfg))
    train = [u for u in utts if u.split == "train"]
    heldout = [u for u in utts if u.split == "heldout"]
    assert not {u.speaker for u in train} & set(unseen_voices)  # speaker-disjoint where it says so
    assert {u.speaker for u in train} == set(train_voices) and not {u.text for u in heldout} & {u.text for u in train}
    readers = {u.speaker for u in heldout}
    assert len(readers & set(train_voices)) == 8 and set(unseen_voices) <= readers
    assert len({train_voices[s].language for s in readers & set(train_voices)}) >= 6  # spread over accents
    for text in {u.text for u in heldout}:
        assert {u.speaker for u in heldout if u.text == text} == readers
    # every training voice reading the held-out sentences too: still no unseen voice in train
    every = list(demo_utterances(dataclasses.replace(cfg, heldout_voices=0)))
    assert {u.speaker for u in every if u.split == "train"} == set(train_voices)
    assert {u.speaker for u in every if u.split == "heldout"} == set(train_voices) | set(unseen_voices)
    # held-out utterances of two sentences each: half as many, each still read by every held-out voice
    paired = [u for u in demo_utterances(dataclasses.replace(cfg, sentences_per_heldout_utterance=2)) if u.split == "heldout"]
    texts = sorted({u.text for u in heldout})
    assert len({u.text for u in paired}) == 5 and all(u.text.count(". ") + u.text.count("? ") == 1 for u in paired)
    assert {s for u in paired for s in texts if s in u.text} == set(texts)


def test_formant_scale_moves_the_spectrum_and_keeps_pitch_and_timing():
    """A generated variant (formants x 0.88 and x 1.13): the long-term spectrum's centroid moves with
    the scale, the duration and the pitch (harmonic spacing, by autocorrelation) do not; and it is
    as deterministic as eSpeak's own voices."""
    from audiolm.data.espeak import Voice

    text = "Nobody noticed the yellow basket because it was too heavy."
    voices = [Voice("en-us+m3", pitch=40, formant_scale=s) for s in (0.88, 1.0, 1.13)]
    out = list(synthesize([(text, v) for v in voices], chunk_size=3))
    again = list(synthesize([(text, voices[0])], chunk_size=1))
    assert np.array_equal(out[0].wav, again[0].wav)

    def centroid(wav):
        spectrum = np.abs(np.fft.rfft(wav)) ** 2
        return float((spectrum * np.fft.rfftfreq(len(wav), 1 / 22050)).sum() / spectrum.sum())

    def pitch(wav):  # the strongest autocorrelation lag between 2.5 and 12.5 ms, over voiced 40 ms frames
        lags = []
        for start in range(0, len(wav) - 882, 441):
            frame = wav[start : start + 882]
            if np.sqrt(np.mean(frame**2)) < 0.05:
                continue
            ac = np.correlate(frame, frame, "full")[881:]
            lags.append(55 + int(np.argmax(ac[55:276])))
        return 22050 / np.median(lags)

    low, mid, high = (centroid(o.wav) for o in out)
    assert low < 0.95 * mid and high > 1.05 * mid, (low, mid, high)
    assert max(len(o.wav) for o in out) - min(len(o.wav) for o in out) < 0.02 * len(out[1].wav)
    f0 = [pitch(o.wav) for o in out]
    assert max(f0) / min(f0) < 1.06, f0


def test_every_voice_of_the_bank_speaks():
    """All 64 + 8 voices of a many-voice demo load and speak (eSpeak aborts the process on a variant
    name that overflows its buffer: the generated variants' names are kept short)."""
    from audiolm.data.demo import demo_voices

    train_voices, unseen_voices = demo_voices(DemoCorpusConfig(bank="many", voices=64, unseen_voices=8))
    voices = [*train_voices.values(), *unseen_voices.values()]
    outs = list(synthesize([("Hello there.", v) for v in voices], chunk_size=len(voices)))
    assert all(len(o.wav) > 0.3 * o.sample_rate and np.abs(o.wav).max() > 0.05 for o in outs)
