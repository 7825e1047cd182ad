"""The source-filter codec: shapes, harmonics by construction, save/load, a few training steps."""

import math

import numpy as np
import torch

from audiolm.codec import load_codec
from audiolm.codec.metrics import pitch_errors
from audiolm.codec.pitch import yin
from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig, harmonic_excitation


def _codec(k=4, size=64):
    torch.manual_seed(0)
    return SourceFilterCodec(SourceFilterCodecConfig(dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1,
                                                     latent_dim=16, num_codebooks=k, codebook_size=size))


def test_harmonic_excitation_is_the_sum_of_harmonics_below_nyquist():
    f0 = torch.tensor([[120.0] * 50, [330.0] * 50])
    out = harmonic_excitation(f0, torch.ones_like(f0), 160, 16000)
    n = torch.arange(out.shape[1], dtype=torch.float64)
    for row, hz in enumerate((120.0, 330.0)):
        cycles = torch.cumsum(torch.full_like(n, hz / 16000), 0)
        expected = sum(torch.sin(2 * math.pi * k * cycles) for k in range(1, int(8000 // hz) + 1))
        assert torch.allclose(out[row].double(), expected, atol=1e-3)
    assert harmonic_excitation(f0, torch.zeros_like(f0), 160, 16000).abs().max() == 0  # unvoiced: silent


def test_shapes_codes_and_decoded_length():
    codec = _codec()
    wav = torch.randn(2, 16000 + 123) * 0.1
    frames = codec.num_frames(wav.shape[1])
    out = codec(wav, dropout_seed=0, noise_seed=0)
    assert out.codes.shape == (2, 4, frames) and out.spectrum.shape == (2, 321, frames * 2)
    codec.eval()
    codes = codec.encode(wav)
    assert codes.dtype == torch.int64 and codes.shape == (2, 4, frames) and 0 <= codes.min() and codes.max() < 64
    decoded = codec.decode(codes)
    assert decoded.shape == (2, frames * 320) and torch.isfinite(decoded).all()
    assert torch.equal(codec.decode(codes), decoded)  # deterministic: a fixed noise seed
    assert torch.equal(codec.encode(wav, 2), codes[:, :2])  # fewer codebooks are a prefix
    assert codec.decode(codes[:, :1]).shape == decoded.shape  # the pitch code alone still decodes


def test_pitch_code_is_exact_to_a_few_cents_and_zero_when_unvoiced():
    codec = _codec(size=1024)
    # two STFT frames per code frame: unvoiced, half voiced, a glide, half voiced, the range's ends
    f0 = torch.tensor([[0.0, 0.0, 0.0, 120.0, 118.0, 122.0, 300.0, 0.0, 55.0, 55.0, 480.0, 480.0]])
    codes = codec.pitch_codes(f0)[0]
    assert codes[0] == 0 and (codes[1:] > 0).all()
    got = codec.pitch_of(codes[None])[0, ::2][1:]
    expected = torch.tensor([120.0, math.sqrt(118.0 * 122.0), 300.0, 55.0, 480.0])  # mean log F0 of voiced frames
    step_cents = 1200 * math.log2(500 / 50) / 1023
    assert (1200 * torch.log2(got / expected)).abs().max() <= step_cents / 2 + 0.01  # within half a 3.9-cent step
    assert (codec.pitch_codes(codec.pitch(torch.zeros(1, 3200))) == 0).all()  # silence: unvoiced
    # a coarser grid (the demo's 128 steps of 31 cents): ids 1..128 only, each within half a step
    coarse = SourceFilterCodec(SourceFilterCodecConfig(dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1,
                                                       latent_dim=16, codebook_size=1024, pitch_steps=128))
    ids = coarse.pitch_codes(f0)[0]
    assert ids[0] == 0 and (ids[1:] >= 1).all() and (ids <= 128).all()
    got = coarse.pitch_of(ids[None])[0, ::2][1:]
    assert (1200 * torch.log2(got / expected)).abs().max() <= 1200 * math.log2(10) / 128 / 2 + 0.01


def test_save_load_and_hub_mixin(tmp_path):
    codec = _codec().eval()
    codec.quantizer(codec.analyse(torch.randn(4, 16000) * 0.1))  # k-means-initialise the codebooks
    codec.save_pretrained(tmp_path / "c")
    for again in (load_codec(tmp_path / "c"), SourceFilterCodec.from_pretrained(tmp_path / "c")):
        wav = torch.randn(1, 8000) * 0.1
        assert isinstance(again, SourceFilterCodec) and again.config == codec.config
        codes = codec.encode(wav)
        assert torch.equal(again.encode(wav), codes) and torch.equal(again.decode(codes), codec.decode(codes))


def test_encode_long_equals_encode_away_from_joins():
    codec = _codec().eval()
    wav = torch.randn(1, 16000 * 3) * 0.1
    whole, chunked = codec.encode(wav), codec.encode_long(wav, chunk_seconds=1.0, margin_seconds=0.5)
    assert chunked.shape == whole.shape
    assert torch.equal(chunked, whole)  # a convolutional encoder with a receptive field under the margin


def test_yin_finds_the_pitch_of_a_gliding_tone_without_its_fundamental_and_not_in_silence():
    rate = 16000
    t = np.arange(rate) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 1.5 * t)  # a glide of +-20 Hz
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wav = 0.1 * sum(np.sin(k * phase) / k for k in range(2, 12))  # harmonics 2-11 only
    track = yin(torch.from_numpy(np.stack([wav, np.zeros_like(wav)]).astype(np.float32)), rate, 160)
    assert track.shape == (2, rate // 160 + 1)
    inner = track[0, 3:-3].numpy()
    truth = f0[np.arange(3, rate // 160 - 2) * 160]
    assert (inner > 0).all() and np.abs(1200 * np.log2(inner / truth)).max() < 20  # within 20 cents everywhere
    assert (track[1] == 0).all()  # silence is unvoiced


def test_pitch_metrics_on_a_tone_of_known_pitch_and_on_silence():
    rate = 16000
    t = np.arange(2 * rate) / rate
    tone = lambda hz: (0.2 * sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 8))).astype(np.float32)
    same = pitch_errors(tone(200.0), tone(200.0))
    assert same.f0_cents < 5 and same.gross_error == 0 and same.voicing_error < 0.05
    sharp = pitch_errors(tone(200.0 * 2 ** (100 / 1200)), tone(200.0))  # 100 cents sharp
    assert abs(sharp.f0_cents - 100) < 10 and sharp.gross_error == 0
    octave = pitch_errors(tone(400.0), tone(200.0))
    assert octave.gross_error > 0.9
    quiet = np.zeros(2 * rate, dtype=np.float32)
    silent = pitch_errors(quiet, quiet)
    assert silent.f0_cents is None and silent.gross_error is None and silent.voicing_error == 0
    assert pitch_errors(quiet, tone(200.0)).voicing_error > 0.9  # voiced frames rendered silent
