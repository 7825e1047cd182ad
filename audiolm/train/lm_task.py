"""Training any of the three language models on the one trainer. The task (semantic, coarse, fine)
only changes which sequences `TaskSpec` builds; batching, loss and evaluation are shared.

A training window starts at a frame drawn uniformly from all the training frames (an utterance with
probability proportional to its length) and, with speakers given, runs on into that speaker's next
utterances (packing): the LMs see pauses followed by more speech in the same voice, as a continuation
needs, instead of learning that silence is where speech ends. Windows are padded on the right (padding
is never a target and, with causal attention, never seen by a real position).

Row r of step s's global batch is a pure function of (seed, s, micro-batch, r): a resumed run sees
exactly the data an uninterrupted one would, and under `accelerate launch` each process builds only
its own rows (r = rank, rank + N, ...) of the same global batch, whatever N. The training utterances
may be a `TokenRows` (read from the memory-mapped token table when a window needs them) or a list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from audiolm.config import TrainConfig
from audiolm.data.token_rows import Utterance
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout
from audiolm.train.trainer import Update

# share of training windows a voice-pooling decoder sees without its reference (stage 4's
# "semantic ids only" condition gives it none)
VOICE_DROPOUT = 0.1
TEXT_PACK = 3  # text tasks: utterances of one speaker per training example, at most


def pad_batch(examples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(ids, first target)] -> ids [b, t] (or [b, t, group]: `TaskSpec.frame_positions`) padded with
    PAD, and a bool mask [b, t] of the positions whose next position is a target (where the loss is taken)."""
    longest = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), longest, *examples[0][0].shape[1:]), TokenLayout.PAD, dtype=torch.long)
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


@dataclass
class LossPlan:
    """Which positions a batch's loss reads, as index tensors: computed from the batch on the CPU
    (`loss_plan`) and copied to the device with it, the loss then runs without waiting on the device
    (boolean indexing and `.nonzero()` there would each stop the host until the GPU caught up)."""

    select: torch.Tensor  # long [n]: flat indices (into b * t) of the positions whose next position is a target
    targets: torch.Tensor  # [n] target ids, or [n, group] with PAD where a position holds fewer
    scored: torch.Tensor  # [m] the target ids scored (targets without PAD)
    kept: torch.Tensor | None  # long [m]: the flat indices of `scored` in `targets` (grouped targets)
    groups: list[tuple[int, int, torch.Tensor]]  # (lo, hi, rows of `scored` in [lo, hi)) per target range

    def to(self, device: torch.device | str) -> LossPlan:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return LossPlan(move(self.select), move(self.targets), move(self.scored), move(self.kept),
                        [(lo, hi, move(rows)) for lo, hi, rows in self.groups])


def loss_plan(spec: TaskSpec, ids: torch.Tensor, predicts: torch.Tensor) -> LossPlan:
    """The `LossPlan` of a padded batch (`pad_batch`'s ids and predicts; a row's last position never
    predicts, so a selected position's target is the next flat index)."""
    select = predicts.flatten().nonzero()[:, 0]
    targets = ids.flatten(0, 1)[select + 1]
    kept = (targets.reshape(-1) != TokenLayout.PAD).nonzero()[:, 0] if targets.dim() == 2 else None
    scored = targets.reshape(-1)[kept] if kept is not None else targets
    groups = [(lo, hi, ((scored >= lo) & (scored < hi)).nonzero()[:, 0]) for lo, hi in spec.target_ranges()]
    return LossPlan(select, targets, scored, kept, groups)


def sequence_loss(model: Decoder, spec: TaskSpec, ids: torch.Tensor, predicts: torch.Tensor,
                  reduction: str = "mean", reference: torch.Tensor | None = None,
                  plan: LossPlan | None = None) -> torch.Tensor:
    """Cross-entropy of each target over the id range it belongs to (its codebook's ids, or the
    semantic ids): the distribution sampling draws from, and a fraction of the full head's cost.
    With ids per position (`frame_positions`), a position's first id is predicted from the state
    before it and the others through the depth head, given the ids before them (teacher forcing).
    `plan`: the batch's `loss_plan`, computed ahead on the CPU (else here, from ids and predicts)."""
    plan = plan or loss_plan(spec, ids, predicts)
    grouped = plan.targets.dim() == 2
    logits = model(ids, select=plan.select, vocab_ranges=plan.groups, reference=reference,
                   targets=plan.targets if grouped else None, target_rows=plan.kept)
    total = sum(F.cross_entropy(out.float(), plan.scored[rows] - lo, reduction="sum")
                for out, (lo, _, rows) in zip(logits, plan.groups, strict=True))
    return total / max(1, plan.scored.numel()) if reduction == "mean" else total


def next_of_speaker(speakers: Sequence | np.ndarray | None, count: int) -> np.ndarray:
    """For each utterance, the index of its speaker's next one (in table order; the last is followed
    by the speaker's first); each utterance itself without speakers (no packing)."""
    following = np.arange(count)
    if speakers is None or count == 0:
        return following
    codes = np.unique(np.asarray(speakers), return_inverse=True)[1].reshape(-1)
    order = np.argsort(codes, kind="stable")  # each speaker's utterances together, in table order
    grouped = codes[order]
    firsts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    lasts = np.r_[firsts[1:] - 1, count - 1]
    following[order[:-1]] = order[1:]
    following[order[lasts]] = order[firsts]
    return following


