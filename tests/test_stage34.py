"""Stages 3 and 4 on the tiny pipeline, and `audiolm continue`: continuations exist, have the asked
length, start with their prompt and are not silent; bad input is one line of error."""

import json

import numpy as np
import pytest
import soundfile as sf

from audiolm import AudioLM, audio, cli
from audiolm.pipeline import continue_stage, lm_stage, rundir
from tests.conftest import run_cli


def test_each_lm_reports_perplexities(tiny_continuations):
    for task in ("semantic", "coarse", "fine"):
        marker = rundir.read_marker(tiny_continuations.run_dir / f"lm-{task}")
        assert marker["steps"] == 60 and marker["unigram_perplexity"] > 1
        # context helps: held-out ids are better predicted than by their train-split frequencies
        assert marker["heldout_perplexity"] < marker["unigram_perplexity"], (task, marker)
        assert (tiny_continuations.run_dir / f"lm-{task}-train" / "log.jsonl").exists()


def test_continuations_have_the_asked_length_and_start_with_their_prompt(tiny_continuations):
    cfg = tiny_continuations
    out = cfg.run_dir / "continuations"
    results = json.loads((out / "results.json").read_text())
    assert len(results["examples"]) == 4 and results["voices"] == 4  # spread over the voices
    frame = 1 / 50
    for example in results["examples"]:
        prompt, rate = audio.load(out / f"{example}.prompt.wav")
        cont, _ = audio.load(out / f"{example}.continuation.wav")
        full, _ = audio.load(out / f"{example}.full.wav")
        assert abs(len(cont) / rate - cfg.continuation.seconds) <= frame
        assert abs(len(prompt) / rate - cfg.continuation.prompt_seconds) <= frame
        np.testing.assert_allclose(full[: len(prompt)], prompt, atol=1e-4)
        np.testing.assert_allclose(full[len(prompt) :], cont, atol=1e-4)
        assert np.sqrt(np.mean(cont**2)) > 1e-4  # not silent
    judged = results["speaker"]["training voices"]  # the tiny corpus has no unseen voices
    assert judged["voices"] == 4 and judged["chance"] == 0.25
    assert set(judged["scores"]) == {"true continuation", "swapped", "true continuation, through the codec",
                                     "swapped, through the codec", "continuation", "semantic-only"}
    scores = judged["scores"]  # the judges, calibrated: true continuations named right, swapped ones not
    assert scores["true continuation"]["accuracy"] == 1 and scores["swapped"]["accuracy"] == 0
    assert scores["true continuation"]["cosine"] > scores["swapped"]["cosine"]
    report = (cfg.run_dir / "report.md").read_text()
    assert "held-out perplexity" in report and "named as the prompt's voice" in report
    assert (cfg.run_dir / "report" / "loss_curves.png").stat().st_size > 1000
    assert (cfg.run_dir / "report" / f"{results['examples'][0]}.png").exists()
    page = (cfg.run_dir / "report.html").read_text()  # self-contained: every figure and sound inlined
    shown = min(len(results["examples"]), cfg.continuation.report_examples)
    assert page.count('<audio controls preload="metadata" src="data:audio/wav;base64,') == 4 * shown
    assert page.count('src="data:image/png;base64,') == report.count("![")  # each figure of report.md
    assert 'src="report/' not in page and "<table>" in page


def test_stage_3_and_4_are_no_ops_when_up_to_date(tiny_continuations, capsys):
    lm_stage.run(tiny_continuations)
    continue_stage.run(tiny_continuations)
    out = capsys.readouterr().out
    assert out.count("is up to date") == 6  # five LMs (three and the two text LMs), stage 4


def test_python_api_continues_a_prompt_of_any_rate_and_channels(tiny_continuations, speech):
    wav, rate = speech  # 22.05 kHz
    model = AudioLM.from_pretrained(tiny_continuations.run_dir)
    stereo = np.stack([wav, 0.5 * wav], axis=1)
    out = model.continue_speech(audio.to_mono(stereo), rate, seconds=0.7, seed=1)
    assert out.dtype == np.float32 and abs(len(out) / model.codec.sample_rate - 0.7) <= 1 / 50
    again = model.continue_speech(audio.to_mono(stereo), rate, seconds=0.7, seed=1)
    np.testing.assert_array_equal(out, again)  # a seed fixes the continuation


