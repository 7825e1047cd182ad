"""Voice-changing augmentation, one module for every learned part (the speech encoder, the codec):
change who seems to speak, and where, not what is said.

- speed: resampling by a factor r plays the audio r times faster, raising pitch and formants by r
  (a shorter vocal tract, a higher voice) and changing the tempo; frame targets are stretched with
  it (`source_frames`), so every target still labels the sound it labelled before.
- formants: the spectral envelope (cepstrally smoothed log spectrum, frame by frame) is stretched
  along the frequency axis by a factor f while the harmonics stay where they are: a longer or
  shorter vocal tract with the same pitch and tempo. Together with the speed change (pitch and
  formants moved by the same factor) pitch and formants vary independently.
- timbre: a smooth random equaliser (a few broad peaks and dips in 200-5000 Hz, where formants
  live, plus a spectral tilt), so no voice's spectral envelope is the only one that maps to a phone.
- pitch: WORLD analysis and resynthesis (`pyworld`: DIO + StoneMask F0, CheapTrick envelope, D4C
  aperiodicity) with F0 times a factor: a higher or lower voice, formants and tempo kept.
- band limits: a random low-pass (telephone-like at 3.4 kHz up to none) and high-pass.
- reverberation: a synthetic room (exponentially decaying noise, RT60 drawn per crop, after a
  direct path), mixed in at a random direct-to-reverberant ratio.
- noise: white noise at a random signal-to-noise ratio.
Numpy (and WORLD) on one crop at a time, seeded by the caller, so a batch is a function of the
step. `change_voice` applies everything but the speed change, which moves the frame grid and so is
left to the caller (its frame targets must follow: `source_frames`).
"""

from __future__ import annotations

import numpy as np
import soxr

from audiolm.config import AugmentConfig

DEFAULT = AugmentConfig()


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """A factor drawn log-uniformly: as many below 1 as above (slower / faster, lower / higher)."""
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def speed_factor(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT) -> float:
    return _log_uniform(rng, cfg.speed)


def change_speed(wav: np.ndarray, factor: float, length: int) -> np.ndarray:
    """Play `wav` `factor` times faster, then cut or zero-pad to `length` samples."""
    out = soxr.resample(wav, 16000.0 * factor, 16000.0, quality="HQ").astype(np.float32, copy=False)
    if len(out) >= length:
        return out[:length]
    return np.pad(out, (0, length - len(out)))


def formant_factor(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT) -> float:
    return _log_uniform(rng, cfg.formants)


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


def pitch_factor(rng: np.random.Generator, cfg: AugmentConfig = DEFAULT) -> float:
    return _log_uniform(rng, cfg.pitch)


def shift_pitch(wav: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """F0 times `factor`, the spectral envelope, aperiodicity and timing kept (WORLD, 5 ms frames).
    Same length as `wav`; unvoiced stretches stay unvoiced."""
    if abs(factor - 1.0) < 1e-6 or len(wav) < sample_rate // 20:
        return wav
    import pyworld

    x = wav.astype(np.float64)
    f0, times = pyworld.dio(x, sample_rate, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(x, f0, times, sample_rate)
    aperiodicity = pyworld.d4c(x, f0, times, sample_rate)
    out = pyworld.synthesize(f0 * factor, envelope, aperiodicity, sample_rate, frame_period=5.0)
    out = out[: len(wav)] if len(out) >= len(wav) else np.pad(out, (0, len(wav) - len(out)))
    return out.astype(np.float32)


def reverberate(wav: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: AugmentConfig = DEFAULT) -> np.ndarray:
    """`wav` in a synthetic room: the direct sound plus a tail of noise decaying by 60 dB in RT60
    seconds (drawn), starting 2-10 ms later, at a drawn direct-to-reverberant ratio; same length
    and loudness (RMS) as `wav`."""
    rt60 = rng.uniform(*cfg.rt60_s)
    delay = int(rng.uniform(0.002, 0.010) * sample_rate)
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * 10.0 ** (-3.0 * t / rt60)  # -60 dB at t = rt60
    ratio_db = rng.uniform(*cfg.direct_to_reverb_db)
    tail *= 10.0 ** (-ratio_db / 20.0) / np.sqrt(np.sum(tail**2))
    response = np.zeros(delay + length)
    response[0] = 1.0
    response[delay:] += tail
    n = len(wav) + len(response) - 1
    size = 1 << (n - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(wav, size) * np.fft.rfft(response, size), size)[: len(wav)]
    rms_in, rms_out = np.sqrt(np.mean(wav.astype(np.float64) ** 2)), np.sqrt(np.mean(out**2))
    return (out * (rms_in / max(rms_out, 1e-12))).astype(np.float32)


def change_voice(wav: np.ndarray, rng: np.random.Generator, sample_rate: int, cfg: AugmentConfig = DEFAULT,
                 formants: bool = True) -> np.ndarray:
    """Every voice change but speed, on one crop: formants, pitch (with `pitch_prob`), equaliser and
    band limits, reverberation (with `reverb_prob`), noise (`colour` does the last two but the room).
    The draws' order is fixed, so the crop is a function of the generator's state."""
    if formants:
        wav = shift_formants(wav, formant_factor(rng, cfg))
    # (no draw for a step that is off: the crops of a run without it stay as they were)
    if cfg.pitch_prob and rng.random() < cfg.pitch_prob:
        wav = shift_pitch(wav, pitch_factor(rng, cfg), sample_rate)
    if cfg.reverb_prob and rng.random() < cfg.reverb_prob:
        wav = reverberate(wav, rng, sample_rate, cfg)
    return colour(wav, rng, sample_rate, cfg)
