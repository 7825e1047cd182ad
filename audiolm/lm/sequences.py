"""What the three language models read and predict, in one place.

Every sequence is `BOS <conditioning> SEP <targets>` over a window of time (the semantic task has no
conditioning part and no SEP):

    semantic  BOS s s s ...                                    p(semantic)
    coarse    BOS s s s ... SEP c0 c1 c0 c1 ...                p(coarse codebooks | semantic of the window)
    fine      BOS c0 c1 c0 c1 ... SEP f2 f3 .. f7 f2 f3 ..     p(fine codebooks | coarse of the window)

Windows are chosen in the frames of the stream the task predicts and mapped to the other stream by
time (`tokens.frames_at`), so 50 Hz semantic ids and 75 Hz codec frames line up. Generation builds
the same sequence with only the first `known` target frames present, and continues it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from audiolm.tokens import TokenLayout, dedup, frames_at

TASKS = ("semantic", "coarse", "fine")


@dataclass
class TaskSpec:
    task: str
    layout: TokenLayout
    semantic_rate: float  # Hz
    acoustic_rate: float  # Hz
    window_seconds: float
    dedup: bool = False  # semantic task only: ids with consecutive repeats removed
    mean_run: float = 1.0  # average repeat length of semantic ids (re-expands deduplicated ids)
    # coarse task over a pitch codebook 0 (0 = unvoiced, then log-F0 steps): voiced frames as steps from
    # the window's register (`pitch_register`), so the register is copied from the known frames by
    # construction and the LM models only the contour around it
    relative_pitch: bool = False
    default_pitch: int = 0  # the register of a window with no voiced known frame (the training median)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown language-model task {self.task!r} (known: {', '.join(TASKS)})")

    @property
    def rate(self) -> float:
        """Frames per second of the stream this task predicts."""
        return self.semantic_rate if self.task == "semantic" else self.acoustic_rate

    @property
    def window(self) -> int:
        """Window length in frames of the predicted stream."""
        return max(1, round(self.window_seconds * self.rate))

    @property
    def codebooks(self) -> range:
        return self.layout.codebooks("fine" if self.task == "fine" else "coarse")

    @property
    def tokens_per_frame(self) -> int:
        return 1 if self.task == "semantic" else len(self.codebooks)

    @property
    def vocab_size(self) -> int:
        return self.layout.task_vocab_size(self.task)

    def max_length(self) -> int:
        """Longest sequence a window can make (sizes the model's positions)."""
        w = self.window
        if self.task == "semantic":
            return w + 2
        if self.task == "coarse":  # +1: a window's time span may round to one more semantic frame
            cond = frames_at(w, self.acoustic_rate, self.semantic_rate) + 1
        else:
            cond = w * self.layout.coarse_codebooks
        return cond + 2 + w * self.tokens_per_frame

    def allowed(self, position: int) -> tuple[int, int]:
        """Id range the model may emit at `position` of the target part (which starts at a frame)."""
        if self.task == "semantic":
            return self.layout.semantic_range
        return self.layout.position_range(self.codebooks, position)

    def target_ranges(self) -> list[tuple[int, int]]:
        """The id ranges the targets fall in: the semantic ids, or one per predicted codebook."""
        if self.task == "semantic":
            return [self.layout.semantic_range]
        return [(self.layout.codebook_offset(q), self.layout.codebook_offset(q + 1)) for q in self.codebooks]

    def to_dict(self) -> dict:
        values = asdict(self)
        values["layout"] = asdict(self.layout)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TaskSpec:
        return cls(**{**values, "layout": TokenLayout(**values["layout"])})

    # -- sequences ----------------------------------------------------------------------------
    def build(self, semantic: np.ndarray, codes: np.ndarray | None, start: int, end: int,
              known: int | None = None) -> tuple[np.ndarray, int]:
        """The sequence for frames [start, end) of the predicted stream, with the first `known` target
        frames (all by default). Returns (ids, index of the first target id)."""
        L = self.layout
        known = end - start if known is None else known
        if self.task == "semantic":
            ids = np.asarray(semantic[start : start + known])
            ids = dedup(ids) if self.dedup else ids
            return np.concatenate(([L.BOS], L.semantic_ids(ids))).astype(np.int64), 1
        codes = np.asarray(codes)
        if self.task == "coarse":
            s0, s1 = (frames_at(f, self.acoustic_rate, self.semantic_rate) for f in (start, end))
            cond = L.semantic_ids(np.asarray(semantic)[s0:s1])
        else:
            cond = L.flatten(codes[: L.coarse_codebooks, start:end], L.codebooks("coarse"))
        target = codes[self.codebooks.start : self.codebooks.stop, start : start + known]
        if self.relative_pitch and self.task == "coarse":
            target = self._relative(target, self.pitch_register(codes, start, known), +1)
        target = L.flatten(target, self.codebooks)
        ids = np.concatenate(([L.BOS], cond, [L.SEP], target)).astype(np.int64)
        return ids, len(cond) + 2

    def target_codes(self, ids: np.ndarray, codes: np.ndarray, start: int, known: int) -> np.ndarray:
        """Generated target ids of a window built by `build(.., codes, start, .., known)` -> codes
        [len(codebooks), t] of this task's codebooks (undoing `relative_pitch`)."""
        target = self.layout.unflatten(ids, self.codebooks)
        if self.relative_pitch and self.task == "coarse":
            target = self._relative(target, self.pitch_register(codes, start, known), -1)
        return target

    def reference(self, first: int, length: int) -> tuple[int, int]:
        """Positions [lo, hi) of a sequence of `length` ids with targets from `first` whose tokens make
        a `voice_pool` model's voice vector: the known target frames of the window's first half (as
        `pitch_register`), so training windows and a continuation's prefixes agree."""
        k = self.tokens_per_frame
        return first, first + min((length - first) // k, self.window // 2) * k

    def reference_mask(self, sequences: list[tuple[int, int]], length: int, keep: np.ndarray | None = None) -> torch.Tensor:
        """Bool tensor [b, length] of each (first, sequence length)'s `reference` positions; rows with
        `keep` False get none."""
        mask = torch.zeros(len(sequences), length, dtype=torch.bool)
        for row, (first, n) in enumerate(sequences):
            if keep is None or keep[row]:
                lo, hi = self.reference(first, n)
                mask[row, lo:hi] = True
        return mask

    def pitch_register(self, codes: np.ndarray, start: int, known: int) -> int:
        """Median voiced pitch id of the window's first half (known frames only, so training windows
        and generation, whose known part is at least half a window, agree); the default without one."""
        pitch = np.asarray(codes)[0, start : start + min(known, self.window // 2)]
        voiced = pitch[pitch > 0]
        return int(np.median(voiced)) if voiced.size else self.default_pitch

    def _relative(self, target: np.ndarray, register: int, direction: int) -> np.ndarray:
        """Codebook 0's voiced ids to (+1) or from (-1) steps around the codebook's middle id."""
        target = np.array(target, dtype=np.int64, copy=True)
        pitch, centre = target[0], self.layout.codebook_size // 2
        # kept in the codebook either way: a step of more than half the codebook (an octave error of the
        # tracker on a fine pitch grid) saturates, and a generated step may fall off the scale
        shifted = np.clip(pitch + direction * (centre - register), 1, self.layout.codebook_size - 1)
        target[0] = np.where(pitch > 0, shifted, 0)
        return target

    def length(self, semantic: np.ndarray, codes: np.ndarray | None) -> int:
        """Frames of the predicted stream in an utterance."""
        return len(semantic) if self.task == "semantic" else np.asarray(codes).shape[-1]

    def training_example(self, semantic: np.ndarray, codes: np.ndarray | None, rng: np.random.Generator,
                         starts_within: int | None = None) -> tuple[np.ndarray, int]:
        """A random window: a random crop of a long stream, the whole of a short one. With
        `starts_within`, the window starts in the first `starts_within` frames (the first utterance
        of a packed stream) and runs on into what follows."""
        n = self.length(semantic, codes)
        last = max(0, n - self.window) if starts_within is None else min(max(0, n - self.window), starts_within - 1)
        start = int(rng.integers(0, last + 1))
        return self.build(semantic, codes, start, min(n, start + self.window))

    def concatenate(self, parts: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Utterances one after the other as one stream. For the acoustic tasks each utterance's
        semantic ids are cut (or their last id held) to its codec frames' duration first, so the two
        streams stay aligned in time across the joins."""
        if self.task == "semantic":
            return np.concatenate([s for s, _ in parts]), None
        semantic = []
        for s, c in parts:
            n = frames_at(np.asarray(c).shape[-1], self.acoustic_rate, self.semantic_rate)
            s = np.asarray(s)[:n]
            semantic.append(np.pad(s, (0, n - len(s)), mode="edge") if 0 < len(s) < n else s)
        return np.concatenate(semantic), np.concatenate([np.asarray(c) for _, c in parts], axis=-1)

    def eval_windows(self, semantic: np.ndarray, codes: np.ndarray | None) -> list[tuple[np.ndarray, int]]:
        """Consecutive non-overlapping windows covering an utterance (deterministic)."""
        n = self.length(semantic, codes)
        return [self.build(semantic, codes, s, min(n, s + self.window)) for s in range(0, n, self.window)]

    def targets(self, semantic: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """All ids this task predicts in an utterance, in order (for unigram statistics)."""
        ids, first = self.build(semantic, codes, 0, self.length(semantic, codes))
        return ids[first:]


def mean_run_length(sequences: list[np.ndarray]) -> float:
    """Average number of frames a semantic id is repeated for (frames / deduplicated ids)."""
    frames = sum(len(s) for s in sequences)
    runs = sum(len(dedup(s)) for s in sequences)
    return frames / max(1, runs)


def expand_runs(ids: np.ndarray, mean_run: float, frames: int) -> np.ndarray:
    """Deduplicated ids back to `frames` time-aligned frames, each id held for `mean_run` frames."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids
    position = np.minimum((np.arange(frames) / mean_run).astype(np.int64), ids.size - 1)
    return ids[position]


def unigram_perplexity(spec: TaskSpec, train_targets: list[np.ndarray], heldout_targets: list[np.ndarray]) -> float:
    """Perplexity of held-out targets under train-split unigram frequencies (add-one smoothing).
    For acoustic tasks each codebook has its own unigram, so the baseline knows the codebook of every
    position as the LM does."""
    counts = np.ones(spec.vocab_size, dtype=np.float64)
    np.add.at(counts, np.concatenate(train_targets), 1)
    log_prob = np.zeros(spec.vocab_size)
    for a, b in spec.target_ranges():
        log_prob[a:b] = np.log(counts[a:b] / counts[a:b].sum())
    held = np.concatenate(heldout_targets)
    return float(np.exp(-log_prob[held].mean()))
