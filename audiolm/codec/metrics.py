"""Codec quality metrics on waveforms at one rate: SI-SNR, multi-resolution mel distance,
(where the packages are installed) wide-band PESQ and STOI, which expect 16 kHz audio, and pitch:
F0 error in cents over frames voiced in both signals and the voicing decision error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from audiolm.audio import mel_filters


class MultiResolutionMel:
    """Log10 mel spectrograms at six window lengths, 2^5..2^10 samples at 16 kHz (EnCodec/DAC's
    multi-resolution mel loss, used here as a distance)."""

    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024), num_mels: int = 64):
        self.windows = windows
        self.mels = {w: mel_filters(sample_rate, w, min(num_mels, w // 4)) for w in windows}
        self.hann = {w: torch.hann_window(w) for w in windows}

    def log_mel(self, wav: torch.Tensor, w: int) -> torch.Tensor:
        spec = torch.stft(wav.float(), n_fft=w, hop_length=w // 4, window=self.hann[w], return_complex=True)
        return torch.log10((spec.abs().pow(2).transpose(1, 2) @ self.mels[w]).clamp_min(1e-5))  # [b, frames, mels]

    def distance(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        pairs = ((self.log_mel(estimate, w), self.log_mel(reference, w)) for w in self.windows)
        return sum((e - r).abs().mean() for e, r in pairs) / len(self.windows)


_mel_cache: dict[int, MultiResolutionMel] = {}


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB (higher is better)."""
    n = min(len(estimate), len(reference))
    est, ref = estimate[:n] - estimate[:n].mean(), reference[:n] - reference[:n].mean()
    target = (est @ ref) / max(ref @ ref, 1e-12) * ref
    noise = est - target
    return float(10 * np.log10(max(target @ target, 1e-12) / max(noise @ noise, 1e-12)))


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean L1 distance of log10 mel spectrograms over six resolutions (lower is better)."""
    if sample_rate not in _mel_cache:
        _mel_cache[sample_rate] = MultiResolutionMel(sample_rate)
    n = min(len(estimate), len(reference))
    with torch.no_grad():
        return float(_mel_cache[sample_rate].distance(torch.from_numpy(estimate[:n]).unsqueeze(0),
                                                      torch.from_numpy(reference[:n]).unsqueeze(0)))


def pesq_wb(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """Wide-band PESQ (MOS-LQO, 1.0-4.64) of 16 kHz audio; None if `pesq` is missing or fails."""
    try:
        from pesq import pesq
    except ImportError:
        return None
    n = min(len(estimate), len(reference))
    try:
        return float(pesq(16000, reference[:n].astype(np.float64), estimate[:n].astype(np.float64), "wb"))
    except Exception:  # pesq raises on silent or too-short clips
        return None


def stoi(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """Short-time objective intelligibility (0-1) of 16 kHz audio; None if `pystoi` is missing."""
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        return None
    n = min(len(estimate), len(reference))
    return float(_stoi(reference[:n], estimate[:n], 16000, extended=False))


FRAME_MS = 10.0  # one F0 value per 10 ms (160 samples at 16 kHz, the source-filter codec's STFT hop)
GROSS_ERROR = 0.2  # a frame whose F0 is off by more than 20% is a gross pitch error


def pitch_track(wav: np.ndarray, sample_rate: int = 16000, f0_floor: float = 50.0, f0_ceil: float = 600.0) -> np.ndarray:
    """F0 in Hz every 10 ms (frame i centred on sample i * 10 ms), 0 where unvoiced, by WORLD's Harvest
    (`pyworld`): slow (~4x real time) but it tracks the demo's eSpeak voices, where WORLD's faster
    DIO leaves most frames of some voices unvoiced or an octave off."""
    import warnings

    with warnings.catch_warnings():  # pyworld imports pkg_resources, which warns of its own deprecation
        warnings.simplefilter("ignore")
        import pyworld

    x = np.ascontiguousarray(wav, dtype=np.float64)
    return pyworld.harvest(x, sample_rate, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=FRAME_MS)[0]


@dataclass
class PitchErrors:
    f0_cents: float | None  # RMS error in cents over frames voiced in both, gross errors left out; None if none
    gross_error: float | None  # share of the frames voiced in both whose F0 is more than 20% off
    voicing_error: float  # share of all frames whose voiced/unvoiced decision differs


def pitch_errors(estimate: np.ndarray, reference: np.ndarray, sample_rate: int = 16000) -> PitchErrors:
    """How far the output's pitch and voicing are from the reference's, frame by frame, one tracker
    (Harvest) for both. The F0 error leaves out gross errors (octave slips, which a tracker makes on
    clean speech too) and counts them apart, as fine and gross pitch error are usually reported."""
    n = min(len(estimate), len(reference))
    ref, est = pitch_track(reference[:n], sample_rate), pitch_track(estimate[:n], sample_rate)
    both = (ref > 0) & (est > 0)
    voicing = float(((ref > 0) != (est > 0)).mean()) if len(ref) else 0.0
    if not both.any():
        return PitchErrors(None, None, voicing)
    ratio = est[both] / ref[both]
    fine = np.abs(ratio - 1) <= GROSS_ERROR
    cents = float(np.sqrt(np.mean((1200 * np.log2(ratio[fine])) ** 2))) if fine.any() else None
    return PitchErrors(cents, float(1 - fine.mean()), voicing)