def frame_lengths(spec: TaskSpec, utterances: Sequence[Utterance]) -> np.ndarray:
    """Frames of the predicted stream in each utterance (a `TokenRows` knows them without reading)."""
    if hasattr(utterances, "lengths"):
        return utterances.lengths(acoustic=spec.is_acoustic).astype(np.int64)
    return np.array([spec.length(*u) for u in utterances], dtype=np.int64)


class LMTask:

    def __init__(self, model: Decoder, spec: TaskSpec, cfg: TrainConfig, train: Sequence[Utterance],
                 heldout: list[Utterance], speakers: Sequence | np.ndarray | None = None):
        self.models = {"lm": model}  # the trainer may wrap it (DistributedDataParallel): read its config here
        self.spec, self.cfg, self.voice_pool = spec, cfg, model.config.voice_pool
        self.train = train
        self.lengths = frame_lengths(spec, train)
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)))  # each utterance's first frame of all
        if not spec.is_text and self.starts[-1] == 0:
            raise ValueError(f"the {spec.task} LM's training utterances hold no frames")
        self.next_of_speaker = next_of_speaker(speakers, len(train))
        self.heldout_windows = [w for s, c in heldout for w in spec.eval_windows(s, c)]

    def _packed(self, first: int, rng: np.random.Generator) -> Utterance:
        """Utterance `first` and as many of its speaker's next ones as a window starting in it needs."""
        if self.spec.is_text:
            return self._packed_text(first, rng)
        parts, i = [self.train[first]], first
        frames = int(self.lengths[first])
        need = frames + self.spec.window
        while frames < need and self.next_of_speaker[i] != first:
            i = int(self.next_of_speaker[i])
            parts.append(self.train[i])
            frames += int(self.lengths[i])
        return self.spec.concatenate(parts) if len(parts) > 1 else parts[0]

    def _packed_text(self, first: int, rng: np.random.Generator) -> Utterance:
        """A text task's example: utterance `first` and up to TEXT_PACK - 1 of its speaker's next ones,
        while they fit the window (transcribing or reading more than one sentence, and the phrasings
        of sentences met apart)."""
        parts, i = [self.train[first]], first
        frames, want = len(self.train[first][0]), int(rng.integers(1, TEXT_PACK + 1))
        while len(parts) < want and self.next_of_speaker[i] != first:
            i = int(self.next_of_speaker[i])
            frames += len(self.train[i][0])
            if frames > self.spec.window:
                break
            parts.append(self.train[i])
        return self.spec.concatenate(parts) if len(parts) > 1 else self.train[first]


    def example(self, step: int, micro: int, row: int) -> tuple[tuple[np.ndarray, int], bool]:
        """Row `row` of the global batch of (step, micro-batch): (its sequence and first target, whether
        it keeps its voice reference)."""
        rng = np.random.default_rng([self.cfg.seed, step, micro, row])
        if self.spec.is_text:  # whole utterances (or a speaker's few), each as likely
            first = int(rng.integers(0, len(self.train)))
            example = self.spec.training_example(*self._packed_text(first, rng), rng)
        else:  # a frame drawn from all training frames starts the window
            position = int(rng.integers(0, self.starts[-1]))
            first = int(np.searchsorted(self.starts, position, side="right")) - 1
            example = self.spec.training_example(*self._packed(first, rng), rng, start=position - int(self.starts[first]))
        return example, bool(rng.random() >= VOICE_DROPOUT)

    def batch(self, step: int, micro: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, ...]:
        """Rows rank, rank + world, ... of the global batch (all of them in one process)."""
        rows = [self.example(step, micro, row) for row in range(rank, self.cfg.batch_size, world)]
        examples = [example for example, _ in rows]
        ids, predicts = pad_batch(examples)
        if not self.voice_pool:
            return ids, predicts
        return ids, predicts, reference_mask(self.spec, examples, ids.shape[1], np.array([keep for _, keep in rows]))

    def step(self, batch: tuple[torch.Tensor, ...], step: int, update: Update) -> dict[str, torch.Tensor]:
        """The loss's positions planned on the CPU, the batch copied without blocking (from pinned
        memory on a GPU), and the loss returned as a tensor (the trainer reads it when it logs): no
        step waits on the device."""
        model = self.models["lm"]
        device = next(model.parameters()).device
        plan = loss_plan(self.spec, batch[0], batch[1]).to(device)
        ids, predicts, *reference = (t.to(device, non_blocking=True) for t in batch)
        loss = sequence_loss(model, self.spec, ids, predicts, reference=reference[0] if reference else None, plan=plan)
        update("lm", loss)
        return {"loss": loss.detach()}

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
            count += int((ids[:, 1:][predicts[:, :-1]] != TokenLayout.PAD).sum())  # target ids (several a position)
        loss = total / max(1, count)
        return {"loss": loss, "perplexity": math.exp(loss)}
