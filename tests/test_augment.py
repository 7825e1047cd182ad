"""Voice-changing augmentation (audiolm/augment.py): each change does what it claims and nothing
else: formant shift keeps pitch and length, pitch shift keeps formants and length, colouring is a
filter, the room keeps length and loudness; and a crop is a function of the generator's state."""

import dataclasses

import numpy as np

from audiolm.augment import DEFAULT, change_voice, colour, reverberate, shift_formants, shift_pitch

RATE = 16000


def _vowel(f0=120.0, seconds=1.0, seed=0):
    """Harmonics of f0 under formants at 700 and 1800 Hz, and a faint noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE

    def envelope(f):
        return np.exp(-0.5 * ((f - 700) / 250) ** 2) + 0.5 * np.exp(-0.5 * ((f - 1800) / 300) ** 2) + 0.01

    harmonics = range(1, int(7900 // f0) + 1)
    wav = sum(envelope(k * f0) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) for k in harmonics)
    return (0.3 * wav + 0.001 * rng.standard_normal(len(t))).astype(np.float32)


def _centroid(x):
    power, freqs = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x), 1 / RATE)
    return (power * freqs)[freqs < 4000].sum() / power[freqs < 4000].sum()


def _pitch(x):
    ac = np.correlate(x[4000:8000], x[4000:8000], "full")[3999:]
    return RATE / (40 + ac[40:266].argmax())


def _envelope_db(x, lo=500, hi=2800):
    """Smoothed long-term spectrum: power in octave-wide bands (several harmonics each, at any of
    the pitches here) centred from lo to hi Hz, in dB, normalised to its mean."""
    power, freqs = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x), 1 / RATE)
    centres = np.geomspace(lo, hi, 8)
    bands = np.array([power[(freqs >= c / 2**0.5) & (freqs < c * 2**0.5)].mean() for c in centres])
    db = 10 * np.log10(bands)
    return db - db.mean()


def test_colour_keeps_length_and_changes_the_spectrum():
    """Without noise, colouring is a filter: the output's spectrum is the input's times a real,
    positive gain (no phase change, nothing moved in time) whose level differs from band to band by
    several dB (an equaliser, not a volume change). With noise on, the added part has the asked SNR."""
    wav = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    freqs = np.fft.rfftfreq(len(wav), 1 / 16000)
    bands = [(100, 300), (300, 700), (700, 1500), (1500, 3000), (3000, 6000)]
    spreads = []
    for seed in range(8):
        out = colour(wav, np.random.default_rng(seed), 16000, dataclasses.replace(DEFAULT, noise_prob=0.0))
        assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
        gain = np.fft.rfft(out) / np.fft.rfft(wav)
        assert np.abs(gain.imag).max() < 1e-3 * np.abs(gain).max() and gain.real.min() > -1e-5 * np.abs(gain).max()
        band_db = [10 * np.log10(np.mean(np.abs(gain[(freqs >= lo) & (freqs < hi)]) ** 2)) for lo, hi in bands]
        spreads.append(max(band_db) - min(band_db))
    assert np.median(spreads) > 3.0, spreads
    noisy = dataclasses.replace(DEFAULT, noise_prob=1.0, noise_snr_db=(20.0, 20.0))
    filtered = colour(wav, np.random.default_rng(3), 16000, dataclasses.replace(noisy, noise_prob=0.0))
    out = colour(wav, np.random.default_rng(3), 16000, noisy)
    snr = 10 * np.log10(np.mean(filtered**2) / np.mean((out - filtered) ** 2))
    assert abs(snr - 20.0) < 0.5, snr


def test_formant_shift_moves_the_envelope_and_keeps_the_pitch():
    """A vowel-like sound (120 Hz harmonics under formants at 700 and 1800 Hz, a noise floor): the
    spectral centroid moves with the factor (measured x0.93 for 0.88, x1.14 for 1.14), the pitch
    (autocorrelation peak) and length stay."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000

    def envelope(f):
        return np.exp(-0.5 * ((f - 700) / 250) ** 2) + 0.5 * np.exp(-0.5 * ((f - 1800) / 300) ** 2) + 0.01

    wav = sum(envelope(k * 120.0) * np.sin(2 * np.pi * k * 120.0 * t + rng.uniform(0, 2 * np.pi)) for k in range(1, 66))
    wav = (wav + 0.003 * rng.standard_normal(len(t))).astype(np.float32)

    def centroid(x):
        power, freqs = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x), 1 / 16000)
        return (power * freqs)[freqs < 4000].sum() / power[freqs < 4000].sum()

    def pitch(x):
        ac = np.correlate(x[:4000], x[:4000], "full")[3999:]
        return 16000 / (40 + ac[40:266].argmax())

    for factor in (0.88, 1.14):
        out = shift_formants(wav, factor)
        assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
        # the centroid follows the factor (less far down: below 700 Hz there are only a few harmonics to carry it)
        assert 0.5 < np.log(centroid(out) / centroid(wav)) / np.log(factor) < 1.2
        assert abs(pitch(out) - pitch(wav)) < 1.0 and abs(pitch(wav) - 120) < 1.0


