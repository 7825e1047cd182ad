"""Voice-changing augmentation for encoder training: change who seems to speak, not what is said.

- speed: resampling by a factor r plays the audio r times faster, raising pitch and formants by r
  (a shorter vocal tract, a higher voice) and changing the tempo; frame targets are stretched with
  it (`source_frames`), so every target still labels the sound it labelled before.
- formants: the spectral envelope (cepstrally smoothed log spectrum, frame by frame) is stretched
  along the frequency axis by a factor f while the harmonics stay where they are: a longer or
  shorter vocal tract with the same pitch and tempo. Together with the speed change (pitch and
  formants moved by the same factor) pitch and formants vary independently.
- timbre: a smooth random equaliser (a few broad peaks and dips in 200-5000 Hz, where formants
  live, plus a spectral tilt), so no voice's spectral envelope is the only one that maps to a phone.
- band limits: a random low-pass (telephone-like at 3.4 kHz up to none) and high-pass.
- noise: white noise at a random signal-to-noise ratio.
Pure numpy on one crop at a time, seeded by the caller, so a batch is a function of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr


@dataclass
class AugmentConfig:
    speed: tuple[float, float] = (0.85, 1.18)
    formants: tuple[float, float] = (0.88, 1.14)
    eq_peaks: int = 3
    eq_db: float = 8.0
    tilt_db_per_octave: float = 3.0
    lowpass_hz: tuple[float, float] = (3400.0, 8000.0)
    highpass_hz: tuple[float, float] = (0.0, 300.0)
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    noise_prob: float = 0.5


DEFAULT = AugmentConfig()


def speed_factor(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT) -> float:
    """Log-uniform: as many slower as faster voices."""
    lo, hi = np.log(cfg.speed[0]), np.log(cfg.speed[1])
    return float(np.exp(rng.uniform(lo, hi)))


def change_speed(wav: np.ndarray, factor: float, length: int) -> np.ndarray:
    """Play `wav` `factor` times faster, then cut or zero-pad to `length` samples."""
    out = soxr.resample(wav, 16000.0 * factor, 16000.0, quality="HQ").astype(np.float32, copy=False)
    if len(out) >= length:
        return out[:length]
    return np.pad(out, (0, length - len(out)))


def formant_factor(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT) -> float:
    return float(np.exp(rng.uniform(np.log(cfg.formants[0]), np.log(cfg.formants[1]))))


def shift_formants(wav: np.ndarray, factor: float, n_fft: int = 512, hop: int = 128, lifter: int = 30) -> np.ndarray:
    """Move the spectral envelope by `factor` (> 1: formants up) and keep the pitch and tempo. Per
    STFT frame: envelope = the first `lifter` cepstral coefficients of the log magnitude (1.9 ms of
    quefrency at 16 kHz, below any voice's pitch period), excitation = magnitude / envelope; the new
    magnitude is the excitation times the envelope read at frequency / factor; the phase is kept.
    Overlap-add with a Hann window at 75% overlap. Same length as `wav`."""
    if abs(factor - 1.0) < 1e-6 or len(wav) < n_fft:
        return wav
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    pad = np.pad(wav, (n_fft // 2, n_fft // 2 + hop))
    count = (len(pad) - n_fft) // hop + 1
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop][:count] * window
    spectrum = np.fft.rfft(frames, axis=-1)
    log_mag = np.log(np.abs(spectrum) + 1e-8)
    cepstrum = np.fft.irfft(log_mag, n=n_fft, axis=-1)
    cepstrum[:, lifter : n_fft - lifter + 1] = 0.0
    envelope = np.fft.rfft(cepstrum, axis=-1).real  # smoothed log magnitude
    bins = np.arange(envelope.shape[1], dtype=np.float64)
    warped = np.stack([np.interp(bins / factor, bins, row) for row in envelope])
    # at most +-35 dB per bin: a deep valley of the envelope must not turn leakage into a peak
    gain = np.exp(np.clip(warped - envelope, -4.0, 4.0))
    out_frames = np.fft.irfft(spectrum * gain, n=n_fft, axis=-1) * window
    out = np.zeros(len(pad), dtype=np.float64)
    norm = np.zeros(len(pad), dtype=np.float64)
    for i in range(count):
        out[i * hop : i * hop + n_fft] += out_frames[i]
        norm[i * hop : i * hop + n_fft] += window**2
    out = out / np.maximum(norm, 1e-3)
    return out[n_fft // 2 : n_fft // 2 + len(wav)].astype(np.float32)


def source_frames(frames: int, factor: float, available: int) -> np.ndarray:
    """The clean frame each of `frames` output frames shows after a speed change by `factor`."""
    return np.minimum(np.round(np.arange(frames) * factor).astype(np.int64), available - 1)


def colour(wav: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: AugmentConfig = DEFAULT) -> np.ndarray:
    """Random equaliser, band limits and noise on one crop."""
    spectrum = np.fft.rfft(wav)
    freqs = np.fft.rfftfreq(len(wav), 1 / sample_rate)
    octaves = np.log2(np.maximum(freqs, 50.0) / 1000.0)
    gain_db = rng.uniform(-cfg.tilt_db_per_octave, cfg.tilt_db_per_octave) * octaves
    for _ in range(cfg.eq_peaks):
        centre = np.log2(rng.uniform(200.0, 5000.0) / 1000.0)
        gain_db += rng.uniform(-cfg.eq_db, cfg.eq_db) * np.exp(-0.5 * ((octaves - centre) / rng.uniform(0.2, 0.6)) ** 2)
    gain = 10.0 ** (gain_db / 20.0)
    lowpass = rng.uniform(*cfg.lowpass_hz)
    if lowpass < sample_rate / 2 - 100:
        gain /= np.sqrt(1.0 + (freqs / lowpass) ** 16)  # 8th-order Butterworth magnitude
    highpass = rng.uniform(*cfg.highpass_hz)
    if highpass > 20:
        gain /= np.sqrt(1.0 + (highpass / np.maximum(freqs, 1.0)) ** 8)
    out = np.fft.irfft(spectrum * gain, n=len(wav)).astype(np.float32)
    if rng.random() < cfg.noise_prob:
        power = float(np.mean(out**2)) + 1e-10
        snr = rng.uniform(*cfg.noise_snr_db)
        out += rng.standard_normal(len(out)).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
    return out
