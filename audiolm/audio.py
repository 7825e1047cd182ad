"""Audio I/O: the only module that reads, writes or resamples audio.

Every waveform inside the library is float32, mono, shape [n], at a known sample rate.
Bad input raises `AudioError`, whose message names the file and the problem, so a
command line can print it as one line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """Audio that cannot be used, with the file (or source) and the problem in the message."""

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):  # pickled by its two fields (the web page's generation process sends it back)
        return type(self), (self.source, self.problem)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] (soundfile's layout) -> [n], averaging channels."""
    if wav.ndim == 1:
        return wav
    if wav.ndim == 2:
        return wav.mean(axis=1)
    raise ValueError(f"expected [n] or [n, channels] audio, got shape {wav.shape}")


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling of mono float audio (soxr, high quality)."""
    if from_rate == to_rate:
        return wav
    return soxr.resample(wav, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def check_waveform(wav: np.ndarray, source: str | os.PathLike, min_seconds: float = 0.0, sample_rate: int = 16000) -> np.ndarray:
    """Reject empty, non-finite or too-short audio with an error naming `source`."""
    if wav.size == 0:
        raise AudioError(source, "empty audio (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(source, "audio contains NaN or infinite samples")
    if wav.shape[-1] < min_seconds * sample_rate:
        have = wav.shape[-1] / sample_rate
        raise AudioError(source, f"audio too short: {have:.3f} s, need at least {min_seconds:.3f} s")
    return wav


SILENT_RMS = 1e-4  # -80 dBFS: a recording this quiet holds no voice to take and nothing to continue


def check_audible(wav: np.ndarray, source: str | os.PathLike) -> np.ndarray:
    """Reject silence (an unplugged microphone, a muted recording) with an error naming `source`."""
    if float(np.sqrt(np.mean(np.asarray(wav, dtype=np.float64) ** 2))) < SILENT_RMS:
        raise AudioError(source, "silent (nothing above -80 dBFS)")
    return wav


def prepare(wav: np.ndarray, rate: int, target_rate: int, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Any channel layout and rate -> float32 mono at `target_rate`, checked."""
    wav = to_mono(np.asarray(wav, dtype=np.float32))
    check_waveform(wav, source)
    return resample(wav, rate, target_rate).astype(np.float32, copy=False)


STREAM_SECONDS = 300.0  # longer files are read, mixed down and resampled block by block


def load(path: str | os.PathLike, sample_rate: int | None = None,
         last_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono; resample to `sample_rate` when given; `last_seconds`:
    only the end of the file (a prompt's tail), read without the rest.

    Returns (wav [n], rate). Any file soundfile (libsndfile) reads works: wav, flac, ogg, mp3.
    Files over STREAM_SECONDS are read in blocks, so memory holds the result, not the file's
    channels at its own rate as well.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:  # a permission, a broken or looping link: say so, not "not audio"
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise AudioError(path, f"cannot be opened ({err.strerror or type(err).__name__})") from None
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            if last_seconds is not None and f.seekable() and f.frames > last_seconds * rate:
                f.seek(f.frames - round(last_seconds * rate))
            if f.frames - f.tell() > STREAM_SECONDS * rate:
                return _read_blocks(f, path, sample_rate)
            wav = f.read(dtype="float32", always_2d=False)
    except sf.LibsndfileError as err:
        raise AudioError(path, f"not a readable audio file ({_short(err)})") from None
    except (RuntimeError, ValueError) as err:
        raise AudioError(path, f"corrupt audio ({_short(err)})") from None
    return _finish(wav, rate, path, sample_rate)


def _read_blocks(f: sf.SoundFile, path: Path, sample_rate: int | None, block_seconds: float = 30.0) -> tuple[np.ndarray, int]:
    rate = f.samplerate
    target = sample_rate or rate
    stream = soxr.ResampleStream(rate, target, 1, dtype="float32", quality="HQ") if target != rate else None
    parts, start = [], f.tell()
    for block in f.blocks(blocksize=round(block_seconds * rate), dtype="float32", always_2d=True):
        mono = block.mean(axis=1)
        if not np.isfinite(mono).all():
            at = (start + int(np.argmin(np.isfinite(mono)))) / rate
            raise AudioError(path, f"audio contains NaN or infinite samples (at {at:.1f} s)")
        parts.append(stream.resample_chunk(mono) if stream else mono)
        start += len(block)
    if stream:
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    wav = np.concatenate(parts).astype(np.float32, copy=False)
    return check_waveform(wav, path), target


def decode_bytes(data: bytes, source: str, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an encoded audio file held in memory (e.g. a Hub dataset's FLAC bytes)."""
    import io

    try:
        wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(source, f"not a readable audio file ({_short(err)})") from None
    return _finish(wav, rate, source, sample_rate)


def encode_flac(wav: np.ndarray, sample_rate: int) -> bytes:
    """Mono float audio as 16-bit FLAC bytes (lossless at 16 bits: what a corpus stores, about half
    the size of PCM for speech)."""
    import io

    buffer = io.BytesIO()
    pcm = np.round(np.clip(np.asarray(wav, dtype=np.float32), -1.0, 32767 / 32768) * 32768).astype(np.int16)
    sf.write(buffer, pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _finish(wav: np.ndarray, rate: int, source, sample_rate: int | None) -> tuple[np.ndarray, int]:
    wav = to_mono(wav)
    check_waveform(wav, source)
    if sample_rate is not None:
        wav, rate = resample(wav, rate, sample_rate), sample_rate
    return wav, rate


def save(path: str | os.PathLike, wav: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM wav atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, wav, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except sf.LibsndfileError as err:  # libsndfile's own error for a full disk: an OSError like any other write
        raise OSError(f"{path}: cannot write ({_short(err)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_stream(path: str | os.PathLike, chunks: Iterable[np.ndarray], sample_rate: int) -> int:
    """Write 16-bit PCM wav as its chunks arrive: to `<path>.part`, its header brought up to date
    after every chunk so that a player can follow it, renamed to `path` once the last chunk is in
    (removed if the chunks fail). Returns the samples written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part, written = path.with_name(path.name + ".part"), 0
    try:
        with sf.SoundFile(part, "w", sample_rate, 1, subtype="PCM_16", format="WAV") as f:
            for chunk in chunks:
                f.write(np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0))
                f.flush()
                written += len(chunk)
        os.replace(part, path)
    except sf.LibsndfileError as err:
        raise OSError(f"{path}: cannot write ({_short(err)})") from None
    finally:
        part.unlink(missing_ok=True)
    return written


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text


def mel_filters(sample_rate: int, n_fft: int, num_mels: int, min_hz: float = 20.0):
    """Slaney mel filterbank as a torch tensor [n_fft // 2 + 1, num_mels] (transformers' implementation)."""
    import torch
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=num_mels, min_frequency=min_hz,
                           max_frequency=sample_rate / 2, sampling_rate=sample_rate, norm="slaney", mel_scale="slaney")
    return torch.from_numpy(bank).float()
