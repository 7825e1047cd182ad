"""eSpeak NG's grapheme-to-phoneme conversion through the library: any English text, the same
phonemes the synthesizer speaks."""

import pytest

from audiolm.data.espeak import Synthesizer, Voice

# words the demo grammar never uses
UNSEEN = "The quixotic zephyr bewildered seventeen astronauts near Reykjavik."


def test_phonemes_are_what_the_synthesizer_speaks():
    synth = Synthesizer.get()
    words = synth.phonemes(UNSEEN, "en-us")
    assert len(words) == len(UNSEEN.split()) and all(words)
    spoken = [p for p, _ in synth.speak(UNSEEN, Voice("en-us")).phonemes if not p.startswith("_")]
    assert [p for w in words for p in w] == spoken


def test_accents_read_differently_and_nothing_speakable_gives_nothing():
    synth = Synthesizer.get()
    expected = [["h", "@", "l", "'oU"], ["w", "'3:", "l", "d"], ["g", "U", "d", "b", "'aI"]]
    assert synth.phonemes("Hello world. Goodbye!") == expected
    assert synth.phonemes("water", "en-us") != synth.phonemes("water", "en")  # the r-coloured vowel
    assert synth.phonemes("  ...  ") == []
    with pytest.raises(ValueError, match="no voice 'xx-nowhere'"):
        synth.phonemes("hello", "xx-nowhere")
