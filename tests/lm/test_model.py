"""The decoder: same logits as transformers' LlamaForCausalLM with the same weights, a KV cache that
changes nothing, positions that matter, and a save/load round trip."""

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from audiolm.lm.model import Decoder, DecoderConfig


def _tiny(kv_heads=0):
    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=97, dim=64, layers=2, heads=4, kv_heads=kv_heads, max_positions=128)).eval()


def test_parity_with_transformers_llama():
    for kv_heads in (4, 2):  # plain and grouped-query attention
        ours = _tiny(kv_heads)
        c = ours.config
        llama = LlamaForCausalLM(LlamaConfig(
            vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim, num_hidden_layers=c.layers,
            num_attention_heads=c.heads, num_key_value_heads=c.kv_heads, rms_norm_eps=c.norm_eps,
            rope_theta=c.rope_theta, max_position_embeddings=c.max_positions, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False)).eval()
        missing, unexpected = llama.load_state_dict(ours.state_dict(), strict=False)
        assert not unexpected and all("rotary" in k for k in missing)
        ids = torch.randint(0, c.vocab_size, (2, 40))
        with torch.no_grad():
            expected = llama(ids).logits
            got = ours(ids)
        torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_cache_gives_the_same_logits_as_a_full_pass():
    model = _tiny(2)
    ids = torch.randint(0, 97, (3, 30))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(3, 30)
        parts = [model(ids[:, :10], cache=cache), model(ids[:, 10:14], cache=cache)]
        parts += [model(ids[:, i : i + 1], cache=cache) for i in range(14, 30)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-4)


def test_left_padded_rows_get_the_states_and_samples_they_get_alone():
    """Sequences of 9, 25 and 16 ids in one left-padded batch (`left_padded`, `hidden`'s `pad`): each
    row's logits over the prefix and through the cache's later steps are those it has alone, and each
    row's own generator samples the same ids as alone; the padding's ids do not matter."""
    from audiolm.config import SamplingConfig
    from audiolm.lm.generate import generate, left_padded

    model = _tiny(2)
    rows = [torch.randint(4, 97, (n,)).numpy() for n in (9, 25, 16)]
    batch, pad = left_padded(rows, "cpu")
    assert pad.tolist() == [16, 0, 9] and batch.shape == (3, 25)
    noisy = batch.clone()
    noisy[0, :16], noisy[2, :9] = 5, 6  # other ids in the padding: nothing changes
    with torch.no_grad():
        cache = model.new_cache(3, 30)
        padded = model.hidden(noisy, cache, pad=pad)
        steps = [model.step(torch.full((3, 1), 7 + i), cache) for i in range(3)]
        for r, ids in enumerate(rows):
            alone_cache = model.new_cache(1, 30)
            alone = model.hidden(torch.from_numpy(ids)[None], alone_cache)
            torch.testing.assert_close(padded[r, pad[r] :], alone[0], atol=1e-5, rtol=1e-4)
            for i, step in enumerate(steps):
                torch.testing.assert_close(step[r], model.step(torch.full((1, 1), 7 + i), alone_cache)[0],
                                           atol=1e-5, rtol=1e-4)
    hot = SamplingConfig(temperature=1.0)
    allowed = lambda i: (4, 97)  # noqa: E731
    seeds = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    together = generate(model, batch, 12, allowed, hot, seeds, pad=pad)
    for r, ids in enumerate(rows):
        alone = generate(model, torch.from_numpy(ids)[None], 12, allowed, hot, [torch.Generator().manual_seed(r + 1)])
        assert torch.equal(together[r], alone[0])
    uncached = generate(model, batch, 12, allowed, hot, [torch.Generator().manual_seed(s) for s in (1, 2, 3)], use_cache=False,
                        pad=pad)
    assert torch.equal(uncached, together)


def test_output_depends_on_token_order():
    model = _tiny()
    ids = torch.arange(1, 21).unsqueeze(0)
    swapped = ids.clone()
    swapped[0, [3, 7]] = swapped[0, [7, 3]]
    with torch.no_grad():
        a, b = model(ids)[0, -1], model(swapped)[0, -1]
    assert (a - b).abs().max() > 1e-4  # RoPE is on: same bag of tokens, other order, other prediction


def test_select_returns_only_the_asked_positions():
    model = _tiny()
    ids = torch.randint(0, 97, (2, 12))
    select = torch.zeros(2, 12, dtype=torch.bool)
    select[0, 5:] = True
    select[1, 2] = True
    with torch.no_grad():
        torch.testing.assert_close(model(ids, select=select), model(ids)[select])


