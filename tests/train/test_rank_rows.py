"""The codec's and the encoder's trainings under several processes: each process reads and augments
only its own rows of the global batch, and together they build the batch one process would (the
language models' version of this is in test_lm_batches.py)."""

import numpy as np
import pytest
import torch

from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig
from audiolm.config import CodecConfig, EncoderConfig, TrainConfig
from audiolm.semantic.pretrain import MaskedPredictor, new_encoder, num_frames
from audiolm.train.codec_task import CodecTask
from audiolm.train.encoder_task import EncoderTask


class CountingWavs:
    """Waveforms that count how often each is read (a corpus read from disk)."""

    def __init__(self, wavs):
        self.wavs, self.reads = wavs, [0] * len(wavs)

    def __len__(self):
        return len(self.wavs)

    def __getitem__(self, i):
        self.reads[i] += 1
        return self.wavs[i]


def _wavs(count=12):
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(16000 + 1600 * i)).astype(np.float32) for i in range(count)]


def _codec_task(wavs):
    cfg = CodecConfig(num_codebooks=2, codebook_size=32, segment_seconds=0.25, augment=True,
                      train=TrainConfig(batch_size=8))
    codec = SourceFilterCodec(SourceFilterCodecConfig(dim=32, ffn_dim=64, encoder_layers=1, decoder_layers=1,
                                                      latent_dim=8, num_codebooks=2, codebook_size=32))
    return CodecTask(codec, cfg, wavs, [wavs.wavs[0]], eval_clips=1)


def _encoder_task(wavs):
    cfg = EncoderConfig(hidden_size=32, layers=1, heads=2, ffn_dim=64, conv_dim=16, crop_seconds=0.6, augment=True,
                        train=TrainConfig(batch_size=8))
    targets = [np.arange(num_frames(len(w))) % 10 for w in wavs.wavs]
    return EncoderTask(MaskedPredictor(new_encoder(cfg), 10), cfg, wavs, targets, [])


@pytest.mark.parametrize("make", [_codec_task, _encoder_task], ids=["codec", "encoder"])
def test_two_processes_build_the_global_batch_of_one_reading_half_the_audio_each(make):
    wavs = CountingWavs(_wavs())
    task = make(wavs)
    assert sum(wavs.reads) == 0  # nothing read before a batch needs it
    for step in range(3):
        whole = task.batch(step, 0, 0, 1)
        before = sum(wavs.reads)
        parts = [task.batch(step, 0, rank, 2) for rank in range(2)]
        assert sum(wavs.reads) - before == 8  # one read per row, whatever the number of processes
        whole, parts = (whole if isinstance(whole, tuple) else (whole,)), [p if isinstance(p, tuple) else (p,) for p in parts]
        for k, tensor in enumerate(whole):
            assert [p[k].shape[0] for p in parts] == [4, 4]  # half the rows each
            torch.testing.assert_close(tensor[0::2], parts[0][k])
            torch.testing.assert_close(tensor[1::2], parts[1][k])
        assert not torch.equal(whole[0][0], whole[0][1])  # rows differ
    assert not torch.equal(task.batch(0, 0, 0, 1)[0], task.batch(1, 0, 0, 1)[0])
