"""Sampling from the decoder: temperature, top-k, top-p and a seed, restricted at every position to
the id range that position may hold (a semantic LM never emits a codec id, a coarse LM emits
codebook q's ids only where codebook q comes). `continue_stream` generates any number of frames of a
task's stream in sliding windows, so outputs may be longer than the model's context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from audiolm.config import SamplingConfig
from audiolm.devices import module_device
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout

# a batch's random draws: one generator for the whole batch, or one per row (a row's samples then do
# not depend on the rows beside it: the web page batches requests that each carry their own seed)
Generators = torch.Generator | list[torch.Generator] | None


def rows_of(generator: Generators, rows: list[int]) -> Generators:
    """The generators of some rows of a batch (a shared one stays shared)."""
    return [generator[i] for i in rows] if isinstance(generator, list) else generator


def sample_next(logits: torch.Tensor, lo: int, hi: int, sampling: SamplingConfig,
                generator: Generators = None) -> torch.Tensor:
    """logits [b, vocab] -> ids [b] in [lo, hi)."""
    logits = logits[:, lo:hi].float()
    if sampling.temperature <= 0:
        return logits.argmax(-1) + lo
    logits = logits / sampling.temperature
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > sampling.top_p  # keeps the first token always
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    # inverse-CDF sampling from one uniform per row: with a generator per row that is one cheap draw
    # each (torch.multinomial per row cost 9% of a batch-8 continuation), and a batch of one row
    # draws the same with its own generator as with a shared one
    cdf = logits.softmax(-1).cumsum(-1)
    if isinstance(generator, list):
        u = torch.cat([torch.rand(1, generator=g, device=cdf.device) for g in generator])
    else:
        u = torch.rand(cdf.shape[0], generator=generator, device=cdf.device)
    # the first id whose cumulative probability exceeds u (ids of probability 0 are never chosen)
    ids = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None].contiguous(), right=True)[:, 0]
    return ids.clamp_max(cdf.shape[-1] - 1) + lo


# inference_mode, not no_grad: no version counters on the ~150 small tensors of each token (406 -> 450
# tokens/s for the 16.8M model, docs/performance.md); torch applies it around every resumption of a generator
@torch.inference_mode()
def generate_steps(model: Decoder, prefix: torch.Tensor, steps: int, allowed: Callable[[int], tuple[int, int]],
                   sampling: SamplingConfig, generator: Generators = None, use_cache: bool = True,
                   reference: torch.Tensor | None = None, per_position: int = 1,
                   pad: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """`generate` one id at a time: yields the ids [b] of each new position as it is sampled (the
    next forward runs only when the next id is asked for), so a caller can use them at once.
    `per_position` > 1 (a grouped decoder, prefix [b, t, group]): new positions hold that many ids,
    the first sampled from the transformer's state, the others from its depth head; the transformer
    runs once per position. `pad` (long [b]): the prefix's rows are left-padded by that many positions
    (`left_padded`)."""
    if steps == 0:
        return
    b, k = prefix.shape[0], per_position
    cache = model.new_cache(b, prefix.shape[1] + -(-steps // k)) if use_cache else None
    # Only the logits of the range the next id may come from are computed (`Decoder.logits`).
    state = model.hidden(prefix, cache, reference, pad)[:, -1]
    out = torch.empty(b, steps, dtype=torch.long, device=prefix.device)
    earlier = None  # the summed embeddings of the position's ids so far (depth head)
    together = k > 1 and not model.config.depth_layers  # a position's ids drawn at once
    for i in range(steps):
        j = i % k
        if together and j == 0:  # the position's ranges, one after the other: its logits as k rows
            lo, hi = allowed(i)[0], allowed(i + k - 1)[1]
            logits = model.logits(state, (lo, hi)).reshape(b * k, (hi - lo) // k)
            drawn = sample_next(logits, 0, logits.shape[1], sampling, _repeat(generator, k)).view(b, k)
            out[:, i : i + k] = drawn + lo + torch.arange(k, device=drawn.device) * logits.shape[1]
        elif not together:
            lo, hi = allowed(i)
            x = state if j == 0 else model.depth(state, earlier, j)
            out[:, i] = sample_next(model.logits(x, (lo, hi)), 0, hi - lo, sampling, generator) + lo
        yield out[:, i]
        if i + 1 == steps:
            break
        if j + 1 < k:
            if not together:
                new = model.embed(out[:, i])
                earlier = new if j == 0 else earlier + new
            continue
        if use_cache:
            state = model.step(_positions(out[:, i + 1 - k : i + 1], prefix, k), cache)[:, -1]
        else:  # the whole sequence again: the reference the cache is tested against
            whole = torch.cat([prefix, _positions(out[:, : i + 1], prefix, k)], dim=1)
            state = model.hidden(whole, reference=reference, pad=pad)[:, -1]


def _repeat(generator: Generators, k: int) -> Generators:
    """Per-row generators for a batch whose rows are each repeated k times (a shared one stays)."""
    return [g for g in generator for _ in range(k)] if isinstance(generator, list) else generator


def _positions(ids: torch.Tensor, prefix: torch.Tensor, k: int) -> torch.Tensor:
    """Generated ids [b, n] -> positions shaped as the prefix's: [b, n], or [b, n / k, group] (PAD
    filling a position's ids after the first k)."""
    if prefix.dim() == 2:
        return ids
    frames = ids.view(ids.shape[0], -1, k)
    return F.pad(frames, (0, prefix.shape[2] - k), value=TokenLayout.PAD)


