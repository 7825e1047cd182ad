"""The decoder's decode step compiled (`torch.compile`, inductor): at batch 1 on a CPU a token is
~150 small operations whose dispatch costs more than their arithmetic (docs/performance.md), and
inductor fuses the ones between the matrix products into a few loops.

    compile_generation(model)   # then generate() as before; the first step of each shape compiles

The step has static shapes: its cache (`Decoder.new_cache`, lengths in steps of 64) is attended
over whole, the positions past the current one masked, and the position is a tensor, so one
compiled graph serves every step of a generation and every generation of the same batch size and
length bucket. Prompts (several positions at once) still run eagerly. It takes a C++ compiler and
10-20 s to compile on 2 cores; dynamo falls back to eager after `torch._dynamo.config.cache_size_limit`
shapes.
"""

from __future__ import annotations

import functools

import torch

from audiolm.lm.model import Decoder


def _static_step(model: Decoder, ids: torch.Tensor, pos: torch.Tensor, ks: list[torch.Tensor], vs: list[torch.Tensor],
                 voice: torch.Tensor | None) -> torch.Tensor:
    """`Decoder.hidden` of one position per row with a static cache (`Attention.step`)."""
    x = model.embed(ids)
    if voice is not None:
        x = x + voice
    cos, sin = model.rope_cos[pos].to(x.dtype), model.rope_sin[pos].to(x.dtype)
    valid = (torch.arange(ks[0].shape[2], device=x.device) <= pos)[None, None, None]  # [1, 1, 1, length]
    for block, k, v in zip(model.model.layers, ks, vs, strict=True):
        x = x + block.self_attn.step(block.input_layernorm(x), cos, sin, pos, k, v, valid)
        x = x + block.mlp(block.post_attention_layernorm(x))
    return x


def compile_generation(model: Decoder) -> Decoder:
    """Make `model.step` run the compiled decode step (call after `prepare_generation`, whose copies
    it uses; compiling happens at the first step of each shape)."""
    model.compiled_step = torch.compile(functools.partial(_static_step, model), fullgraph=True, dynamic=False)
    return model
