"""What the language models read and predict, in one place.

Every sequence is `BOS <conditioning> SEP <targets>` over a window of time (the semantic task has no
conditioning part and no SEP):

    semantic  BOS s s s ...                                    p(semantic)
    coarse    BOS s s s ... SEP c0 c1 c0 c1 ...                p(coarse codebooks | semantic of the window)
    fine      BOS c0 c1 c0 c1 ... SEP f2 f3 .. f7 f2 f3 ..     p(fine codebooks | coarse of the window)

and the two text tasks over whole utterances, which end in a stop id (their lengths are unknown):

    reading        BOS ph ph ph ... SEP s s s ... EOS          p(semantic | phones of the text)
    transcription  BOS s s s ... SEP piece piece ... </s>      p(text pieces | semantic)

where a text task's semantic ids have their repeats removed (`dedup`): a phone is then about one
id, and the reading LM need not learn durations (`expand` gives each id its mean training run).

Windows are chosen in the frames of the stream the task predicts and mapped to the other stream by
time (`tokens.frames_at`), so 50 Hz semantic ids and 75 Hz codec frames line up. Generation builds
the same sequence with only the first `known` target frames present, and continues it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from audiolm.tokens import WORD_PHONE, TokenLayout, dedup, frames_at

TASKS = ("semantic", "coarse", "fine")  # the continuation cascade
TEXT_TASKS = ("reading", "transcription")
TEXT_PER_SECOND = 25  # bound on phones (or pieces) per second of speech, sizing a text task's positions


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
    # text tasks: the mean training run of each semantic id (re-expands deduplicated reading output)
    unit_runs: tuple[float, ...] = ()
    end_piece: int = 2  # transcription: the text piece that ends a transcription (sentencepiece's </s>)
    # transcription: first spell the phones heard, then the text (`BOS s.. SEP ph.. piece.. </s>`): the
    # phones follow the semantic ids almost one to one, and the text follows the phones by eSpeak's rules
    phones_first: bool = False
    # acoustic tasks: one position per codec frame, its codebooks' ids together (`build` returns
    # [positions, group] arrays; the decoder sums their embeddings and predicts a frame's later
    # codebooks with its depth head): a transformer step per frame instead of per codebook
    frame_positions: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS + TEXT_TASKS:
            raise ValueError(f"unknown language-model task {self.task!r} (known: {', '.join(TASKS + TEXT_TASKS)})")
        if self.frame_positions and not self.is_acoustic:
            raise ValueError(f"frame_positions: the {self.task} task has one id per frame already")
        self.unit_runs = tuple(self.unit_runs)

    @property
    def is_text(self) -> bool:
        return self.task in TEXT_TASKS

    @property
    def is_acoustic(self) -> bool:
        """Predicts codec codes (coarse, fine), frame by frame at the codec's rate."""
        return self.task in ("coarse", "fine")

    @property
    def rate(self) -> float:
        """Frames per second of the stream this task predicts (a text task's: of its semantic ids)."""
        return self.acoustic_rate if self.is_acoustic else self.semantic_rate

    @property
    def window(self) -> int:
        """Window length in frames of the predicted stream."""
        return max(1, round(self.window_seconds * self.rate))

    @property
    def codebooks(self) -> range:
        return self.layout.codebooks("fine" if self.task == "fine" else "coarse")

    @property
    def tokens_per_frame(self) -> int:
        return len(self.codebooks) if self.is_acoustic else 1

    @property
    def condition_per_position(self) -> int:
        """Ids of the conditioning stream per position: the coarse codes of a frame (fine task with
        `frame_positions`), otherwise one."""
        return self.layout.coarse_codebooks if self.frame_positions and self.task == "fine" else 1

    @property
    def group(self) -> int:
        """Ids per position (the decoder's `group`): 1, or with `frame_positions` a frame's codebooks."""
        return max(self.tokens_per_frame, self.condition_per_position) if self.frame_positions else 1

    @property
    def steps_per_frame(self) -> int:
        """Positions per frame of the predicted stream."""
        return 1 if self.frame_positions else self.tokens_per_frame

    @property
    def vocab_size(self) -> int:
        return self.layout.task_vocab_size(self.task)

    def max_length(self) -> int:
        """Longest sequence a window can make (sizes the model's positions)."""
        w = self.window
        if self.task == "semantic":
            return w + 2
        if self.is_text:  # the longest utterance trained on, its text and BOS, SEP and the stop id
            return w + math.ceil(TEXT_PER_SECOND * self.window_seconds) + 3
        if self.task == "coarse":  # +1: a window's time span may round to one more semantic frame
            cond = frames_at(w, self.acoustic_rate, self.semantic_rate) + 1
        else:
            cond = w * self.layout.coarse_codebooks // self.condition_per_position
        return cond + 2 + w * self.steps_per_frame

    def condition_frames(self, end: int) -> int:
        """Frames of the stream a window ending at frame `end` is conditioned on that it needs: the
        semantic ids up to the same time (coarse), the coarse codes up to `end` (fine)."""
        if self.task == "coarse":
            return frames_at(end, self.acoustic_rate, self.semantic_rate)
        return end if self.task == "fine" else 0

    def allowed(self, position: int) -> tuple[int, int]:
        """Id range the model may emit at `position` of the target part (which starts at a frame)."""
        if self.task == "semantic":
            return self.layout.semantic_range
        if self.task == "reading":  # EOS (3) sits just below the semantic ids
            return self.layout.EOS, self.layout.semantic_range[1]
        if self.task == "transcription":  # phones then pieces: one range, the first piece ends the phones
            return (self.layout.phone_offset if self.phones_first else self.layout.piece_offset), self.layout.piece_range[1]
        return self.layout.position_range(self.codebooks, position)

    @property
    def stop(self) -> int | None:
        """The id that ends a text task's output (None: acoustic tasks run for a given length)."""
        return {"reading": self.layout.EOS, "transcription": self.layout.piece_offset + self.end_piece}.get(self.task)

    def target_ranges(self) -> list[tuple[int, int]]:
        """The id ranges the targets fall in: the semantic ids, or one per predicted codebook."""
        if self.task == "semantic" or self.is_text:
            return [self.allowed(0)]
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
        if self.is_text:
            return self._build_text(semantic, codes, known)
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
        if self.frame_positions:
            return self._positions(cond, target)
        ids = np.concatenate(([L.BOS], cond, [L.SEP], target)).astype(np.int64)
        return ids, len(cond) + 2

    def _positions(self, cond: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, int]:
        """`frame_positions`: [BOS, cond frames, SEP, target frames] as [positions, group] ids (PAD
        filling the rest of a position), and the first target position."""
        cond = cond.reshape(-1, self.condition_per_position)
        target = target.reshape(-1, self.tokens_per_frame)
        first = len(cond) + 2
        ids = np.full((first + len(target), self.group), self.layout.PAD, dtype=np.int64)
        ids[0, 0], ids[first - 1, 0] = self.layout.BOS, self.layout.SEP
        ids[1 : first - 1, : cond.shape[1]] = cond
        ids[first:, : target.shape[1]] = target
        return ids, first

    def _build_text(self, semantic: np.ndarray, text: tuple[np.ndarray, np.ndarray | None],
                    known: int | None) -> tuple[np.ndarray, int]:
        """A text task's sequence of a whole utterance; `text` = (phone ids, piece ids) (either may be
        None where the task does not read it); with `known`, only that many target ids."""
        L = self.layout
        units = dedup(semantic) if self.dedup else np.asarray(semantic, dtype=np.int64)
        phones, pieces = text
        if self.task == "reading":
            cond = np.asarray(phones, dtype=np.int64) + L.phone_offset
            target = np.concatenate([L.semantic_ids(units), [L.EOS]]) if known != 0 else np.zeros(0, np.int64)
        else:
            cond = L.semantic_ids(units)
            target = (np.concatenate([np.asarray(pieces, dtype=np.int64), [self.end_piece]]) + L.piece_offset
                      if known != 0 else np.zeros(0, np.int64))
            if self.phones_first and known != 0:
                target = np.concatenate([np.asarray(phones, dtype=np.int64) + L.phone_offset, target])
        target = target if known is None else target[:known]
        return np.concatenate(([L.BOS], cond, [L.SEP], target)).astype(np.int64), len(cond) + 2

    def expand(self, units: np.ndarray) -> np.ndarray:
        """Deduplicated semantic ids (a reading) -> frames at the semantic rate, each id held for its
        mean training run (`unit_runs`; the overall `mean_run` without them)."""
        units = np.asarray(units, dtype=np.int64)
        runs = np.asarray(self.unit_runs)[units] if self.unit_runs else np.full(len(units), self.mean_run)
        ends = np.round(np.cumsum(runs)).astype(np.int64)
        return np.repeat(units, np.diff(ends, prepend=0).clip(min=0))

    def target_codes(self, ids: np.ndarray, codes: np.ndarray, start: int, known: int) -> np.ndarray:
        """Generated target ids of a window built by `build(.., codes, start, .., known)` -> codes
        [len(codebooks), t] of this task's codebooks (undoing `relative_pitch`)."""
        target = self.layout.unflatten(np.asarray(ids).reshape(-1), self.codebooks)
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
        return np.asarray(codes).shape[-1] if self.is_acoustic else len(semantic)

    def training_example(self, semantic: np.ndarray, codes: np.ndarray | None, rng: np.random.Generator,
                         start: int | None = None) -> tuple[np.ndarray, int]:
        """A window from frame `start` (a random one without it), moved back to end at the stream's
        end where it would run past it; the whole of a short stream."""
        n = self.length(semantic, codes)
        if self.is_text:  # whole utterances: where a crop of the semantic ids ends in the text is unknown
            return self.build(semantic, codes, 0, n)
        last = max(0, n - self.window)
        start = int(rng.integers(0, last + 1)) if start is None else min(int(start), last)
        return self.build(semantic, codes, start, min(n, start + self.window))

    def concatenate(self, parts: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Utterances one after the other as one stream. For the acoustic tasks each utterance's
        semantic ids are cut (or their last id held) to its codec frames' duration first, so the two
        streams stay aligned in time across the joins."""
        if self.task == "semantic":
            return np.concatenate([s for s, _ in parts]), None
        if self.is_text:  # texts joined as the speaker says them, the phones with a word boundary between
            phones = [p for _, (ph, _) in parts for p in ([WORD_PHONE], ph)][1:]
            return (np.concatenate([s for s, _ in parts]),
                    (np.concatenate(phones), np.concatenate([pieces for _, (_, pieces) in parts])))
        semantic = []
        for s, c in parts:
            n = frames_at(np.asarray(c).shape[-1], self.acoustic_rate, self.semantic_rate)
            s = np.asarray(s)[:n]
            semantic.append(np.pad(s, (0, n - len(s)), mode="edge") if 0 < len(s) < n else s)
        return np.concatenate(semantic), np.concatenate([np.asarray(c) for _, c in parts], axis=-1)

    def eval_windows(self, semantic: np.ndarray, codes: np.ndarray | None) -> list[tuple[np.ndarray, int]]:
        """Consecutive non-overlapping windows covering an utterance (deterministic)."""
        n = self.length(semantic, codes)
        if self.is_text:
            return [self.build(semantic, codes, 0, n)]
        return [self.build(semantic, codes, s, min(n, s + self.window)) for s in range(0, n, self.window)]

    def targets(self, semantic: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
        """All ids this task predicts in an utterance, in order (for unigram statistics)."""
        ids, first = self.build(semantic, codes, 0, self.length(semantic, codes))
        return ids[first:, : self.tokens_per_frame].reshape(-1) if self.frame_positions else ids[first:]


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


def unit_runs(sequences: list[np.ndarray], size: int) -> tuple[float, ...]:
    """Each semantic id's mean run length (frames per run) over these sequences; the overall mean
    for an id that never occurs."""
    frames, runs = np.zeros(size), np.zeros(size)
    for s in sequences:
        s = np.asarray(s)
        if s.size == 0:
            continue
        starts = np.flatnonzero(np.diff(s, prepend=s[0] - 1))
        lengths = np.diff(np.append(starts, s.size))
        np.add.at(frames, s[starts], lengths)
        np.add.at(runs, s[starts], 1)
    mean = frames.sum() / max(1.0, runs.sum())
    return tuple(float(f / r) if r else float(mean) for f, r in zip(frames, runs, strict=True))


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
