import functools

import numpy as np
import pytest
import soundfile as sf

from audiolm import audio


def test_load_converts_stereo_44k_to_16k_mono(tmp_path, speech):
    wav, rate = speech
    stereo_44k = np.stack([audio.resample(wav, rate, 44100)] * 2, axis=1) * np.array([1.0, 0.5], dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo_44k, 44100)
    out, out_rate = audio.load(path, 16000)
    assert out_rate == 16000 and out.ndim == 1 and out.dtype == np.float32
    assert abs(len(out) - len(wav) * 16000 / rate) <= 2
    # the mono mix is the mean of the channels: 0.75 of the original, resampled
    ref = audio.resample(wav, rate, 16000) * 0.75
    n = min(len(ref), len(out))
    assert np.corrcoef(ref[:n], out[:n])[0, 1] > 0.99


def test_resample_keeps_a_tone(tmp_path):
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    up = audio.resample(tone, 16000, 24000)
    assert len(up) == 24000
    spectrum = np.abs(np.fft.rfft(up))
    assert abs(np.argmax(spectrum) * 24000 / len(up) - 440) < 2


def test_save_then_load_round_trip(tmp_path, speech):
    wav, rate = speech
    path = tmp_path / "out" / "x.wav"
    audio.save(path, wav, rate)
    back, back_rate = audio.load(path)
    assert back_rate == rate and np.max(np.abs(back - wav)) < 1e-3
    assert not list(path.parent.glob(".*tmp"))  # no temp file left behind


@pytest.mark.parametrize("case, problem", [
    ("missing", "no such file"),
    ("empty", "empty audio"),
    ("corrupt", "not a readable audio file"),
    ("text", "not a readable audio file"),
    ("nan", "NaN"),
])
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, speech_wav, case, problem):
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif case == "corrupt":
        path.write_bytes(speech_wav.read_bytes()[:30])
    elif case == "text":
        path.write_text("this is not audio\n" * 20)
    elif case == "nan":
        sf.write(path, np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(audio.AudioError) as err:
        audio.load(path)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_long_files_are_read_in_blocks_with_the_same_result(tmp_path, speech, monkeypatch):
    """Past STREAM_SECONDS a file is read, mixed down and resampled block by block (memory holds the
    result only); the audio is the one-pass result up to the resampler's rounding."""
    wav, rate = speech
    stereo = np.stack([np.tile(wav, 4), 0.5 * np.tile(wav, 4)], axis=1)
    path = tmp_path / "long.wav"
    sf.write(path, stereo, rate, subtype="FLOAT")
    whole, _ = audio.load(path, 16000)
    monkeypatch.setattr(audio, "STREAM_SECONDS", 1.0)
    monkeypatch.setattr(audio, "_read_blocks", functools.partial(audio._read_blocks, block_seconds=0.7))
    blocks, rate16 = audio.load(path, 16000)
    assert rate16 == 16000 and abs(len(blocks) - len(whole)) <= 1
    n = min(len(blocks), len(whole))
    assert np.abs(blocks[:n] - whole[:n]).max() < 1e-3
    native, _ = audio.load(path)
    tail, _ = audio.load(path, last_seconds=1.5)  # at the file's rate: the very same samples
    assert len(tail) == round(1.5 * rate) and np.array_equal(tail, native[-len(tail):])
    stereo[len(stereo) // 2, 1] = np.nan
    sf.write(path, stereo, rate, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match=r"long.wav: audio contains NaN or infinite samples \(at \d+\.\d s\)"):
        audio.load(path, 16000)
