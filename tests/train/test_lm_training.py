"""The one trainer on a language-model task: the loss falls on a tiny batch, and an interrupted run
resumed from its checkpoint ends exactly where an uninterrupted one does."""

import json

import numpy as np
import pytest
import torch

from audiolm.config import TrainConfig
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout
from audiolm.train.lm_task import LMTask, pad_batch, reference_mask, sequence_loss
from audiolm.train.trainer import Trainer
from tests.train.interrupt import kill_after_checkpoint

LAYOUT = TokenLayout(semantic_size=16, codebook_size=32, num_codebooks=3, coarse_codebooks=1)


def _data(n=6, seed=0):
    """Utterances with structure to learn: semantic ids walk up by one; codes follow the semantic id."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        frames = int(rng.integers(30, 60))
        semantic = (np.arange(frames) // 2 + rng.integers(0, 16)) % 16
        codes = np.stack([(semantic * 2 + q) % 32 for q in range(3)])
        out.append((semantic, codes))
    return out


def _task(task, steps, data, mixed_precision="no", voice_pool=False, frame_positions=False):
    spec = TaskSpec(task=task, layout=LAYOUT, semantic_rate=50.0, acoustic_rate=50.0, window_seconds=0.5,
                    frame_positions=frame_positions)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=32, layers=2, heads=2, max_positions=spec.max_length(),
                                  voice_pool=voice_pool, group=spec.group))
    cfg = TrainConfig(steps=steps, batch_size=4, learning_rate=3e-3, warmup_steps=2, checkpoint_every=3, eval_every=1000,
                      log_every=1, mixed_precision=mixed_precision)
    return LMTask(model, spec, cfg, data, data[:2]), cfg


@pytest.mark.parametrize("task", ["semantic", "coarse", "fine", "fine-frames"])
def test_loss_falls_on_a_tiny_batch(task, tmp_path):
    data = _data()
    lm_task, cfg = _task(task.split("-")[0], 40, data, frame_positions=task.endswith("frames"))
    fixed = pad_batch([w for s, c in data[:4] for w in lm_task.spec.eval_windows(s, c)])
    before = sequence_loss(lm_task.models["lm"], lm_task.spec, *fixed).item()
    Trainer(lm_task, cfg, tmp_path, betas=(0.9, 0.95)).fit()
    after = sequence_loss(lm_task.models["lm"], lm_task.spec, *fixed).item()
    assert after < 0.6 * before, (before, after)
    # checkpoints every 3 steps and at the last: train.keep_checkpoints (3) of the 14 remain
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-0000036", "step-0000039",
                                                                              "step-0000040"]
    metrics = lm_task.evaluate()
    assert metrics["perplexity"] == pytest.approx(np.exp(metrics["loss"]))
    with torch.no_grad():  # per target id, however many ids a position holds
        per_id = sequence_loss(lm_task.models["lm"], lm_task.spec, *pad_batch(lm_task.heldout_windows)).item()
    assert metrics["loss"] == pytest.approx(per_id, rel=1e-4)


def test_voice_pooling_lm_learns_a_voice_only_its_prompt_shows(tmp_path):
    """Each utterance's codes are random within a block of 4 of 32 ids, its "voice", which the semantic
    ids do not show. A voice-pooling LM trains with its reference, the window's first half, and then
    relies on it: its loss rises when the reference is taken away."""
    rng = np.random.default_rng(3)
    data = []
    for _ in range(24):
        semantic = rng.integers(0, 16, 50)
        data.append((semantic, np.stack([int(rng.integers(0, 8)) * 4 + rng.integers(0, 4, 50)] * 3)))
    assert len(_task("coarse", 1, data)[0].batch(0, 0)) == 2  # no reference without pooling
    lm_task, cfg = _task("coarse", 150, data, voice_pool=True)
    ids, predicts, reference = lm_task.batch(0, 0)
    spans = [int(r.sum()) for r in reference]  # the first half of each window's targets, or none (dropout)
    assert set(spans) <= {0, lm_task.spec.window // 2} and max(spans) > 0
    assert not (reference & ~predicts.roll(1, dims=1)).any()  # targets only
    before = lm_task.evaluate()["loss"]
    Trainer(lm_task, cfg, tmp_path, betas=(0.9, 0.95)).fit()
    assert lm_task.evaluate()["loss"] < 0.7 * before
    windows = [w for s, c in data[:8] for w in lm_task.spec.eval_windows(s, c)]
    ids, predicts = pad_batch(windows)
    model = lm_task.models["lm"]
    with torch.no_grad():
        heard = sequence_loss(model, lm_task.spec, ids, predicts, reference=reference_mask(lm_task.spec, windows, ids.shape[1]))
        unheard = sequence_loss(model, lm_task.spec, ids, predicts)
    assert heard < unheard - 0.05


def test_loss_is_taken_on_targets_only():
    data = _data(2)
    lm_task, _ = _task("coarse", 1, data)
    ids, predicts = pad_batch([lm_task.spec.training_example(*data[0], np.random.default_rng(0))])
    first = int(np.flatnonzero((ids[0] == LAYOUT.SEP).numpy())[0]) + 1
    # the positions that predict: from SEP (which predicts the first code) to the one before the last id
    assert predicts[0].nonzero()[:, 0].tolist() == list(range(first - 1, int((ids[0] != LAYOUT.PAD).sum()) - 1))


def test_interrupted_training_resumes_to_the_same_model(tmp_path):
    data = _data()
    full, cfg = _task("coarse", 6, data)
    Trainer(full, cfg, tmp_path / "full", betas=(0.9, 0.95)).fit()

    part, cfg = _task("coarse", 6, data)
    kill_after_checkpoint(Trainer(part, cfg, tmp_path / "part", betas=(0.9, 0.95)), 3)
    resumed, cfg = _task("coarse", 6, data)
    trainer = Trainer(resumed, cfg, tmp_path / "part", betas=(0.9, 0.95))
    trainer.fit()
    assert trainer.step == 6
    a, b = full.models["lm"].state_dict(), resumed.models["lm"].state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)
    logs = [json.loads(line) for line in (tmp_path / "part" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_bf16_autocast_trains(tmp_path, monkeypatch):
    """bf16 asked and granted (on a CPU without native bf16 the trainer falls back to fp32; here the
    fallback is switched off, so the path a GPU or an AMX CPU takes runs): the layers compute in
    bf16 under autocast, the master weights stay fp32 and the loss falls."""
    import audiolm.train.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "native_precision", lambda precision: precision)
    data = _data()
    lm_task, cfg = _task("semantic", 20, data, mixed_precision="bf16")
    fixed = pad_batch([w for s, c in data[:4] for w in lm_task.spec.eval_windows(s, c)])
    before = sequence_loss(lm_task.models["lm"], lm_task.spec, *fixed).item()
    dtypes = []
    mlp = next(m for name, m in lm_task.models["lm"].named_modules() if name.endswith("mlp"))
    hook = mlp.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype) if torch.is_grad_enabled() else None)
    trainer = Trainer(lm_task, cfg, tmp_path, betas=(0.9, 0.95))
    trainer.fit()
    hook.remove()
    assert trainer.accelerator.mixed_precision == "bf16"
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert lm_task.models["lm"].lm_head.weight.dtype == torch.float32  # master weights stay fp32
    after = sequence_loss(lm_task.models["lm"], lm_task.spec, *fixed).item()
    assert after < 0.8 * before, (before, after)


def test_bf16_falls_back_to_fp32_only_without_native_bf16():
    from audiolm.train.trainer import native_precision

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert native_precision("bf16") == ("bf16" if native or torch.cuda.is_available() else "no")
    assert native_precision("no") == "no" and native_precision("fp16") == "fp16"


def test_range_loss_equals_the_masked_full_softmax():
    """Training over each target's own id range is the full softmax restricted to that range."""
    data = _data(3)
    lm_task, _ = _task("fine", 1, data)
    ids, predicts = pad_batch([lm_task.spec.training_example(s, c, np.random.default_rng(1)) for s, c in data])
    model = lm_task.models["lm"]
    with torch.no_grad():
        full = model(ids, select=predicts)
        targets = ids[:, 1:][predicts[:, :-1]]
        expected = []
        for logits, target in zip(full, targets, strict=True):
            lo, hi = next((a, b) for a, b in lm_task.spec.target_ranges() if a <= target < b)
            expected.append(torch.nn.functional.cross_entropy(logits[lo:hi], target - lo))
        got = sequence_loss(model, lm_task.spec, ids, predicts)
    torch.testing.assert_close(got, torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)


