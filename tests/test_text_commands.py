"""The text tasks end to end on the tiny pipeline: the reading and transcription LMs, stage 4's text
figures, `AudioLM.speak` / `transcribe` / `convert` and their commands, errors and seeds, and the
text parts in a saved bundle."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiolm import AudioLM, audio, cli
from audiolm.data.demo import sentences
from audiolm.pipeline import rundir
from audiolm.pipeline.text_metrics import error_rate, text_phones, units_as_phones
from audiolm.text import phonemize
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
# words the demo grammar never uses (checked below): what `speak` must read from eSpeak NG's rules alone.
# Their phones are the demo's: its grammar has no "th" as in "thin" (T), no "ur" (3:), "oy" (OI),
# glottal stop or syllabic n, so a word with one of those is read with <unk> there.
NOVEL_SENTENCES = [
    "Zebras gallop across the savanna at dawn.",
    "The violinist improvised a cheerful melody.",
    "Grandpa polishes vintage bicycles every spring.",
    "Penguins waddle clumsily over slippery glaciers.",
    "Our neighbour knits pink scarves for charity.",
    "Volcanoes erupt suddenly in Iceland.",
    "Jellyfish drift silently across blue lagoons.",
    "Lazy camels sleep on sandy dunes.",
    "My uncle sells velvet pillows and lamps.",
    "A clever magpie stole a shiny spoon.",
]


@pytest.fixture(scope="module")
def model(tiny_continuations):
    return AudioLM.from_pretrained(tiny_continuations.run_dir)


def test_the_novel_sentences_use_no_word_of_the_demo_corpus_but_only_its_phones():
    demo = sentences(354, seed=0)
    corpus_words = {w for s in demo for w in re.findall(r"[a-z']+", s.lower())}
    for sentence in NOVEL_SENTENCES:
        novel = [w for w in re.findall(r"[a-z']+", sentence.lower()) if w not in corpus_words]
        assert len(novel) >= 3, (sentence, novel)
    corpus_phones = {p for s in demo for p in phonemize(s)}  # the demo text tokenizer's inventory: no <unk>
    assert {p for s in NOVEL_SENTENCES for p in phonemize(s)} <= corpus_phones


def test_stage_3_trains_the_text_lms_and_stage_4_reports_their_figures(tiny_continuations):
    run = tiny_continuations.run_dir
    for task in ("reading", "transcription"):
        marker = rundir.read_marker(run / f"lm-{task}")
        assert marker["steps"] == 40 and marker["heldout_perplexity"] < marker["unigram_perplexity"], (task, marker)
    text = json.loads((run / "text-eval" / "results.json").read_text())
    figures = text["groups"]["training voices"]
    assert np.isfinite(figures["transcription"]["wer"]) and figures["transcription"]["cer"] >= 0  # a 40-step tiny LM
    reading, conversion = figures["reading"], figures["conversion"]
    assert reading["readings"] == conversion["conversions"] == 4 and reading["chance"] == 0.25
    assert reading["phone_error_rate"] >= 0 and 0 <= reading["speaker_accuracy"] <= 1
    assert {"target_voice_accuracy", "source_voice_accuracy", "wer", "source_wer"} <= set(conversion)
    assert len(list((run / "text-eval").glob("*.read.wav"))) == 4
    assert "## Text: transcription, reading, voice conversion" in (run / "report.md").read_text()


def test_speak_reads_any_text_in_the_voice_of_a_prompt_and_a_seed_fixes_it(model, speech):
    wav, rate = speech  # 22.05 kHz
    stereo = audio.to_mono(np.stack([wav, 0.5 * wav], axis=1))
    out = model.speak(NOVEL_SENTENCES[0], voice=stereo, sample_rate=rate, seed=2)
    assert out.dtype == np.float32 and len(out) > 0.3 * model.codec.sample_rate and np.sqrt(np.mean(out**2)) > 1e-4
    np.testing.assert_array_equal(out, model.speak(NOVEL_SENTENCES[0], voice=stereo, sample_rate=rate, seed=2))
    assert not np.array_equal(out, model.speak(NOVEL_SENTENCES[0], voice=stereo, sample_rate=rate, seed=3))
    assert len(model.speak(NOVEL_SENTENCES[1], seed=0)) > 0  # no voice: one of the corpus


def test_long_text_is_read_in_sentence_chunks(model):
    one = model.read_chunks(NOVEL_SENTENCES[2])
    many = model.read_chunks(" ".join(NOVEL_SENTENCES))
    assert len(one) == 1 and len(many) == len(NOVEL_SENTENCES)
    long = model.read_chunks(" ".join(["and the zebras gallop"] * 30) + ".")  # one sentence of 120 words
    assert len(long) > 1 and all(len(c) <= 100 for c in long)
    assert sum(map(len, long)) + len(long) - 1 == len(model.text.phonemes(" ".join(["and the zebras gallop"] * 30)))


def test_novel_sentences_are_read_and_their_phone_error_rate_measured(model, tiny_continuations):
    """The tiny model reads words it never saw; the demo's figure is measured by
    `test_novel_sentences_on_the_demo` (slow)."""
    per = novel_phone_error_rate(model, tiny_continuations)
    assert 0 < per < 10  # a 40-step tiny LM: often runs on past the end of a sentence


def novel_phone_error_rate(model, cfg) -> float:
    """The phone error rate of the reading LM's semantic ids for NOVEL_SENTENCES, each id read as the
    phone its training frames most often carry."""
    from audiolm.pipeline import lm_stage
    from audiolm.pipeline.text_metrics import token_unit_phones

    train = lm_stage.read_tokens(cfg)[0]["train"]
    phones = token_unit_phones(train, 16000, model.tokenizer.frame_rate, model.tokenizer.num_clusters)
    units = model.read(NOVEL_SENTENCES, seed=0)
    return error_rate([units_as_phones(u, phones) for u in units], [text_phones(phonemize(s)) for s in NOVEL_SENTENCES])


@pytest.mark.slow
def test_novel_sentences_on_the_demo():
    """Issue 16's target on the demo run with the text LMs (`make demo-text`): PER <= 40%."""
    from audiolm.config import load_config

    cfg = load_config(REPO / "pipelines" / "demo-text.yaml", [f"runs_dir={REPO / 'runs'}"])
    if not (cfg.run_dir / "lm-reading").is_dir():
        pytest.skip("no demo run with the text LMs (make demo-text)")
    per = novel_phone_error_rate(AudioLM.from_pretrained(cfg.run_dir), cfg)
    print(f"novel sentences: phone error rate {per:.1%}")
    assert per <= 0.40


