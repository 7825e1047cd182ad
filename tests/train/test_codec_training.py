"""The one trainer on the codec task: losses fall, and kill + resume equals an uninterrupted run."""

import json

import numpy as np
import pytest
import torch

from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig
from audiolm.config import CodecConfig, TrainConfig
from audiolm.train.codec_task import CodecTask
from audiolm.train.trainer import Trainer
from tests.train.interrupt import kill_after_checkpoint


@pytest.fixture(scope="module")
def wavs(speech):
    from audiolm.audio import resample

    wav, rate = speech
    wav = resample(wav, rate, 16000)
    return [wav, wav[4000:], 0.7 * wav[:20000]]


def _task(wavs, steps, ema_decay=0.0):
    cfg = CodecConfig(num_codebooks=2, codebook_size=32, segment_seconds=0.5, augment=True,
                      train=TrainConfig(steps=steps, batch_size=4, learning_rate=3e-3, warmup_steps=1, checkpoint_every=3,
                                        eval_every=1000, log_every=1, ema_decay=ema_decay))
    torch.manual_seed(0)
    codec = SourceFilterCodec(SourceFilterCodecConfig(dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=2,
                                                      latent_dim=16, num_codebooks=2, codebook_size=32))
    return CodecTask(codec, cfg, wavs, wavs[:1], eval_clips=1), cfg


def test_kill_and_resume_continues_with_identical_state(wavs, tmp_path):
    full, cfg = _task(wavs, 6, ema_decay=0.9)
    first = Trainer(full, cfg.train, tmp_path / "full")
    first.fit()

    part, cfg = _task(wavs, 6, ema_decay=0.9)
    kill_after_checkpoint(Trainer(part, cfg.train, tmp_path / "part"), 3)
    resumed, cfg = _task(wavs, 6, ema_decay=0.9)
    trainer = Trainer(resumed, cfg.train, tmp_path / "part")
    trainer.fit()
    assert trainer.step == 6
    a, b = full.models["codec"].state_dict(), resumed.models["codec"].state_dict()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    for key, value in first.ema["codec"].items():  # the weights' average resumes too
        assert torch.allclose(value, trainer.ema["codec"][key], atol=1e-6), f"ema {key}"
    logs = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "mel" in r] == [1, 2, 3, 4, 5, 6]  # no step done twice
    assert np.isfinite([float(v) for v in full.evaluate().values()]).all()


def test_source_filter_codec_learns_the_spectrum_in_a_few_steps(wavs, tmp_path):
    task, cfg = _task(wavs, 40)
    task.cfg.train.checkpoint_every = 20
    assert set(task.models) == {"codec"}  # no discriminator: nothing unused under DistributedDataParallel
    fixed = task.batch(0, 0)
    assert not torch.equal(fixed, task.batch(1, 0)) and torch.equal(fixed, task.batch(0, 0))  # a function of the step

    def losses():
        with torch.no_grad():
            return task.step(fixed, 0, lambda name, loss: None)

    before = losses()
    Trainer(task, cfg.train, tmp_path).fit()
    after = losses()
    assert after["magnitude"] < 0.8 * before["magnitude"] and after["mel"] < 0.8 * before["mel"]