def test_cli_continue(tiny_continuations, speech_wav, tmp_path, capsys):
    run = tiny_continuations.run_dir
    out = tmp_path / "out.wav"
    result = run_cli("continue", speech_wav, "-o", out, "--model", run, "--seconds", 0.5, "--temperature", 0.7,
                     "--top-p", 0.9, "--seed", 3, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    wav, rate = sf.read(out)
    assert abs(len(wav) / rate - 0.5) <= 1 / 50
    full = tmp_path / "full.wav"  # the next two in this process (a fresh one costs 5 s of imports)
    assert cli.main(["continue", str(speech_wav), "-o", str(full), "--model", str(run), "--seconds", "0.5",
                     "--include-prompt"]) == 0
    prompt_seconds = sf.info(speech_wav).duration
    assert abs(sf.info(full).duration - prompt_seconds - 0.5) <= 2 / 50
    streamed = tmp_path / "streamed.wav"  # written as it is generated: the same file
    capsys.readouterr()
    assert cli.main(["continue", str(speech_wav), "-o", str(streamed), "--model", str(run), "--seconds", "0.5",
                     "--include-prompt", "--stream"]) == 0
    assert "first audio after" in capsys.readouterr().out and not streamed.with_name("streamed.wav.part").exists()
    np.testing.assert_allclose(sf.read(streamed)[0], sf.read(full)[0], atol=3 / 2**15)


@pytest.mark.parametrize("problem", ["short", "corrupt", "missing model"])
def test_cli_continue_errors_are_one_line(problem, tiny_continuations, bad_audio_files, tmp_path, capsys):
    prompt = bad_audio_files[0][0]  # corrupt
    model = tiny_continuations.run_dir
    if problem == "short":
        prompt = tmp_path / "short.wav"
        sf.write(prompt, np.random.default_rng(0).normal(0, 0.1, 200).astype(np.float32), 16000)  # 12.5 ms < a frame
    elif problem == "missing model":
        prompt, model = bad_audio_files[0][0].with_name("speech.wav"), tmp_path / "no-such-run"
    assert cli.main(["continue", str(prompt), "-o", str(tmp_path / "out.wav"), "--model", str(model)]) != 0  # in process
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    expected = {"short": ("short.wav", "shorter than one codec frame"), "corrupt": ("corrupt.wav", "not a readable audio file"),
                "missing model": ("no-such-run", "no such folder")}[problem]
    assert all(text in lines[0] for text in expected), lines[0]
    assert not (tmp_path / "out.wav").exists()


def test_deduplicated_semantic_ids_are_re_expanded_to_the_asked_length(tiny_continuations, speech, monkeypatch):
    """A semantic LM over ids without repeats continues the prompt's deduplicated ids; each new id is
    then held for the mean run length, to exactly the frames the asked duration needs."""
    import dataclasses

    from audiolm import continuation
    from audiolm.tokens import dedup, frames_at

    wav, rate = speech
    model = AudioLM.from_pretrained(tiny_continuations.run_dir)
    model.specs["semantic"] = dataclasses.replace(model.specs["semantic"], dedup=True, mean_run=2.5)
    calls, semantic_lm, acoustic_lm = [], continuation.continue_stream, continuation.extend_stream

    def spy(lm, spec, semantic, codes, known, total, *rest, **kwargs):
        out = (semantic_lm if spec.task == "semantic" else acoustic_lm)(lm, spec, semantic, codes, known, total, *rest, **kwargs)
        calls.append(([np.asarray(s) for s in semantic], known, total, out))
        return out

    monkeypatch.setattr(continuation, "continue_stream", spy)
    monkeypatch.setattr(continuation, "extend_stream", spy)
    (out,) = model.continue_batch([wav], rate, seconds=0.8, seed=0)
    assert abs(len(out.continuation) / out.sample_rate - 0.8) <= 1 / 50
    ((deduped,), known_d, total_d, stream), ((ids,), known_a, total_a, _) = calls[0], calls[1]  # semantic LM, coarse LM
    (known_d,), (total_d,), (known_a,), (total_a,) = (np.ravel(n).tolist() for n in (known_d, total_d, known_a, total_a))
    rate_s, rate_a = model.tokenizer.frame_rate, model.codec.frame_rate
    prompt = frames_at(known_a, rate_a, rate_s)
    assert len(ids) == frames_at(total_a, rate_a, rate_s)  # the asked length, not the generated count
    np.testing.assert_array_equal(deduped, dedup(ids[:prompt]))  # the LM saw the prompt without repeats
    new = stream[0, known_d:total_d]
    assert len(new) == round((len(ids) - prompt) / 2.5)
    held = [new[min(int(j / 2.5), len(new) - 1)] for j in range(len(ids) - prompt)]
    np.testing.assert_array_equal(ids[prompt:], held)  # each new id held for 2-3 frames


@pytest.mark.slow  # 16 s; every stage's kill and resume is test_kill_and_resume's
def test_stage_4_killed_mid_way_redoes_only_the_unfinished_batch(tiny_continuations, monkeypatch):
    cfg = tiny_continuations
    out = cfg.run_dir / "continuations"
    examples = json.loads((out / "results.json").read_text())["examples"]
    last = examples[-1]  # batches of 3: the last prompt is alone in the second batch
    before = (out / f"{last}.continuation.wav").read_bytes()
    marker = rundir.read_marker(out)
    rundir.write_marker(out, marker["config_hash"], stage="continuations (partial)")  # as a killed run leaves it
    (out / f"{last}.continuation.wav").unlink()
    calls = []
    original = AudioLM.continue_batch

    def counted(self, wavs, *args, **kwargs):
        calls.append(len(wavs))
        return original(self, wavs, *args, **kwargs)

    monkeypatch.setattr(AudioLM, "continue_batch", counted)
    continue_stage.run(cfg)
    assert calls == [1, 1]  # one batch of one prompt, with and without the acoustic prompt
    assert (out / f"{last}.continuation.wav").read_bytes() == before  # seeded per batch: the same audio
    assert rundir.read_marker(out)["complete"]


def _copy_model(run, to):
    import shutil

    for folder in ("semantic", "codec", "lm-semantic", "lm-coarse", "lm-fine"):
        shutil.copytree(run / folder, to / folder)
    return to


def test_a_model_whose_parts_disagree_is_refused_naming_both(tiny_continuations, tmp_path):
    model = _copy_model(tiny_continuations.run_dir, tmp_path / "model")
    config = model / "lm-coarse" / "config.json"
    values = json.loads(config.read_text())
    values["task"]["layout"]["codebook_size"] //= 2
    config.write_text(json.dumps(values))
    expected = r"the codec \(codec/\) has codebook size 64, but the coarse LM \(lm-coarse/\) expects 32"
    with pytest.raises(ValueError, match=expected):
        AudioLM.from_pretrained(model)


def test_a_model_folder_with_a_pickle_is_refused(tiny_continuations, tmp_path):
    model = _copy_model(tiny_continuations.run_dir, tmp_path / "model")
    (model / "lm-fine" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"pytorch_model.bin: a pickle"):
        AudioLM.from_pretrained(model)


def test_a_long_prompt_is_cut_to_its_end(tiny_continuations, speech):
    wav, rate = speech
    model = AudioLM.from_pretrained(tiny_continuations.run_dir)
    long = np.tile(wav, int(40 * rate / len(wav)) + 1)  # over 40 s
    (out,) = model.continue_batch([long], rate, seconds=0.3, seed=0)
    assert model.max_prompt_seconds == 30.0
    assert abs(len(out.prompt) / out.sample_rate - 30.0) <= 1 / 50 and len(out.continuation) > 0