@pytest.mark.parametrize("problem", ["empty text", "nothing speakable", "silent voice", "short voice"])
def test_speak_errors_are_one_line_naming_the_input(problem, tiny_continuations, tmp_path, capsys):
    """Through the command line's entry point in this process (a fresh one per case cost 5 s of imports;
    `test_cli_speak_transcribe_convert` runs it as its own process)."""
    text, voice = "Hello there.", None
    if problem == "empty text":
        text = "   "
    elif problem == "nothing speakable":
        text = "..."  # (eSpeak NG reads "!!!" aloud: "exclamation")
    else:
        voice = tmp_path / "voice.wav"
        seconds = 2.0 if problem == "silent voice" else 0.3
        noise = np.random.default_rng(0).normal(0, 0.1, int(seconds * 16000)).astype(np.float32)
        sf.write(voice, np.zeros_like(noise) if problem == "silent voice" else noise, 16000)
    args = ["speak", text, "-o", str(tmp_path / "out.wav"), "--model", str(tiny_continuations.run_dir)]
    code = cli.main([*args, *(["--voice", str(voice)] if voice else [])])
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert code != 0 and len(lines) == 1 and lines[0].startswith("error:"), stderr
    expected = {"empty text": "empty", "nothing speakable": "nothing speakable", "silent voice": "voice.wav: silent",
                "short voice": "voice.wav: audio too short"}[problem]
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "out.wav").exists()


def test_cli_speak_transcribe_convert(tiny_continuations, speech_wav, bad_audio_files, tmp_path, capsys):
    run = tiny_continuations.run_dir
    spoken = tmp_path / "spoken.wav"
    result = run_cli("speak", "Zebras gallop at dawn.", "--voice", speech_wav, "-o", spoken, "--model", run, "--seed", 4)
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again.wav"  # the same command in this process (a fresh one costs 5 s of imports)
    assert cli.main(["speak", "Zebras gallop at dawn.", "--voice", str(speech_wav), "-o", str(again), "--model", str(run),
                     "--seed", "4"]) == 0
    np.testing.assert_array_equal(sf.read(spoken)[0], sf.read(again)[0])  # seeded: the same audio
    converted = tmp_path / "converted.wav"
    assert cli.main(["convert", str(speech_wav), "--voice", str(spoken), "-o", str(converted), "--model", str(run)]) == 0
    assert abs(sf.info(converted).duration - sf.info(speech_wav).duration) < 0.1  # the source's words, its length
    jsonl = tmp_path / "texts.jsonl"
    corrupt = bad_audio_files[0][0]
    capsys.readouterr()
    assert cli.main(["transcribe", str(speech_wav), str(spoken), str(corrupt), "--model", str(run), "-o", str(jsonl)]) == 1
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "corrupt.wav" in stderr
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["path"] for r in rows] == [str(speech_wav), str(spoken)] and all(isinstance(r["text"], str) for r in rows)
    x = str(tmp_path / "x.wav")
    assert cli.main(["convert", str(speech_wav), "--voice", str(corrupt), "-o", x, "--model", str(run)]) != 0
    assert "corrupt.wav" in capsys.readouterr().err and not (tmp_path / "x.wav").exists()


@pytest.mark.slow  # 25 s; the bundle's text files are checked in test_hub
def test_a_saved_bundle_carries_the_text_parts(model, tiny_continuations, tmp_path, speech):
    from audiolm.pipeline import share

    out = share.save(tiny_continuations.run_dir, tmp_path / "bundle")
    for sub in ("text", "lm-reading", "lm-transcription"):
        assert (out / sub / "config.json").exists()
    assert set(json.loads((out / "config.json").read_text())["parts"]) >= {"text", "lm-reading", "lm-transcription"}
    card = (out / "README.md").read_text()
    assert "text tokenizer" in card and "audiolm speak" in card and "transcription WER" in card
    again = AudioLM.from_pretrained(out)
    wav, rate = speech
    np.testing.assert_array_equal(again.speak("Zebras gallop.", wav, rate, seed=1),
                                  model.speak("Zebras gallop.", wav, rate, seed=1))
    assert again.transcribe([wav], rate) == model.transcribe([wav], rate)


def test_a_text_lm_that_disagrees_with_the_text_tokenizer_is_refused(tiny_continuations, tmp_path):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(tiny_continuations.run_dir, folder, ignore=shutil.ignore_patterns("*-train", "continuations", "corpus"))
    config = json.loads((folder / "text" / "config.json").read_text())
    config["phones"] = config["phones"][:-1]
    (folder / "text" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"text tokenizer \(text/\) has number of phones .*\(lm-reading/\) expects"):
        AudioLM.from_pretrained(folder)
