"""ABX discriminability of speech features or units (Schatz et al. 2013), as Libri-light computes it.

An item file (`#file onset offset #phone prev-phone next-phone speaker`, times in seconds) lists phones
in their triphone context. For a context c, a speaker s and two phones a != b of that context, A and B
are s's items of a and b, and X an item of a: by s again (within speaker: X runs over A, never
compared with itself) or by another speaker (across: up to `max_x` other speakers of (c, a)). The
triplet is right when X is nearer A than B (a tie counts half); the error of the group is the share
wrong. Errors are averaged over contexts (and X's speakers), then over speakers, then over the
(a, b) phone pairs, and reported in %.

The distance between two items is the DTW of their frames under the angle between frames (arccos of
the cosine, over pi: 0 the same direction, 0.5 orthogonal), normalised by the length of the DTW path;
a frame of zeros is at the largest angle from any other (Libri-light's `normalize_with_singularity`).
Units (ids) are compared as one-hot frames: 0 when equal, 0.5 otherwise. A frame of a file's features
spans `frame_shift` seconds and item [onset, offset) takes frames ceil(onset / shift - 0.5) to
floor(offset / shift - 0.5), exclusive.

Why our own: `zerospeech-libriabx2` requires torchaudio, which this project cannot install (it breaks
transformers' imports here), and `fastabx` requires Python 3.12. The arithmetic above is Libri-light's
`eval_ABX.py` (its averaging, its DTW path-length normalisation with the same tie order); the tests
check it on cases computed by hand. Groups larger than `max_group` items are subsampled (seeded), as
Libri-light does with its `max_size_group` (default 10).
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Item:
    file: str
    onset: float
    offset: float
    phone: str
    context: str  # "prev+next"
    speaker: str


def read_items(path: Path) -> list[Item]:
    lines = Path(path).read_text().splitlines()
    items = []
    for number, line in enumerate(lines[1:], 2):  # the first line is the header
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 7:
            raise ValueError(f"{path}, line {number}: expected '#file onset offset #phone prev-phone next-phone speaker', "
                             f"got '{line}'")
        file, onset, offset, phone, prev, nxt, speaker = fields
        items.append(Item(file, float(onset), float(offset), phone, f"{prev}+{nxt}", speaker))
    return items


def items_from_alignment(file: str, phones: list[str], starts: list[int], num_samples: int, sample_rate: int,
                         speaker: str, silence: str = "sil") -> list[Item]:
    """An utterance's phones (labels and start samples) as items: each phone but silence, between
    its neighbours (silence where it is the first or the last), onset and offset its own span."""
    ends = [*starts[1:], num_samples]
    padded = [silence, *phones, silence]
    return [Item(file, starts[k] / sample_rate, ends[k] / sample_rate, phone, f"{padded[k]}+{padded[k + 2]}", speaker)
            for k, phone in enumerate(phones) if phone != silence and ends[k] > starts[k]]


def write_items(path: Path, items: list[Item]) -> None:
    rows = ["#file onset offset #phone prev-phone next-phone speaker"]
    rows += [f"{i.file} {i.onset:.4f} {i.offset:.4f} {i.phone} {i.context.replace('+', ' ')} {i.speaker}" for i in items]
    Path(path).write_text("\n".join(rows) + "\n")


FEATURES_RECORD = "features.json"  # beside the feature files: their frame shift and what they are


def write_feature_record(folder: Path, frame_shift: float, kind: str) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / FEATURES_RECORD).write_text(json.dumps({"frame_shift": frame_shift, "kind": kind}, indent=1) + "\n")


def read_features(folder: Path, frame_shift: float | None = None) -> tuple[dict[str, np.ndarray], float]:
    """A folder of ZeroSpeech feature files (one 2-D array [frames, dim] per wav: `<stem>.npy`, or
    `<stem>.txt` as ZeroSpeech 2021 submissions hold them) and their frame shift in seconds (given,
    or from the folder's features.json)."""
    folder = Path(folder)
    if frame_shift is None:
        record = folder / FEATURES_RECORD
        if not record.exists():
            raise ValueError(f"{folder}: no {FEATURES_RECORD} saying the frame shift; pass it (--frame-shift)")
        frame_shift = float(json.loads(record.read_text())["frame_shift"])
    features = {}
    for path in sorted(folder.glob("*.npy")) + sorted(folder.glob("*.txt")):
        array = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
        if array.ndim != 2:
            raise ValueError(f"{path}: features must be 2-D [frames, dim], not of shape {array.shape}")
        features[path.stem] = array.astype(np.float32)
    if not features:
        raise ValueError(f"{folder}: no feature files (<stem>.npy or <stem>.txt)")
    return features, frame_shift


def one_hot(ids: np.ndarray, size: int) -> np.ndarray:
    """Units as frames for ABX: [frames, size], one 1 per frame."""
    out = np.zeros((len(ids), size), dtype=np.float32)
    out[np.arange(len(ids)), np.asarray(ids, dtype=np.int64)] = 1.0
    return out


def _normalize(frames: np.ndarray) -> np.ndarray:
    """Unit-length frames plus one coordinate that puts a zero frame at the largest angle from all."""
    frames = np.asarray(frames, dtype=np.float64)
    norm = np.sqrt((frames**2).sum(1, keepdims=True))
    zero = norm[:, 0] == 0
    out = np.where(zero[:, None], 1 / math.sqrt(frames.shape[1]), frames / np.where(norm == 0, 1, norm))
    border = np.where(zero, -2e12, 1e-12)[:, None]
    return np.concatenate([out, border], 1)


def item_frames(features: np.ndarray, item: Item, frame_shift: float) -> np.ndarray:
    step = 1.0 / frame_shift
    start = max(0, math.ceil(step * item.onset - 0.5))
    end = min(len(features), math.floor(step * item.offset - 0.5))
    return features[start:end] if end > start else features[:0]


def dtw_distances(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Normalised DTW of each (x, y) of normalised frames, computed for all pairs at once."""
    if not pairs:
        return np.zeros(0)
    n = np.array([len(x) for x, _ in pairs])
    m = np.array([len(y) for _, y in pairs])
    dim = pairs[0][0].shape[1]
    xs = np.zeros((len(pairs), n.max(), dim))
    ys = np.zeros((len(pairs), m.max(), dim))
    for k, (x, y) in enumerate(pairs):
        xs[k, : len(x)], ys[k, : len(y)] = x, y
    cos = np.clip(torch.from_numpy(xs).bmm(torch.from_numpy(ys).transpose(1, 2)).numpy(), -1, 1)
    dist = np.arccos(cos) / math.pi  # [pairs, N, M]
    cost = np.empty_like(dist)
    length = np.empty(dist.shape, dtype=np.int64)  # the path's length, as Libri-light backtracks it
    cost[:, 0, 0], length[:, 0, 0] = dist[:, 0, 0], 1
    for i in range(1, dist.shape[1]):
        cost[:, i, 0], length[:, i, 0] = dist[:, i, 0] + cost[:, i - 1, 0], i + 1
    for j in range(1, dist.shape[2]):
        cost[:, 0, j], length[:, 0, j] = dist[:, 0, j] + cost[:, 0, j - 1], j + 1
    for i in range(1, dist.shape[1]):
        for j in range(1, dist.shape[2]):
            up, left, diag = cost[:, i - 1, j], cost[:, i, j - 1], cost[:, i - 1, j - 1]
            take_diag = (diag <= left) & (diag <= up)
            take_left = ~take_diag & (left <= up)
            best = np.where(take_diag, diag, np.where(take_left, left, up))
            cost[:, i, j] = dist[:, i, j] + best
            length[:, i, j] = 1 + np.where(take_diag, length[:, i - 1, j - 1],
                                           np.where(take_left, length[:, i, j - 1], length[:, i - 1, j]))
    rows = np.arange(len(pairs))
    return cost[rows, n - 1, m - 1] / length[rows, n - 1, m - 1]


class ABX:
    """ABX errors of one set of features over an item file."""

    def __init__(self, items: list[Item], features: dict[str, np.ndarray], frame_shift: float, max_group: int = 10,
                 max_x: int = 5, seed: int = 0):
        self.frames: list[np.ndarray] = []
        groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)  # (context, speaker, phone) -> items
        for item in items:
            if item.file not in features:
                raise ValueError(f"no features for '{item.file}' (named in the item file)")
            frames = item_frames(features[item.file], item, frame_shift)
            if len(frames):  # Libri-light drops items shorter than a frame
                groups[(item.context, item.speaker, item.phone)].append(len(self.frames))
                self.frames.append(_normalize(frames))
        if not self.frames:
            raise ValueError("no item of the item file spans a whole frame of the features")
        rng = random.Random(seed)
        self.groups = {k: sorted(rng.sample(v, max_group)) if len(v) > max_group else v for k, v in groups.items()}
        self.max_x, self.rng = max_x, rng
        self._distances: dict[tuple[int, int], float] = {}

    def _triplets(self, mode: str) -> list[tuple[tuple, list[int], list[int], list[int]]]:
        """(coordinates, A, B, X) of every group of triplets; within: X is A."""
        by_cs: dict[tuple[str, str], list[str]] = defaultdict(list)
        speakers_of: dict[tuple[str, str], list[str]] = defaultdict(list)
        for c, s, p in sorted(self.groups):
            by_cs[(c, s)].append(p)
            speakers_of[(c, p)].append(s)
        out = []
        for (c, s), phones in by_cs.items():
            for a in phones:
                group_a = self.groups[(c, s, a)]
                if mode == "within":
                    xs = [(s, group_a)] if len(group_a) > 1 else []
                else:
                    others = [t for t in speakers_of[(c, a)] if t != s]
                    others = self.rng.sample(others, self.max_x) if len(others) > self.max_x else others
                    xs = [(t, self.groups[(c, t, a)]) for t in others]
                for b in phones:
                    if b != a:
                        out += [((s, a, b, c, t), group_a, self.groups[(c, s, b)], group_x) for t, group_x in xs]
        return out

    def _fill_distances(self, needed: set[tuple[int, int]], batch: int = 4096) -> None:
        todo = sorted(needed - self._distances.keys(), key=lambda p: (len(self.frames[p[0]]), len(self.frames[p[1]])))
        for k in range(0, len(todo), batch):
            chunk = todo[k : k + batch]
            values = dtw_distances([(self.frames[x], self.frames[y]) for x, y in chunk])
            self._distances.update(zip(chunk, values.tolist(), strict=True))

    def error(self, mode: str) -> float:
        """The ABX error in %, `mode` "within" or "across" speakers; nan when no triplet can be formed."""
        if mode not in ("within", "across"):
            raise ValueError(f"ABX mode must be 'within' or 'across', not {mode!r}")
        triplets = self._triplets(mode)
        self._fill_distances({(x, y) for _, A, B, X in triplets for x in X for y in (*A, *B) if x != y})
        d = self._distances
        by_sab: dict[tuple[str, str, str], list[float]] = defaultdict(list)
        for (s, a, b, _c, _t), A, B, X in triplets:
            right = total = 0.0
            for x in X:
                for ya in A:
                    if ya == x:
                        continue
                    for yb in B:
                        right += 1.0 if d[(x, ya)] < d[(x, yb)] else 0.5 if d[(x, ya)] == d[(x, yb)] else 0.0
                        total += 1
            by_sab[(s, a, b)].append(1.0 - right / total)  # contexts (and X's speakers) averaged next
        by_ab: dict[tuple[str, str], list[float]] = defaultdict(list)
        for (_s, a, b), errors in by_sab.items():
            by_ab[(a, b)].append(float(np.mean(errors)))
        if not by_ab:
            return float("nan")
        return 100.0 * float(np.mean([np.mean(v) for v in by_ab.values()]))
