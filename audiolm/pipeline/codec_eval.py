"""`audiolm codec-eval`: a codec at several numbers of codebooks against Opus, on the same clips.

Metrics (audiolm.codec.metrics): SI-SNR, multi-resolution mel distance, wide-band PESQ and STOI,
F0 error (cents, over frames voiced in both, gross errors apart) and voicing decision error, all
computed at 16 kHz. Opus goes through Debian's opus-tools (`opusenc --hard-cbr`, `opusdec`) when
they are installed; its bitrate is read back from the file size (Ogg overhead included). Clips of
voices the codec never trained on can be scored apart (`unseen`), and spectrograms of original
and resynthesis drawn for a few of them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.codec import Codec
from audiolm.codec.metrics import mel_distance, pesq_wb, pitch_errors, si_snr, stoi
from audiolm.data import shards
from audiolm.data.corpus import read_wavs
from audiolm.pipeline import rundir

EVAL_RATE = 16000
OPUS_MIN_KBPS = 6


@dataclass
class Row:
    name: str
    kbps: float
    si_snr: float
    mel: float
    pesq: float | None
    stoi: float | None
    f0_cents: float | None = None
    gross_pitch_error: float | None = None
    voicing_error: float | None = None


AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
MIN_SECONDS = 0.25


def load_clips(data: str, split: str = "heldout", max_clips: int = 40,
               speakers: list[str] | None = None) -> tuple[list[np.ndarray], list[audio.AudioError]]:
    """16 kHz clips from a corpus/token dataset folder (one split, only `speakers` if given; clips
    spread over the split's speakers) or a folder of audio files, and the files that could not be
    used (skipped, each error naming its file)."""
    path = Path(data)
    if shards.is_sharded(path):
        ds = shards.load_split(path, split)
        rate = (rundir.read_marker(path) or {}).get("sample_rate", 16000)
        rows = [i for i, s in enumerate(ds["speaker"]) if speakers is None or s in speakers]
        if speakers and not rows:
            raise ValueError(f"{data}: no '{split}' utterances of speakers {', '.join(speakers)}")
        rows = rows[:: max(1, len(rows) // max_clips)][:max_clips]  # every voice, not the first few
        return read_wavs(ds, rows, rate, EVAL_RATE), []
    if path.is_dir():
        clips, skipped = [], []
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            try:
                wav = audio.load(file, EVAL_RATE)[0]
                clips.append(audio.check_waveform(wav, file, MIN_SECONDS, EVAL_RATE))  # PESQ and STOI need some
            except audio.AudioError as err:
                skipped.append(err)
            if len(clips) == max_clips:
                break
        return clips, skipped
    raise FileNotFoundError(f"{data}: neither a dataset folder nor a folder of audio files")


def _row(name: str, kbps: float, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Row:
    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    # Harvest runs at ~4x real time in one thread: the clips' pitch tracks go to one process per core
    with ProcessPoolExecutor(max(1, min(len(pairs), len(os.sched_getaffinity(0))))) as pool:
        pitch = list(pool.map(pitch_errors, [e for e, _ in pairs], [r for _, r in pairs], [EVAL_RATE] * len(pairs)))
    return Row(name, kbps, mean(si_snr(e, r) for e, r in pairs), mean(mel_distance(e, r, EVAL_RATE) for e, r in pairs),
               mean(pesq_wb(e, r) for e, r in pairs), mean(stoi(e, r) for e, r in pairs),
               mean(p.f0_cents for p in pitch), mean(p.gross_error for p in pitch), mean(p.voicing_error for p in pitch))


def resynthesize(codec: Codec, clip: np.ndarray, k: int) -> np.ndarray:
    """A 16 kHz clip through the codec with k codebooks, back at 16 kHz and the clip's length."""
    x = torch.from_numpy(audio.resample(clip, EVAL_RATE, codec.sample_rate)).unsqueeze(0).to(codec.device)
    y = codec.decode(codec.encode(x, k))[0].float().cpu().numpy()
    return audio.resample(y, codec.sample_rate, EVAL_RATE)[: len(clip)]


def codec_rows(codec: Codec, clips: list[np.ndarray], codebooks: list[int], label: str = "") -> list[Row]:
    rows = []
    for k in codebooks:
        pairs = [(resynthesize(codec, clip, k), clip) for clip in tqdm(clips, desc=f"codec k={k}", leave=False)]
        rows.append(_row(f"codec, {k} codebook{'s' if k > 1 else ''}{label}", codec.bitrate(k) / 1000, pairs))
    return rows


def plot_resyntheses(codec: Codec, clips: list[np.ndarray], folder: Path, name: str = "clip") -> list[Path]:
    """One PNG per clip: log-mel spectrograms of the original and its resynthesis (all codebooks)
    on one time axis, so harmonics (or their absence) can be seen."""
    from audiolm.pipeline.report import compare_spectrograms

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, clip in enumerate(clips):
        path = folder / f"{name}-{i:02d}.png"
        title = f"codec, {codec.num_codebooks} codebooks, {codec.bitrate() / 1000:g} kbps"
        compare_spectrograms([("original", clip), (title, resynthesize(codec, clip, codec.num_codebooks))], EVAL_RATE, path)
        paths.append(path)
    return paths


def opus_available() -> bool:
    return shutil.which("opusenc") is not None and shutil.which("opusdec") is not None


def opus_row(clips: list[np.ndarray], kbps: float, label: str = "") -> Row:
    pairs, bits, seconds = [], 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i, clip in enumerate(tqdm(clips, desc=f"opus {kbps:g} kbps", leave=False)):
            src, enc, dec = Path(tmp, f"{i}.wav"), Path(tmp, f"{i}.opus"), Path(tmp, f"{i}.dec.wav")
            audio.save(src, clip, EVAL_RATE)
            subprocess.run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", f"{kbps:g}", str(src), str(enc)], check=True)
            subprocess.run(["opusdec", "--quiet", "--rate", "48000", str(enc), str(dec)], check=True)
            bits += enc.stat().st_size * 8
            seconds += len(clip) / EVAL_RATE
            y = audio.load(dec, EVAL_RATE)[0]
            pairs.append((y[: len(clip)], clip))
    return _row(f"Opus {kbps:g} kbps CBR{label}", bits / seconds / 1000, pairs)


def format_table(rows: list[Row]) -> str:
    def f(v, spec):
        return "n/a" if v is None else format(v, spec)

    lines = ["| system | kbps | SI-SNR (dB) | mel distance | PESQ-WB | STOI | F0 error (cents) | gross F0 errors "
             "| voicing error |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.kbps:.2f} | {f(r.si_snr, '.1f')} | {f(r.mel, '.3f')} | {f(r.pesq, '.2f')} | {f(r.stoi, '.3f')} | "
              f"{f(r.f0_cents, '.0f')} | {f(r.gross_pitch_error, '.1%')} | {f(r.voicing_error, '.1%')} |" for r in rows]
    return "\n".join(lines)
