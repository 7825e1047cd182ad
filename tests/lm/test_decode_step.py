"""The compiled decode step (`audiolm.lm.decode_step`) computes what the eager one does."""

import copy
import shutil

import pytest
import torch

from audiolm.config import SamplingConfig
from audiolm.lm.decode_step import compile_generation
from audiolm.lm.generate import generate
from audiolm.lm.model import Decoder, DecoderConfig

pytestmark = [pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                                 reason="torch.compile's CPU backend needs a C++ compiler"),
              pytest.mark.slow]  # compiling took 36 s on 2 slow cores: make test stays under 10 min (make test-slow)


def test_the_compiled_step_gives_the_eager_logits():
    """Within the int8 copies' own rounding (inductor keeps bf16 intermediates in fp32 where eager
    rounds each): no further from the eager step than the eager step is from fp32 weights.
    Grouped-query attention and a voice vector (an input of the step) included; the cache is static
    and its length rounded up to 64; prompts still run eagerly into the same cache."""
    torch.manual_seed(0)
    config = DecoderConfig(vocab_size=97, dim=64, layers=2, heads=4, kv_heads=2, max_positions=128, voice_pool=True)
    fp32 = Decoder(config).eval()
    torch.nn.init.normal_(fp32.voice_proj.weight, std=0.02)  # a voice that changes something
    eager = copy.deepcopy(fp32).prepare_generation()
    compiled = compile_generation(copy.deepcopy(fp32).prepare_generation())
    prompt = torch.randint(0, 97, (2, 8))
    reference = torch.zeros(2, 8, dtype=torch.bool)
    reference[:, :4] = True
    steps = {}
    with torch.inference_mode():
        for name, model in (("fp32", fp32), ("eager", eager), ("compiled", compiled)):
            cache = model.new_cache(2, 40)
            state = model.hidden(prompt, cache, reference)[:, -1:]
            logits = []
            for i in range(20):
                logits.append(model.logits(state[:, -1]))
                ids = prompt[:, i % 8 : i % 8 + 1]  # teacher-forced: both see the same ids
                state = model.step(ids, cache)
            steps[name] = (torch.stack(logits, 1), cache)
    (f, _), (a, eager_cache), (b, compiled_cache) = steps["fp32"], steps["eager"], steps["compiled"]
    assert (eager_cache.static, eager_cache.length) == (False, 40)
    assert (compiled_cache.static, compiled_cache.length, compiled_cache.pos) == (True, 64, 28)
    assert 0 < (b - a).abs().max() <= (a - f).abs().max() < 0.05 * f.abs().max()
    assert (f[:, 1:] - f[:, :-1]).abs().max() > 10 * (a - f).abs().max()  # steps differ by more than rounding
    out = generate(compiled, prompt, 12, lambda i: (10, 60), SamplingConfig(temperature=0.0), reference=reference)
    assert out.shape == (2, 12) and bool(((out >= 10) & (out < 60)).all())