def test_pitch_shift_moves_the_pitch_and_keeps_the_formants_and_length():
    """WORLD resynthesis with F0 x 1.25 and x 0.8: the autocorrelation pitch follows, the smoothed
    envelope (octave bands, 500-2800 Hz) stays within 1.5 dB on average, the length is the input's."""
    wav = _vowel()
    for factor in (0.8, 1.25):
        out = shift_pitch(wav, factor, RATE)
        assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert abs(_pitch(out) / (_pitch(wav) * factor) - 1) < 0.03, (factor, _pitch(out))
        assert np.abs(_envelope_db(out) - _envelope_db(wav)).mean() < 1.5  # a speed change: 2.1-4.6 dB
        assert abs(np.log(_centroid(out) / _centroid(wav))) < 0.1
    assert shift_pitch(wav, 1.0, RATE) is wav


def test_room_keeps_length_and_loudness_and_adds_a_decaying_tail():
    """A click train in a room: same length and RMS; between clicks the reverberant tail fills what
    was silence, more with a longer RT60; the same generator state gives the same room."""
    wav = np.zeros(RATE, dtype=np.float32)
    wav[::4000] = 1.0
    short = dataclasses.replace(DEFAULT, rt60_s=(0.2, 0.2), direct_to_reverb_db=(3.0, 3.0))
    long = dataclasses.replace(DEFAULT, rt60_s=(0.8, 0.8), direct_to_reverb_db=(3.0, 3.0))
    tails = []
    for cfg in (short, long):
        out = reverberate(wav, np.random.default_rng(0), RATE, cfg)
        assert out.shape == wav.shape and np.isclose(np.sqrt(np.mean(out**2)), np.sqrt(np.mean(wav**2)), rtol=1e-4)
        gap = out[4000 + 800 : 8000]  # 50 ms after a click until the next one
        tails.append(float(np.sqrt(np.mean(gap**2))))
        assert np.array_equal(out, reverberate(wav, np.random.default_rng(0), RATE, cfg))
    assert 0 < tails[0] < tails[1], tails


def test_change_voice_is_a_function_of_the_generator_and_draws_nothing_for_what_is_off():
    wav = _vowel(seconds=0.5)
    every = dataclasses.replace(DEFAULT, pitch_prob=1.0, reverb_prob=1.0)
    a = change_voice(wav, np.random.default_rng(5), RATE, every)
    assert np.array_equal(a, change_voice(wav, np.random.default_rng(5), RATE, every))
    assert not np.array_equal(a, change_voice(wav, np.random.default_rng(6), RATE, every))
    # pitch and room off: exactly the formant shift and colouring with the same draws as before they existed
    rng = np.random.default_rng(5)
    from audiolm.augment import formant_factor

    expected = colour(shift_formants(wav, formant_factor(rng)), rng, RATE)
    np.testing.assert_array_equal(change_voice(wav, np.random.default_rng(5), RATE), expected)
