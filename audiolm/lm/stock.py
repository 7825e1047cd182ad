"""Our decoder saved in transformers' `LlamaForCausalLM` layout, so the ecosystem loads it as it is.

A saved LM folder (`Decoder.save_pretrained`) is a stock Llama checkpoint:

    config.json                  LlamaConfig's fields, plus ours: `component`, `audiolm_decoder` (our shape),
                                 `task` (what the ids mean) and `audiolm_ids` (the id ranges, in words)
    model.safetensors            every weight LlamaForCausalLM has, under its names
    audiolm_extra.safetensors    only where the model has parts no stock class has (below)
    generation_config.json       the ids `generate` may not emit (outside the task's target range)

so `AutoModelForCausalLM.from_pretrained(folder)` (no remote code) gives our logits, and
vLLM, PEFT or any Llama tooling takes it. Ours reads the same folder back exactly.

What a stock class cannot hold, and why: with frame positions (`group > 1`, the acoustic LMs) a
position is a codec frame whose codebooks' embeddings are summed, and its later codebooks come from
a depth head; with `voice_pool`, a vector pooled from the prompt's frames is added at every
position. Neither exists in any transformers class. Their weights go to audiolm_extra.safetensors;
the stock model is then the transformer trunk: given `inputs_embeds` (the frame's summed embeddings,
plus the voice vector) its logits are ours for each frame's first codebook (docs/pretrained.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from audiolm.hub import WEIGHTS_NAME

EXTRA_WEIGHTS = "audiolm_extra.safetensors"
STOCK_PREFIXES = ("model.", "lm_head.")  # LlamaForCausalLM's own weights; anything else is ours only


def _spec(task: dict[str, Any]):
    """The TaskSpec of a saved task, or None for a model saved without one."""
    from audiolm.lm.sequences import TaskSpec

    return TaskSpec.from_dict(task) if task and "layout" in task else None


def llama_config(config, task: dict[str, Any]) -> dict[str, Any]:
    """The LlamaConfig fields of a DecoderConfig (as the installed transformers spells them)."""
    from transformers import LlamaConfig

    spec = _spec(task)
    return LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.dim, intermediate_size=config.ffn_dim,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.kv_heads,
        head_dim=config.head_dim, max_position_embeddings=config.max_positions, rope_theta=config.rope_theta,
        rms_norm_eps=config.norm_eps, hidden_act="silu", tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=spec.stop if spec is not None else None,
        architectures=["LlamaForCausalLM"], torch_dtype="float32",
    ).to_dict()


def id_ranges(task: dict[str, Any]) -> dict[str, Any]:
    """The vocabulary's ranges of a task, for a reader without our library (config.json's `audiolm_ids`)."""
    spec = _spec(task)
    if spec is None:
        return {}
    L = spec.layout
    ranges: dict[str, Any] = {"pad": L.PAD, "bos": L.BOS, "sep": L.SEP, "eos": L.EOS,
                              "semantic": [L.semantic_offset, L.semantic_offset + L.semantic_size]}
    if spec.is_text:
        ranges.update(phones=[L.phone_offset, L.phone_offset + L.phone_size],
                      pieces=[L.piece_offset, L.piece_offset + L.piece_size])
    else:
        top = spec.vocab_size
        ranges["codebooks"] = [[L.codebook_offset(q), L.codebook_offset(q + 1)] for q in range(L.num_codebooks)
                               if L.codebook_offset(q + 1) <= top]
    ranges["ids_per_position"] = spec.group
    ranges["sequence"] = spec.task  # see audiolm/lm/sequences.py for each task's sequence
    return ranges


def suppressed(task: dict[str, Any], vocab_size: int) -> list[int]:
    """Ids outside the range a task's first target may come from (what our sampling never emits);
    none for the acoustic tasks, whose range changes with the position."""
    spec = _spec(task)
    if spec is None or spec.is_acoustic:
        return []
    lo, hi = spec.allowed(0)
    return [i for i in range(vocab_size) if not lo <= i < hi]


def write(model: torch.nn.Module, folder: Path) -> dict[str, Any]:
    """The weights, split into the stock file and ours; returns config.json's fields (less `component`)."""
    from dataclasses import asdict

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    stock = {k: v for k, v in state.items() if k.startswith(STOCK_PREFIXES)}
    extra = {k: v for k, v in state.items() if k not in stock}
    save_file(stock, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})  # transformers wants the format
    if extra:
        save_file(extra, str(folder / EXTRA_WEIGHTS), metadata={"format": "pt"})
    llama = llama_config(model.config, model.task)
    skip = suppressed(model.task, model.config.vocab_size)
    generation = {"bos_token_id": 1, "pad_token_id": 0, **({"suppress_tokens": skip} if skip else {})}
    if llama["eos_token_id"] is not None:
        generation["eos_token_id"] = llama["eos_token_id"]
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    # our shape under its own name: transformers reads a `decoder` key as a sub-model's config
    return {**llama, "audiolm_decoder": asdict(model.config), "task": model.task,
            "audiolm_ids": id_ranges(model.task), "audiolm_stock": "exact" if not extra else "trunk"}


def read(folder: Path, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`weights` (model.safetensors) with audiolm_extra.safetensors' added, where there is one."""
    from safetensors.torch import load_file

    extra = folder / EXTRA_WEIGHTS
    return {**weights, **load_file(str(extra))} if extra.exists() else weights
