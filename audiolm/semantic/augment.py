"""Voice-changing augmentation for encoder training: change who seems to speak, not what is said.

- speed: resampling by a factor r plays the audio r times faster, raising pitch and formants by r
  (a shorter vocal tract, a higher voice) and changing the tempo; frame targets are stretched with
  it (`source_frames`), so every target still labels the sound it labelled before.
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