def test_save_and_load(tmp_path):
    model = _tiny(2)
    model.task = {"task": "coarse"}
    model.save_pretrained(tmp_path / "lm")
    loaded = Decoder.from_pretrained(tmp_path / "lm")
    ids = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
    assert loaded.task == {"task": "coarse"} and loaded.config == model.config


@pytest.mark.parametrize("kind, tolerance", [("fp16", 1e-2), ("int8", 5e-2)])
def test_generation_copies_serve_small_batches_only_and_stay_close(kind, tolerance):
    """prepare_generation: decoding one token at a time with the fp16 or int8 copies stays close to
    fp32 log-probabilities (the int8 copies hold one byte per weight); batches above the copies'
    rows, and anything with gradients, use the fp32 weights bit for bit; saving never includes the
    copies."""
    from audiolm.lm.model import MATVEC_ROWS

    model = _tiny(kv_heads=2).eval()
    reference = copy.deepcopy(model)
    model.prepare_generation(kind)
    assert model.lm_head.low.weight.element_size() == {"fp16": 2, "int8": 1}[kind]
    ids = torch.randint(0, model.config.vocab_size, (1, 24))
    with torch.no_grad():
        steps = []
        for fast in (model, reference):
            cache = fast.new_cache(1, 24)
            steps.append(torch.cat([fast(ids[:, i : i + 1], cache=cache) for i in range(24)], 1).log_softmax(-1))
        assert 0 < (steps[0] - steps[1]).abs().max() < tolerance  # the copies are used, and are close
        wide = torch.randint(0, model.config.vocab_size, (MATVEC_ROWS[kind] + 1, 1))
        assert torch.equal(model(wide), reference(wide))
    assert torch.equal(model(ids), reference(ids))  # gradients on: fp32
    assert not any(name.endswith("low") for name in model.state_dict())
    with pytest.raises(ValueError, match="'int4', expected one of fp16, int8"):
        model.prepare_generation("int4")


def test_ordinal_init_makes_neighbouring_steps_alike_and_leaves_other_ids():
    """A pitch codebook's ids start as smooth functions of the step: neighbours nearly the same
    vector, far steps unrelated; the ids around the scale keep their random rows."""
    model = _tiny()
    before = model.model.embed_tokens.weight.clone()
    torch.manual_seed(1)
    model.init_ordinal(20, 84)
    for weight in (model.model.embed_tokens.weight, model.lm_head.weight):
        rows = torch.nn.functional.normalize(weight[20:84], dim=1)
        near = (rows[:-1] * rows[1:]).sum(1)  # cosine of each step with the next
        far = (rows[:32] * rows[32:]).sum(1)  # ... with the step 32 along
        assert near.min() > 0.5 and far.abs().mean() < 0.5 * near.mean(), (near.min(), far.abs().mean())
        assert abs(weight[20:84].std().item() - 0.02) < 1e-3  # the scale of the other rows
    assert torch.equal(model.model.embed_tokens.weight[:20], before[:20])
    assert torch.equal(model.model.embed_tokens.weight[84:], before[84:])


def test_voice_vector_pools_the_reference_positions_only():
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=40, dim=32, layers=2, heads=2, max_positions=64, voice_pool=True)).eval()
    ids = torch.randint(0, 40, (1, 20))
    reference = torch.zeros(1, 20, dtype=torch.bool)
    reference[0, 8:14] = True
    assert torch.allclose(model(ids, reference=reference), model(ids))  # zero-initialised: the plain model
    torch.nn.init.normal_(model.voice_proj.weight, std=0.5)
    out = model(ids, reference=reference)
    inside = ids.clone()
    inside[0, 10] = (ids[0, 10] + 1) % 40
    assert not torch.allclose(out[0, 0], model(inside, reference=reference)[0, 0])  # position 0 hears the voice
    outside = ids.clone()
    outside[0, 16] = (ids[0, 16] + 1) % 40
    assert torch.allclose(out[0, :16], model(outside, reference=reference)[0, :16])  # causal everywhere else
    cache = model.new_cache(1, 20)  # the cache keeps the first call's vector
    first = model(ids[:, :15], cache=cache, reference=reference[:, :15])
    assert torch.allclose(torch.cat([first, model(ids[:, 15:], cache=cache)], dim=1), out, atol=1e-5)
