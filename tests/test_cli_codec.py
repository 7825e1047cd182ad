"""`audiolm encode` / `decode` / `codec-eval` on the tiny pipeline's codec."""

import numpy as np
import pytest
import soundfile as sf

from audiolm import cli
from audiolm.pipeline import codec_stage

from .conftest import run_cli

_cli = run_cli


@pytest.fixture(scope="module")
def tiny_codec_dir(tiny_run):
    codec_stage.run(tiny_run)
    return tiny_run.run_dir / "codec"


def test_encode_decode_round_trip(tiny_codec_dir, speech_wav, tmp_path):
    res = _cli("encode", "--codec", tiny_codec_dir, speech_wav, "-o", tmp_path / "codes")
    assert res.returncode == 0, res.stderr
    codes = np.load(tmp_path / "codes" / "speech.npy")
    info = sf.info(speech_wav)
    assert codes.dtype == np.int64 and codes.shape[0] == 4 and 0 <= codes.min() and codes.max() < 64
    assert abs(codes.shape[1] - info.duration * 50) <= 1
    # the rest through the same entry point in this process (a fresh one costs 5 s of imports)
    assert cli.main(["decode", "--codec", str(tiny_codec_dir), str(tmp_path / "codes" / "speech.npy"), "-o",
                     str(tmp_path / "wav")]) == 0
    out = sf.info(tmp_path / "wav" / "speech.wav")
    assert out.samplerate == 16000 and abs(out.duration - info.duration) <= 1 / 50
    # fewer codebooks
    assert cli.main(["encode", "--codec", str(tiny_codec_dir), str(speech_wav), "-o", str(tmp_path / "k1"),
                     "--num-codebooks", "1", "--device", "cpu"]) == 0
    assert np.load(tmp_path / "k1" / "speech.npy").shape[0] == 1
    assert cli.main(["decode", "--codec", str(tiny_codec_dir), str(tmp_path / "k1" / "speech.npy"), "-o",
                     str(tmp_path / "wav1")]) == 0
    assert sf.info(tmp_path / "wav1" / "speech.wav").frames > 0


@pytest.mark.slow  # 20-30 s on 2 slow cores: make test stays under 10 min (encode's bad files: test_bad_inputs)
def test_bad_files_one_line_each(tiny_codec_dir, tmp_path, bad_audio_files):
    for path, problem in bad_audio_files:
        res = _cli("encode", "--codec", tiny_codec_dir, path, "-o", tmp_path / "o")
        lines = res.stderr.strip().splitlines()
        assert res.returncode != 0 and len(lines) == 1 and str(path) in lines[0] and problem in lines[0], res.stderr
    text = bad_audio_files[2][0]
    bad_codes = tmp_path / "bad.npy"
    np.save(bad_codes, np.full((4, 10), 999, dtype=np.int64))
    res = _cli("decode", "--codec", tiny_codec_dir, bad_codes, text, "-o", tmp_path / "o")
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 3 and "codes must lie in [0, 64)" in lines[0] and str(text) in lines[1]
    assert lines[2].startswith("error: skipped 2 of 2 files")
    assert "Traceback" not in res.stderr


def _table(stdout: str) -> dict[str, list[str]]:
    rows = [line.strip("| ").split(" | ") for line in stdout.splitlines() if line.startswith("| ") and "---" not in line]
    return {r[0]: r[1:] for r in rows[1:]}


@pytest.mark.slow  # ~28 s on 2 slow cores: make test stays under 10 min
def test_codec_eval_table(tiny_codec_dir, tiny_run):
    """Each codebook count and Opus get a row of metrics computed on the clips: a codec trained for 6
    steps scores below Opus at 6 kbps on every column (the same clips, in the same run)."""
    from audiolm.pipeline.codec_eval import opus_available

    res = _cli("codec-eval", "--codec", tiny_codec_dir, "--data", tiny_run.run_dir / "corpus", "--num-codebooks", "1", "4",
               "--max-clips", "3", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    table = _table(res.stdout)
    assert table["codec, 1 codebook"][0] == "0.30" and table["codec, 4 codebooks"][0] == "1.20"  # 50 Hz x 6 bits x k
    for name, cells in table.items():
        si_snr, mel, pesq, stoi = (float(c) for c in cells[1:5])  # n/a would fail here
        assert 1.0 <= pesq <= 4.65 and 0 <= stoi <= 1 and mel >= 0, (name, cells)
    if not opus_available():
        assert "Opus skipped" in res.stdout
        pytest.skip("opusenc/opusdec not installed (Debian package opus-tools): Opus row not compared")
    opus = next(cells for name, cells in table.items() if name.startswith("Opus 6 kbps"))
    assert 6.0 <= float(opus[0]) <= 12.0  # measured from the files' sizes: Ogg's overhead shows on short clips
    codec = table["codec, 4 codebooks"]
    assert float(opus[1]) > float(codec[1]) and float(opus[2]) < float(codec[2])  # SI-SNR, mel distance
    assert float(opus[3]) > float(codec[3]) and float(opus[4]) > float(codec[4])  # PESQ, STOI
