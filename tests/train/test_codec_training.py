"""The one trainer on the codec task: losses fall, and kill + resume equals an uninterrupted run."""

import json

import numpy as np
import pytest
import torch

from audiolm.codec.model import SEANetCodec, SEANetCodecConfig
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


def _task(wavs, steps, adversarial_start=1000):
    cfg = CodecConfig(num_filters=4, latent_dim=16, lstm_layers=1, num_codebooks=2, codebook_size=32, segment_seconds=0.25,
                      adversarial_start_step=adversarial_start,
                      train=TrainConfig(steps=steps, batch_size=4, learning_rate=3e-3, warmup_steps=1, checkpoint_every=3,
                                        eval_every=1000, log_every=1))
    torch.manual_seed(0)
    codec = SEANetCodec(SEANetCodecConfig(num_filters=4, latent_dim=16, lstm_layers=1, num_codebooks=2, codebook_size=32))
    return CodecTask(codec, cfg, wavs, wavs[:1], eval_clips=1), cfg


def test_a_few_steps_lower_the_reconstruction_loss(wavs, tmp_path):
    task, cfg = _task(wavs, 30)
    fixed = task.batch(0, 0)
    mel = lambda: float(task.mel(task.models["codec"](fixed, dropout_seed=0).wav, fixed))
    before = mel()
    Trainer(task, cfg.train, tmp_path).fit()
    assert mel() < 0.8 * before


def test_kill_and_resume_continues_with_identical_state(wavs, tmp_path):
    full, cfg = _task(wavs, 6, adversarial_start=2)
    Trainer(full, cfg.train, tmp_path / "full").fit()

    part, cfg = _task(wavs, 6, adversarial_start=2)
    kill_after_checkpoint(Trainer(part, cfg.train, tmp_path / "part"), 3)
    resumed, cfg = _task(wavs, 6, adversarial_start=2)
    trainer = Trainer(resumed, cfg.train, tmp_path / "part")
    trainer.fit()
    assert trainer.step == 6
    for name in ("codec", "discriminator"):
        a, b = full.models[name].state_dict(), resumed.models[name].state_dict()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), f"{name}.{key}"
    logs = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "mel" in r] == [1, 2, 3, 4, 5, 6]  # no step done twice
    assert np.isfinite([float(v) for v in full.evaluate().values()]).all()


def test_source_filter_codec_learns_the_spectrum_in_a_few_steps(wavs, tmp_path):
    from audiolm.codec.source_filter import SourceFilterCodec, SourceFilterCodecConfig

    cfg = CodecConfig(model="source-filter", num_codebooks=2, codebook_size=32, segment_seconds=0.5, augment=True,
                      train=TrainConfig(steps=40, batch_size=4, learning_rate=3e-3, warmup_steps=1, checkpoint_every=20,
                                        eval_every=1000, log_every=1))
    torch.manual_seed(0)
    codec = SourceFilterCodec(SourceFilterCodecConfig(dim=64, ffn_dim=128, encoder_layers=1, decoder_layers=2,
                                                      latent_dim=16, num_codebooks=2, codebook_size=32))
    task = CodecTask(codec, cfg, wavs, wavs[:1], eval_clips=1)
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