def generate(model: Decoder, prefix: torch.Tensor, steps: int, allowed: Callable[[int], tuple[int, int]],
             sampling: SamplingConfig, generator: Generators = None, use_cache: bool = True,
             reference: torch.Tensor | None = None, stop: int | None = None, per_position: int = 1,
             pad: torch.Tensor | None = None) -> torch.Tensor:
    """prefix [b, t] (or [b, t, group]) -> the next `steps` ids [b, steps]; `allowed(i)` is the id
    range of new id i; `reference` (bool [b, t]) the prefix positions of a voice-pooling decoder's
    voice vector; `per_position` as in `generate_steps`. With `stop`, generation ends early once
    every row has emitted it (fewer than `steps` columns); `pad` as in `generate_steps`."""
    out = torch.empty(prefix.shape[0], steps, dtype=torch.long, device=prefix.device)
    stopped = torch.zeros(prefix.shape[0], dtype=torch.bool, device=prefix.device)
    for i, ids in enumerate(generate_steps(model, prefix, steps, allowed, sampling, generator, use_cache, reference,
                                           per_position, pad)):
        out[:, i] = ids
        if stop is not None:
            stopped |= ids == stop
            if bool(stopped.all()):
                return out[:, : i + 1]
    return out


def left_padded(prefixes: list[np.ndarray], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sequences of any lengths (ids [t] or [t, group]) -> one batch [b, longest(, group)], each row
    padded on the left with PAD, and each row's padding as `Decoder.hidden` takes it (None when all
    have one length: then there is none)."""
    longest = max(len(p) for p in prefixes)
    pad = np.array([longest - len(p) for p in prefixes], dtype=np.int64)
    batch = np.full((len(prefixes), longest, *prefixes[0].shape[1:]), TokenLayout.PAD, dtype=np.int64)
    for row, p in enumerate(prefixes):
        batch[row, pad[row] :] = p
    return torch.from_numpy(batch).to(device), (torch.from_numpy(pad).to(device) if pad.any() else None)


def per_row(frames: int | Sequence[int] | np.ndarray, rows: int) -> np.ndarray:
    """A frame count for every row, or one per row, as an int64 array [rows]."""
    return np.full(rows, int(frames), dtype=np.int64) if np.ndim(frames) == 0 else np.asarray(frames, dtype=np.int64)


def stream_frames(known: np.ndarray, total: np.ndarray) -> int:
    """The frames a stream needs for `extend_stream` to take every row from `known` to `total` (each
    row gets as many new frames as the row that needs most)."""
    return int((known + (total - known).max()).max()) if len(known) else 0


def continue_stream(model: Decoder, spec: TaskSpec, semantic: list[np.ndarray], codes: np.ndarray | None,
                    known: int | Sequence[int], total: int | Sequence[int], sampling: SamplingConfig,
                    generator: Generators) -> np.ndarray:
    """Extend a batch from `known` to `total` frames of the task's stream (one count for all rows, or
    one per row: `extend_stream`).

    semantic: per row, semantic ids covering `total` (acoustic tasks) or the first `known` frames
    (semantic task); codes: [b, all codebooks, frames] with this task's codebooks valid up to `known`
    (acoustic tasks). Returns the semantic ids [b, frames] (row i valid up to its `total`) or a copy of
    the codes with the task's codebooks filled in (`extend_stream`, run to its end).
    """
    if spec.task == "semantic":
        known_rows, total_rows = per_row(known, len(semantic)), per_row(total, len(semantic))
        stream = np.zeros((len(semantic), stream_frames(known_rows, total_rows)), dtype=np.int64)
        for i, s in enumerate(semantic):
            stream[i, : known_rows[i]] = s[: known_rows[i]]
    else:
        stream = np.array(codes, dtype=np.int64, copy=True)
    for _ in extend_stream(model, spec, semantic, stream, known, total, sampling, generator):
        pass
    return stream


def extend_stream(model: Decoder, spec: TaskSpec, semantic: list[np.ndarray], stream: np.ndarray,
                  known: int | Sequence[int], total: int | Sequence[int], sampling: SamplingConfig, generator: Generators,
                  upstream: Iterator[np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """Fill `stream` in place from frame `known` to `total`, yielding each row's frames done (an array
    [b]) after every frame (the semantic ids [b, frames], or the codes [b, all codebooks, frames] whose
    task's codebooks this fills; `semantic` as in `continue_stream`).

    `known` and `total` are one frame count for every row, or one per row: prompts of different lengths
    generated together. Every row gets the same number of new frames per window (the most any row
    needs: a row with fewer to make gets some beyond its `total`, which the stream must have room for),
    its sequence left-padded to the longest (`Decoder.hidden`'s `pad`), so a row's ids are those it
    gets alone, up to float rounding and the shared generator's draws.

    The first window runs from frame 0; later ones slide by half a window, keeping the last half as
    context. `upstream` (each row's frames done, as this yields) fills the stream this task's windows
    condition on while it runs: the semantic LM's ids (`semantic`, for the coarse LM) or the coarse codes
    in `stream` (for the fine LM). It is advanced until it covers a window in every row
    (`TaskSpec.condition_frames`) before the window is built, so the LMs run interleaved and the first
    frames of sound are ready long before the earlier LMs are through.
    """
    b = len(semantic)
    known, total = per_row(known, b), per_row(total, b)
    w, k = spec.window, spec.tokens_per_frame
    per_frame = k // spec.steps_per_frame  # ids per new position (a frame's, with frame positions)
    new = int((total - known).max()) if b else 0
    if stream_frames(known, total) > stream.shape[-1]:
        raise ValueError(f"a stream of {stream.shape[-1]} frames has no room for {stream_frames(known, total)}")
    device = module_device(model)
    ready = None
    progress = 0
    # shown in a terminal only (disable=None), and as the web page's progress bar (gradio tracks tqdm)
    bar = tqdm(total=new, desc=f"{spec.task} LM", unit="frame", leave=False, disable=None)
    while progress < new:
        done = known + progress
        advance = min(new - progress, max(w // 2, w - int(done.max())))
        end = done + advance
        start = np.maximum(0, end - w)
        need = np.array([spec.condition_frames(int(e)) for e in end])
        while upstream is not None and (ready is None or (ready < need).any()):
            ready = next(upstream, None)
            if ready is None:  # run out: what it made is all there is (rows past their own `total`)
                upstream = None
        prefixes, firsts = [], []
        for i in range(b):
            src = stream[i] if spec.task == "semantic" else semantic[i]
            ids, first = spec.build(src, None if spec.task == "semantic" else stream[i], int(start[i]), int(end[i]),
                                    known=int(done[i] - start[i]))
            prefixes.append(ids)
            firsts.append(first)
        batch, pad = left_padded(prefixes, device)
        reference = None
        if model.config.voice_pool:  # each row's reference positions, shifted by its padding
            length = batch.shape[1]
            reference = spec.reference_mask([(f + length - len(p), length) for f, p in zip(firsts, prefixes, strict=True)],
                                            length).to(device)
        steps = advance * k
        new_ids = np.zeros((b, steps), dtype=np.int64)
        for i, ids in enumerate(generate_steps(model, batch, steps, spec.allowed, sampling, generator, reference=reference,
                                               per_position=per_frame, pad=pad)):
            new_ids[:, i] = ids.cpu().numpy()
            if (i + 1) % k == 0:  # a whole frame
                frame = done + (i + 1) // k
                _write_frame(spec, stream, new_ids[:, i + 1 - k : i + 1], frame - 1, start, done - start)
                bar.update(1)
                yield frame
        progress += advance
    bar.close()


def _write_frame(spec: TaskSpec, stream: np.ndarray, new: np.ndarray, frame: np.ndarray, start: np.ndarray,
                 known: np.ndarray) -> None:
    """Generated ids [b, tokens per frame] of one frame -> frame `frame[i]` of each row's stream (row
    i's window from `start[i]`, with `known[i]` frames given)."""
    rows = np.arange(len(new))
    if spec.task == "semantic":
        stream[rows, frame] = spec.layout.from_semantic_ids(new)[:, 0]
        return
    q = spec.codebooks
    for i in rows:
        stream[i, q.start : q.stop, frame[i] : frame[i] + 1] = spec.target_codes(new[i], stream[i], int(start[i]), int(known[i]))


def complete_text(model: Decoder, spec: TaskSpec, inputs: list[tuple[np.ndarray, tuple]], sampling: SamplingConfig,
                  generator: Generators, max_steps: int | None = None) -> list[np.ndarray]:
    """A text task's outputs for a batch of inputs (`TaskSpec.build`'s (semantic, text) of each, with
    no targets): the semantic ids of a reading (deduplicated) or the pieces of a transcription, each
    cut at the task's stop id (or after `max_steps`, by default the longest sequence the model
    trained on)."""
    prefixes = [spec.build(semantic, text, 0, 0, known=0)[0] for semantic, text in inputs]
    outputs: list[np.ndarray] = [np.zeros(0, np.int64)] * len(inputs)
    device = module_device(model)
    lo = spec.layout.semantic_offset if spec.task == "reading" else spec.layout.piece_offset
    for length in tqdm(sorted({len(p) for p in prefixes}), desc=f"{spec.task} LM", unit="batch", leave=False, disable=None):
        rows = [i for i, p in enumerate(prefixes) if len(p) == length]
        steps = max_steps or max(1, model.config.max_positions - length)
        batch = torch.from_numpy(np.stack([prefixes[i] for i in rows])).to(device)
        new = generate(model, batch, steps, spec.allowed, sampling, rows_of(generator, rows), stop=spec.stop).cpu().numpy()
        for row, ids in zip(rows, new, strict=True):
            end = np.flatnonzero(ids == spec.stop)
            ids = ids[: end[0] if end.size else len(ids)]
            outputs[row] = ids[ids >= lo] - lo  # a transcription's phones (`phones_first`) dropped
    return outputs