def test_frame_positions_loss_is_each_codes_own_prediction():
    """The loss of a grouped decoder is the mean over every target code of its own prediction: the
    first code of a frame from the state before it, a later one from the depth head given the codes
    before it (computed here one code at a time, as generation does)."""
    data = _data(2)
    layout = TokenLayout(semantic_size=16, codebook_size=32, num_codebooks=4, coarse_codebooks=1)
    spec = TaskSpec(task="fine", layout=layout, semantic_rate=50.0, acoustic_rate=50.0, window_seconds=0.2,
                    frame_positions=True)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=32, layers=1, heads=2, max_positions=spec.max_length(),
                                  group=spec.group)).eval()
    codes = np.concatenate([data[0][1], data[0][1][:1]])
    ids, predicts = pad_batch([spec.build(data[0][0], codes, 0, 10)])
    first = 12  # BOS, 10 coarse frames, SEP
    with torch.no_grad():
        state = model.hidden(ids)[0, first - 1]  # predicts the first target frame
        expected, earlier = [], torch.zeros(32)
        for j, code in enumerate(ids[0, first].tolist()):
            lo, hi = spec.target_ranges()[j]
            x = state if j == 0 else model.depth(state, earlier, j)
            expected.append(torch.nn.functional.cross_entropy(model.logits(x, (lo, hi)), torch.tensor(code - lo)))
            earlier = earlier + model.embed(torch.tensor(code))
        only_first = predicts.clone()  # the loss of the first target frame only
        only_first[0, first:] = False
        got = sequence_loss(model, spec, ids, only_first)
    torch.testing.assert_close(got, torch.stack(expected).mean(), atol=1e-5, rtol=1e-5)


def test_training_windows_run_on_into_the_same_speakers_next_utterance():
    data = _data(6)
    speakers = ["a", "b", "a", "b", "a", "b"]
    lm_task, _ = _task("semantic", 1, data)
    packed = LMTask(lm_task.models["lm"], lm_task.spec, lm_task.cfg, data, data[:2], speakers)
    stream, _ = packed._packed(0, np.random.default_rng(0))
    expected = np.concatenate([data[0][0], data[2][0]])[: len(stream)]
    assert len(stream) >= len(data[0][0]) + lm_task.spec.window
    np.testing.assert_array_equal(stream[: len(expected)], expected)  # speaker a's next utterance, not b's
    ids, predicts = packed.batch(0, 0)
    assert ids.shape[0] == lm_task.cfg.batch_size and (ids != LAYOUT.PAD).sum(1).min() == lm_task.spec.window + 1


def test_bf16_falls_back_to_fp32_only_where_the_cpu_would_emulate_it(monkeypatch):
    from audiolm.train.trainer import native_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for avx512_bf16, amx, expected in ((False, False, "no"), (True, False, "bf16"), (False, True, "bf16")):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert native_precision("bf16") == expected
        assert native_precision("no") == "no"
