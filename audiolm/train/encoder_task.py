"""Training the speech encoder (audiolm.semantic.pretrain) on the one trainer.

A batch is `batch_size` random crops of training utterances with their frame targets, all cut to
the same number of frames (at most `crop_seconds`, at most the shortest utterance drawn, as
fairseq's HuBERT does), voice-augmented, and a span mask. Like the other tasks' batches it is a
pure function of the step and the seed, so a resumed run sees exactly the data an uninterrupted
one would: which utterances a step draws, their speed changes and the common crop length come from
(seed, step, micro-batch); row r's crop, voice change and mask from (seed, step, micro-batch, r), so
under `accelerate launch` each process reads and augments only its own rows of the same global batch.
The wavs may be read from disk when a crop needs them; only the targets are held.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from audiolm.augment import change_speed, change_voice, source_frames, speed_factor
from audiolm.config import EncoderConfig
from audiolm.semantic.pretrain import MaskedPredictor, normalize, samples_for, span_mask
from audiolm.train.trainer import Update

Example = tuple[np.ndarray, np.ndarray]  # (wav at 16 kHz, one target id per 20 ms frame)


class EncoderTask:

    def __init__(self, model: MaskedPredictor, cfg: EncoderConfig, wavs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 heldout: list[Example], sample_rate: int = 16000, eval_utterances: int = 32):
        self.models = {"encoder": model}
        self.cfg, self.sample_rate = cfg, sample_rate
        self.wavs, self.targets = wavs, targets
        self.usable = np.array([i for i, t in enumerate(targets) if len(t) >= 2], dtype=np.int64)
        if not len(self.usable):
            raise ValueError("no training utterance long enough for the encoder")
        self.max_frames = max(2, round(cfg.crop_seconds * 50))
        self.heldout = heldout[:eval_utterances]

    def _draw(self, step: int, micro: int) -> tuple[np.ndarray, list[float], int]:
        """The global batch's utterances, speed factors and common crop length in frames."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.train.seed, step, micro])
        picks = self.usable[rng.integers(0, len(self.usable), cfg.train.batch_size)]
        factors = [speed_factor(rng, cfg.augmentation) if cfg.augment else 1.0 for _ in picks]
        frames = min([self.max_frames] + [int(len(self.targets[i]) / f) - 1 for i, f in zip(picks, factors, strict=True)])
        return picks, factors, max(frames, 1)

    def example(self, utterance: int, factor: float, frames: int, rng: np.random.Generator) -> Example:
        """A crop of `frames` frames of `utterance` at speed `factor` (voice-changed with `augment`)
        and its targets."""
        cfg, wav, target = self.cfg, self.wavs[utterance], self.targets[utterance]
        need = min(len(target), math.ceil(frames * factor) + 1)  # clean frames the crop shows
        first = int(rng.integers(0, len(target) - need + 1))
        clean = wav[320 * first : 320 * first + samples_for(need)]
        if cfg.augment:
            crop = change_voice(change_speed(clean, factor, samples_for(frames)), rng, self.sample_rate,
                                cfg.augmentation, formants=cfg.formant_shift)
        else:
            crop = clean[: samples_for(frames)]
        return crop, target[first + source_frames(frames, factor, need)]

    def batch(self, step: int, micro: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows rank, rank + world, ... of the global batch: crops [b / world, samples], targets and mask
        [b / world, frames]."""
        cfg = self.cfg
        picks, factors, frames = self._draw(step, micro)
        wavs, targets, masks = [], [], []
        for row in range(rank, cfg.train.batch_size, world):
            rng = np.random.default_rng([cfg.train.seed, step, micro, row])
            wav, target = self.example(int(picks[row]), factors[row], frames, rng)
            wavs.append(wav)
            targets.append(target)
            masks.append(span_mask(rng, 1, frames, cfg.mask_prob, cfg.mask_length)[0])
        return (torch.from_numpy(np.stack(wavs)), torch.from_numpy(np.stack(targets).astype(np.int64)),
                torch.from_numpy(np.stack(masks)))

    def step(self, batch, step: int, update: Update) -> dict[str, float]:
        model = self.models["encoder"]
        device = next(model.parameters()).device
        wavs, targets, mask = (t.to(device) for t in batch)
        loss, accuracy = model(normalize(wavs), targets, mask, self.cfg.unmasked_weight)
        update("encoder", loss)
        return {"loss": loss.item(), "accuracy": accuracy.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out loss and accuracy, un-augmented. hubert: on masked frames, masks fixed by the
        seed (comparable from one evaluation to the next); phones: on every frame of unmasked audio,
        as the tokenizer will see it."""
        model = self.models["encoder"]
        model.eval()
        device = next(model.parameters()).device
        rng = np.random.default_rng([self.cfg.train.seed, 123457])
        prob = self.cfg.mask_prob if self.cfg.objective == "hubert" else 0.0
        total = correct = count = 0.0
        for wav, target in self.heldout:
            frames = min(len(target), self.max_frames)
            x = torch.from_numpy(wav[: samples_for(frames)]).unsqueeze(0).to(device)
            y = torch.from_numpy(target[:frames]).unsqueeze(0).to(device)
            mask = torch.from_numpy(span_mask(rng, 1, frames, prob, self.cfg.mask_length)).to(device)
            loss, accuracy = model(normalize(x), y, mask, 0.0)  # masked frames only (all, with no mask)
            n = int((mask & (y >= 0)).sum() if mask.any() else (y >= 0).sum())
            total, correct, count = total + loss.item() * n, correct + accuracy.item() * n, count + n
        return {"loss": total / max(1, count), "accuracy": correct / max(1, count)}
