"""The encoder trained from scratch: frame arithmetic, masking, target alignment under augmentation,
that training lowers the loss, and that the result loads like a Hub HuBERT."""

import dataclasses

import numpy as np
import pytest
import torch

from audiolm.augment import change_speed, source_frames
from audiolm.config import EncoderConfig, TrainConfig
from audiolm.semantic.features import SpectralFeatures
from audiolm.semantic.features import num_frames as spectral_frames
from audiolm.semantic.pretrain import MaskedPredictor, new_encoder, normalize, num_frames, samples_for, span_mask
from audiolm.train.encoder_task import EncoderTask

TINY = EncoderConfig(hidden_size=32, layers=2, heads=2, ffn_dim=64, conv_dim=16, crop_seconds=1.0,
                     train=TrainConfig(steps=40, batch_size=4, learning_rate=3e-3, warmup_steps=2))


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return new_encoder(TINY).eval()


@pytest.mark.parametrize("samples", [400, 401, 719, 720, 16000, 16319, 16320, 48123])
def test_frame_counts_match_every_backend(encoder, samples):
    """The encoder's frames, its own arithmetic, transformers' and the spectral front ends' agree,
    so targets computed on spectral features line up with encoder outputs one to one."""
    with torch.no_grad():
        out = encoder(torch.randn(1, samples)).last_hidden_state.shape[1]
    spectral = SpectralFeatures("mfcc", context=0)._one(np.zeros(samples, np.float32)).shape[0]
    assert out == num_frames(samples) == spectral_frames(samples, 16000) == spectral
    assert out == int(encoder._get_feat_extract_output_lengths(torch.tensor(samples)))
    assert num_frames(samples_for(out)) == out and num_frames(samples_for(out) - 1) == out - 1


def test_span_mask():
    rng = np.random.default_rng(0)
    mask = span_mask(rng, 64, 150, 0.65, 10)
    assert mask.shape == (64, 150) and mask.any(1).all()
    assert 0.35 < mask.mean() < 0.6  # about half, as in HuBERT
    runs = np.diff(np.concatenate([np.zeros((64, 1)), mask, np.zeros((64, 1))], 1).astype(int), axis=1)
    lengths = np.flatnonzero(runs.ravel() == -1) - np.flatnonzero(runs.ravel() == 1)
    assert lengths.min() >= 10  # spans are whole (they may merge)
    assert (span_mask(np.random.default_rng(0), 64, 150, 0.65, 10) == mask).all()
    assert not span_mask(rng, 4, 150, 0.0, 10).any()


def _counting_examples(count=6, seconds=2.0):
    """Wavs whose frame i sounds a tone that encodes i, with targets = frame index."""
    examples = []
    for u in range(count):
        n = int(seconds * 16000) + 320 * u
        frames = num_frames(n)
        examples.append((np.random.default_rng(u).standard_normal(n).astype(np.float32) * 0.1,
                         np.arange(frames, dtype=np.int64)))
    return examples


def test_batch_targets_follow_the_audio_without_augmentation():
    cfg = dataclasses.replace(TINY, augment=False)
    examples = _counting_examples()
    task = EncoderTask(MaskedPredictor(new_encoder(cfg), 10), cfg, *zip(*examples, strict=True), examples)
    wavs, targets, mask = task.batch(step=3, micro=0)
    frames = targets.shape[1]
    assert wavs.shape == (4, samples_for(frames)) and mask.shape == targets.shape and frames == 50
    for wav, target in zip(wavs.numpy(), targets.numpy(), strict=True):
        first = int(target[0])
        assert (target == np.arange(first, first + frames)).all()  # consecutive frames, no gap
        # the crop is exactly the audio of those frames, in any of the examples
        assert any(np.array_equal(wav, w[320 * first : 320 * first + len(wav)]) for w, _ in examples)
    again = task.batch(step=3, micro=0)
    assert all(torch.equal(a, b) for a, b in zip(again, (wavs, targets, mask), strict=True))  # a function of the step


def test_speed_change_stretches_the_targets():
    examples = _counting_examples(count=3, seconds=3.0)
    for cfg in (TINY, dataclasses.replace(TINY, formant_shift=True)):
        task = EncoderTask(MaskedPredictor(new_encoder(cfg), 10), cfg, *zip(*examples, strict=True), examples)
        for step in range(5):
            wavs, targets, _ = task.batch(step, 0)
            assert wavs.shape[1] == samples_for(targets.shape[1]) and torch.isfinite(wavs).all()
            for target in targets.numpy():
                steps = np.diff(target)
                assert (steps >= 0).all() and (steps <= 2).all()
    # a tone at 1 kHz played 1.1x faster is at 1.1 kHz, and lasts 1/1.1 as long
    t = np.arange(32000) / 16000
    fast = change_speed(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 1.1, 16000)
    peak = np.argmax(np.abs(np.fft.rfft(fast))) * 16000 / len(fast)
    assert abs(peak - 1100) < 5
    assert source_frames(10, 1.1, 100).tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_a_few_steps_lower_the_loss_on_a_tiny_batch(speech):
    """Masked prediction of fixed targets on one repeated batch of real speech: the loss falls."""
    from audiolm.audio import resample

    wav = resample(speech[0], speech[1], 16000)[:32000]
    frames = num_frames(len(wav))
    targets = torch.from_numpy((np.arange(frames) // 7 % 12).astype(np.int64)).repeat(2, 1)
    torch.manual_seed(0)
    model = MaskedPredictor(new_encoder(TINY), 12)
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    x = normalize(torch.from_numpy(wav).repeat(2, 1))
    mask = torch.from_numpy(span_mask(np.random.default_rng(0), 2, frames, 0.65, 10))
    losses = []
    for _ in range(30):
        loss, _ = model(x, targets, mask, unmasked_weight=0.0)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
