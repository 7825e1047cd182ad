"""Training any of the three language models on the one trainer. The task (semantic, coarse, fine)
only changes which sequences `TaskSpec` builds; batching, loss and evaluation are shared.

A training window starts at a random frame of a random utterance and, with speakers given, runs on
into that speaker's next utterances (packing): the LMs see pauses followed by more speech in the same
voice, as a continuation needs, instead of learning that silence is where speech ends. Windows are
padded on the right (padding is never a target and, with causal attention, never seen by a real
position). Like the codec's, a batch is a pure function of the step and the seed, so a resumed run
sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from audiolm.config import TrainConfig
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout
from audiolm.train.trainer import Update

Utterance = tuple[np.ndarray, np.ndarray | None]  # (semantic ids, codes [k, t] or None)
# share of training windows a voice-pooling decoder sees without its reference (stage 4's
# "semantic ids only" condition gives it none)
VOICE_DROPOUT = 0.1
TEXT_PACK = 3  # text tasks: utterances of one speaker per training example, at most


def pad_batch(examples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(ids, first target)] -> ids [b, t] padded with PAD, and a bool mask of the positions whose
    next id is a target (where the loss is taken)."""
    longest = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), longest), TokenLayout.PAD, dtype=torch.long)
    predicts = torch.zeros(len(examples), longest, dtype=torch.bool)
    for row, (seq, first) in enumerate(examples):
        ids[row, : len(seq)] = torch.from_numpy(seq)
        predicts[row, first - 1 : len(seq) - 1] = True
    return ids, predicts


def reference_mask(spec: TaskSpec, examples: list[tuple[np.ndarray, int]], length: int,
                   keep: np.ndarray | None = None) -> torch.Tensor:
    """Bool [b, length]: each example's reference positions (`TaskSpec.reference`), for a decoder with
    a voice vector; rows with `keep` False get none (the model also learns to go without a voice)."""
    return spec.reference_mask([(first, len(seq)) for seq, first in examples], length, keep)


def sequence_loss(model: Decoder, spec: TaskSpec, ids: torch.Tensor, predicts: torch.Tensor,
                  reduction: str = "mean", reference: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each target over the id range it belongs to (its codebook's ids, or the
    semantic ids): the distribution sampling draws from, and a fraction of the full head's cost."""
    targets = ids[:, 1:][predicts[:, :-1]]
    groups = [(lo, hi, ((targets >= lo) & (targets < hi)).nonzero()[:, 0]) for lo, hi in spec.target_ranges()]
    logits = model(ids, select=predicts, vocab_ranges=groups, reference=reference)
    total = sum(F.cross_entropy(out.float(), targets[rows] - lo, reduction="sum")
                for out, (lo, _, rows) in zip(logits, groups, strict=True))
    return total / max(1, targets.numel()) if reduction == "mean" else total


class LMTask:
    def __init__(self, model: Decoder, spec: TaskSpec, cfg: TrainConfig, train: list[Utterance],
                 heldout: list[Utterance], speakers: list[str] | None = None):
        self.models = {"lm": model}  # the trainer may wrap it (DistributedDataParallel): read its config here
        self.spec, self.cfg, self.voice_pool = spec, cfg, model.config.voice_pool
        self.train = train
        self.next_of_speaker = list(range(len(train)))  # each utterance followed by itself: no packing
        if speakers is not None:
            by_speaker: dict[str, list[int]] = {}
            for i, speaker in enumerate(speakers):
                by_speaker.setdefault(speaker, []).append(i)
            for utterances in by_speaker.values():
                for a, b in zip(utterances, utterances[1:] + utterances[:1], strict=True):
                    self.next_of_speaker[a] = b
        self.heldout_windows = [w for s, c in heldout for w in spec.eval_windows(s, c)]

    def _packed(self, first: int, rng: np.random.Generator) -> Utterance:
        """Utterance `first` and as many of its speaker's next ones as a window starting in it needs."""
        if self.spec.is_text:
            return self._packed_text(first, rng)
        parts, i = [self.train[first]], first
        frames = self.spec.length(*self.train[first])
        need = frames + self.spec.window
        while frames < need and self.next_of_speaker[i] != first:
            i = self.next_of_speaker[i]
            parts.append(self.train[i])
            frames += self.spec.length(*self.train[i])
        return self.spec.concatenate(parts) if len(parts) > 1 else self.train[first]

    def _packed_text(self, first: int, rng: np.random.Generator) -> Utterance:
        """A text task's example: utterance `first` and up to TEXT_PACK - 1 of its speaker's next ones,
        while they fit the window (transcribing or reading more than one sentence, and the phrasings
        of sentences met apart)."""
        parts, i = [self.train[first]], first
        frames, want = len(self.train[first][0]), int(rng.integers(1, TEXT_PACK + 1))
        while len(parts) < want and self.next_of_speaker[i] != first:
            i = self.next_of_speaker[i]
            frames += len(self.train[i][0])
            if frames > self.spec.window:
                break
            parts.append(self.train[i])
        return self.spec.concatenate(parts) if len(parts) > 1 else self.train[first]


    def batch(self, step: int, micro: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.cfg.seed, step, micro])
        picks = rng.integers(0, len(self.train), self.cfg.batch_size)
        examples = [self.spec.training_example(*self._packed(int(i), rng), rng, starts_within=self.spec.length(*self.train[i]))
                    for i in picks]
        ids, predicts = pad_batch(examples)
        if not self.voice_pool:
            return ids, predicts
        return ids, predicts, reference_mask(self.spec, examples, ids.shape[1], rng.random(len(examples)) >= VOICE_DROPOUT)

    def step(self, batch: tuple[torch.Tensor, ...], step: int, update: Update) -> dict[str, float]:
        model = self.models["lm"]
        device = next(model.parameters()).device
        ids, predicts, *reference = (t.to(device) for t in batch)
        loss = sequence_loss(model, self.spec, ids, predicts, reference=reference[0] if reference else None)
        update("lm", loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(self, batch_size: int = 16) -> dict[str, float]:
        """Mean loss per target id over the held-out windows, and its perplexity."""
        model = self.models["lm"]
        model.eval()
        device = next(model.parameters()).device
        total, count = 0.0, 0
        windows = sorted(self.heldout_windows, key=lambda w: len(w[0]))
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            ids, predicts = (t.to(device) for t in pad_batch(chunk))
            reference = reference_mask(self.spec, chunk, ids.shape[1]).to(device) if self.voice_pool else None
            total += sequence_loss(model, self.spec, ids, predicts, reduction="sum", reference=reference).item()
            count += int(predicts.sum())
        loss = total / max(1, count)
        return {"loss": loss, "perplexity": math.exp(loss)}
