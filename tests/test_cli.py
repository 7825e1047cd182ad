"""`audiolm tokenize semantic`: real files in, .npy out; bad files give one line and a non-zero exit."""

import subprocess
import sys

import numpy as np
import soundfile as sf

from audiolm import audio

from .conftest import REPO


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "audiolm.cli", *map(str, args)], cwd=REPO, capture_output=True, text=True)


def test_tokenize_writes_one_row_per_file_and_converts_stereo_44k(tiny_run, tmp_path, speech):
    wav, rate = speech
    mono = tmp_path / "mono.wav"
    sf.write(mono, wav, rate)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([audio.resample(wav, rate, 44100)] * 2, axis=1), 44100)
    out = tmp_path / "out"
    res = _cli("tokenize", "semantic", "--model", tiny_run.run_dir / "semantic", mono, stereo, "-o", out)
    assert res.returncode == 0, res.stderr
    a, b = np.load(out / "mono.npy"), np.load(out / "stereo.npy")
    assert a.dtype == np.int64 and a.ndim == 1 and abs(len(a) - len(wav) / rate * 50) <= 2
    assert abs(len(a) - len(b)) <= 1 and np.mean(a[: len(b)] == b[: len(a)]) > 0.8


def test_bad_inputs_give_one_line_each_and_exit_nonzero(tiny_run, tmp_path, speech_wav):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(speech_wav.read_bytes()[:40])
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all\n")
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    for path, problem in [(corrupt, "not a readable audio file"), (empty, "empty audio"),
                          (text, "not a readable audio file"), (missing, "no such file")]:
        res = _cli("tokenize", "semantic", "--model", tiny_run.run_dir / "semantic", path, "-o", out)
        lines = res.stderr.strip().splitlines()
        assert res.returncode != 0 and len(lines) == 1, res.stderr
        assert str(path) in lines[0] and problem in lines[0] and "Traceback" not in res.stderr
    # a good file next to a bad one is still written
    res = _cli("tokenize", "semantic", "--model", tiny_run.run_dir / "semantic", missing, speech_wav, "-o", out)
    assert res.returncode != 0 and (out / "speech.npy").exists()


def test_wrong_model_folder(tmp_path, speech_wav):
    res = _cli("tokenize", "semantic", "--model", tmp_path, speech_wav, "-o", tmp_path / "o")
    assert res.returncode == 2 and "not a semantic tokenizer folder" in res.stderr
