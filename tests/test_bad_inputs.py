"""Every command that reads audio, on the generated corpus of awkward and broken files
(`tests/bad_audio.py`): each file is converted, or answered with one line naming it and its problem,
never a traceback; a batch skips the bad files, lists them, and writes the good ones."""

from __future__ import annotations

import pytest

from audiolm import cli
from tests.bad_audio import make_corpus
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech):
    return make_corpus(tmp_path_factory.mktemp("awkward") / "corpus", *speech)


def _check_batch(result, cases, out, suffix, bad_names):
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert lines[-1] == (f"error: skipped {len(bad_names)} of {len(cases)} files (listed above); "
                         f"the other {len(cases) - len(bad_names)} were written")
    assert len(lines) == len(bad_names) + 1
    for name, case in cases.items():
        naming = [line for line in lines if f"{case.path}:" in line]
        if name in bad_names:
            assert len(naming) == 1 and naming[0].startswith("error: "), (name, lines)
            assert case.expect in naming[0] or case.short, (name, naming[0])
        else:
            assert not naming, (name, naming)
            stem = case.path.stem if sum(c.path.stem == case.path.stem for c in cases.values()) == 1 else case.path.name
            assert (out / f"{stem}{suffix}").stat().st_size > 0, name


def test_tokenize_semantic_on_every_awkward_file(corpus, tiny_run, tmp_path):
    out = tmp_path / "ids"
    result = run_cli("tokenize", "semantic", "--model", tiny_run.run_dir / "semantic",
                     *[c.path for c in corpus.values()], "-o", out)
    bad = {n for n, c in corpus.items() if c.expect != "ok" or c.short}
    _check_batch(result, corpus, out, ".npy", bad)
    assert "too short for a single token frame" in result.stderr


def test_encode_on_every_awkward_file(corpus, tiny_continuations, tmp_path):
    out = tmp_path / "codes"
    result = run_cli("encode", "--codec", tiny_continuations.run_dir / "codec", *[c.path for c in corpus.values()],
                     "-o", out)
    _check_batch(result, corpus, out, ".npy", {n for n, c in corpus.items() if c.expect != "ok"})
    assert (out / "speech.flac.npy").exists() and (out / "speech.mp3.npy").exists()  # same stem: whole names


def test_continue_on_every_awkward_file(corpus, tiny_continuations, tmp_path, capsys):
    model = str(tiny_continuations.run_dir)
    for name, case in corpus.items():
        out = tmp_path / f"{name.replace('/', '_')}.out.wav"
        code = cli.main(["continue", str(case.path), "-o", str(out), "--model", model, "--seconds", "0.2"])
        err = capsys.readouterr().err.strip()
        if case.expect == "ok" and not case.short:
            assert code == 0 and out.stat().st_size > 0, (name, err)
        else:
            assert code != 0 and not out.exists(), name
            assert len(err.splitlines()) == 1 and err.startswith(f"error: {case.path}:"), (name, err)
            assert (case.expect if not case.short else "shorter than one codec frame") in err, (name, err)


def test_codec_eval_reads_the_good_files_of_a_folder_and_names_the_bad(corpus):
    """What codec-eval reads of a folder (`codec_eval.load_clips`): every readable clip long enough to
    score, and one error naming each file it skipped and why; the whole command on it is the slow test
    below."""
    from audiolm.pipeline import codec_eval

    folder = next(iter(corpus.values())).path.parent
    clips, skipped = codec_eval.load_clips(str(folder), max_clips=40)
    in_folder = {n for n, c in corpus.items() if (c.expect != "ok" or c.short) and c.path.parent == folder
                 and n != "missing.wav"}
    assert len(skipped) == len(in_folder) and clips
    assert any("one_ms.wav" in str(err) and "audio too short" in str(err) for err in skipped)
    assert all(len(c) >= codec_eval.MIN_SECONDS * codec_eval.EVAL_RATE for c in clips)


@pytest.mark.slow  # 22-25 s on 2 slow cores (metrics and Opus on every good clip): make test stays under 10 min
def test_codec_eval_skips_the_bad_files_of_a_folder(corpus, tiny_continuations):
    folder = next(iter(corpus.values())).path.parent
    result = run_cli("codec-eval", "--codec", tiny_continuations.run_dir / "codec", "--data", folder,
                     "--num-codebooks", "1", "--max-clips", "40")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    skipped = [line for line in result.stderr.splitlines() if line.startswith("error: skipped")]
    in_folder = {n for n, c in corpus.items() if (c.expect != "ok" or c.short) and c.path.parent == folder
                 and n != "missing.wav"}
    assert any("one_ms.wav: audio too short" in line for line in skipped)
    assert len(skipped) == len(in_folder) and "codec, 1 codebook" in result.stdout
