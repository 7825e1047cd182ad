"""Sampling: the KV cache changes nothing, every id stays in its position's range, windowed
generation goes past the context, and the sampling knobs do what they say."""

import numpy as np
import torch

from audiolm.config import SamplingConfig
from audiolm.lm.generate import continue_stream, generate, sample_next
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TaskSpec
from audiolm.tokens import TokenLayout

LAYOUT = TokenLayout(semantic_size=12, codebook_size=16, num_codebooks=4, coarse_codebooks=2)
GREEDY = SamplingConfig(temperature=0.0)


def _model(spec: TaskSpec, seed=0) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=32, layers=2, heads=2, max_positions=spec.max_length(),
                                 group=spec.group)).eval()


def _spec(task, window=0.4, frame_positions=False):
    return TaskSpec(task=task, layout=LAYOUT, semantic_rate=50.0, acoustic_rate=75.0, window_seconds=window,
                    frame_positions=frame_positions)


def test_cached_and_uncached_greedy_decoding_agree():
    spec = _spec("fine", window=1.0)
    model = _model(spec)
    prefix = torch.randint(LAYOUT.codebook_offset(0), LAYOUT.codebook_offset(2), (2, 9))
    cached = generate(model, prefix, 30, spec.allowed, GREEDY)
    uncached = generate(model, prefix, 30, spec.allowed, GREEDY, use_cache=False)
    assert torch.equal(cached, uncached)


def test_frame_positions_cached_and_uncached_agree_and_run_once_per_frame():
    """A grouped decoder: the cache changes nothing; the transformer runs once per frame and the
    depth head once per later codebook of it; a frame's later codes depend on its earlier ones."""
    spec = _spec("fine", window=1.0, frame_positions=True)
    model = _model(spec)
    prefix = torch.from_numpy(np.stack([spec.build(np.zeros(50, np.int64), np.full((4, 75), q), 0, 20, known=3)[0]
                                        for q in (1, 5)]))
    cached = generate(model, prefix, 2 * 10, spec.allowed, GREEDY, per_position=2)
    uncached = generate(model, prefix, 2 * 10, spec.allowed, GREEDY, use_cache=False, per_position=2)
    assert torch.equal(cached, uncached)
    calls = {"body": 0, "depth": 0}
    model.model.layers[0].register_forward_hook(lambda *a: calls.__setitem__("body", calls["body"] + 1))
    model.depth.register_forward_hook(lambda *a: calls.__setitem__("depth", calls["depth"] + 1))
    generate(model, prefix, 2 * 10, spec.allowed, GREEDY, per_position=2)
    assert calls == {"body": 10, "depth": 10}  # the prefix and 9 new frames; codebook 3 of each of 10 frames
    with torch.no_grad():  # the depth head reads the frame's codebook 2: another id there, other logits
        state = model.hidden(prefix)[:, -1]
        lo = LAYOUT.codebook_offset(2)
        logits = [model.logits(model.depth(state, model.embed(torch.full((2,), lo + v)), 1)) for v in (0, 7)]
    assert not torch.allclose(*logits)


def test_sampled_ids_stay_in_each_stage_range_over_several_windows():
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    hot = SamplingConfig(temperature=1.5)
    total_s, total_a = 70, 105  # 1.4 s: longer than the 0.4 s windows
    spec = _spec("semantic")
    prompt = [rng.integers(0, 12, 20) for _ in range(3)]
    semantic = continue_stream(_model(spec), spec, prompt, None, 20, total_s, hot, g)
    assert semantic.shape == (3, total_s) and semantic.min() >= 0 and semantic.max() < 12
    assert (semantic[:, :20] == np.stack(prompt)).all()
    codes = np.zeros((3, 4, total_a), dtype=np.int64)
    codes[:, :, :30] = rng.integers(0, 16, (3, 4, 30))
    prompt_codes = codes[:, :, :30].copy()
    for frame_positions in (False, True):
        for task in ("coarse", "fine"):
            spec = _spec(task, frame_positions=frame_positions)
            out = continue_stream(_model(spec), spec, list(semantic), codes, 30, total_a, hot, g)
            assert out.min() >= 0 and out.max() < 16  # unflatten checked every id against its codebook's range
            assert (out[:, :, :30] == prompt_codes).all()  # the prompt is kept, not regenerated


def test_sampling_knobs():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0, -2.0]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 0, 5, GREEDY).item() == 1
    assert sample_next(logits, 2, 5, GREEDY).item() == 3  # the best id inside the allowed range
    draws = [sample_next(logits, 0, 5, SamplingConfig(temperature=1.0, top_k=2), g).item() for _ in range(200)]
    assert set(draws) == {1, 3}
    draws = [sample_next(logits, 0, 5, SamplingConfig(temperature=1.0, top_p=0.5), g).item() for _ in range(50)]
    assert set(draws) == {1}  # id 1 alone holds more than half the mass
    draws = [sample_next(logits, 0, 5, SamplingConfig(temperature=1.0), g).item() for _ in range(400)]
    assert len(set(draws)) >= 3  # no cut: ids outside the top two come up too
    seeded = [sample_next(logits.repeat(8, 1), 0, 5, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(3))
              for _ in range(2)]
    assert torch.equal(*seeded)
    # the draws follow the softmax (4,000 draws at once: each frequency within 0.03 of its probability)
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]])
    many = sample_next(probs.log().repeat(4000, 1), 0, 4, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(0))
    assert torch.allclose(torch.bincount(many, minlength=4) / 4000, probs[0], atol=0.03) and not (many == 1).any()
    # a generator per row: a row draws what it would draw alone with that generator
    rows = sample_next(logits.repeat(3, 1), 0, 5, SamplingConfig(temperature=1.0),
                       [torch.Generator().manual_seed(k) for k in (7, 8, 9)])
    alone = sample_next(logits, 0, 5, SamplingConfig(temperature=1.0), torch.Generator().manual_seed(8))
    assert rows[1] == alone[0]


def test_relative_pitch_carries_the_prompts_register_over():
    """Two prompts that differ only by a pitch shift of 9 steps read as the same ids, so a greedy
    coarse LM writes the same contour for both, 9 steps apart (and the same unvoiced frames)."""
    layout = TokenLayout(semantic_size=12, codebook_size=64, num_codebooks=4, coarse_codebooks=2)
    spec = TaskSpec(task="coarse", layout=layout, semantic_rate=50.0, acoustic_rate=50.0, window_seconds=0.8,
                    relative_pitch=True, default_pitch=10)
    rng = np.random.default_rng(1)
    frames, known = 70, 30
    codes = np.zeros((2, 4, frames), dtype=np.int64)
    codes[:, 1:, :known] = rng.integers(0, 64, (3, known))
    contour = np.where(rng.random(known) < 0.3, 0, rng.integers(8, 14, known))
    codes[0, 0, :known] = contour
    codes[1, 0, :known] = np.where(contour > 0, contour + 9, 0)
    semantic = [rng.integers(0, 12, frames)] * 2
    assert np.array_equal(*(spec.build(semantic[0], c, 0, 40, known=known)[0] for c in codes))
    out = continue_stream(_model(spec), spec, semantic, codes, known, frames, GREEDY, torch.Generator())
    low, high = out[0, 0, known:], out[1, 0, known:]
    assert np.array_equal(low > 0, high > 0) and (low > 0).any()
    assert np.array_equal(high[high > 0] - low[low > 0], np.full((low > 0).sum(), 9))
    assert np.array_equal(out[0, 1, known:], out[1, 1, known:])
