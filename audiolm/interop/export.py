"""Ours out: each saved LM is a stock `LlamaForCausalLM` folder (audiolm.lm.stock); this checks it.

`audiolm export RUN -o DIR` writes the run as a bundle (what `audiolm save` writes: every LM in the
stock layout) and then loads each LM with `AutoModelForCausalLM` (no remote code) and with our
`Decoder`, and compares their logits on a probe sequence: the number it prints is the largest
difference. `stock_inputs` is the recipe for the LMs a stock class holds only the trunk of
(frame positions, a voice vector): it needs torch and the folder's files, not this library's models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from audiolm.hub import CONFIG_NAME
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec
from audiolm.lm.stock import EXTRA_WEIGHTS
from audiolm.tokens import TokenLayout


def stock_inputs(stock_model: torch.nn.Module, folder: Path, ids: torch.Tensor,
                 reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The keyword arguments of the stock model's forward for our ids: `input_ids` where a position
    holds one id; else `inputs_embeds`: a position's ids' embeddings summed (PAD: none), plus, for a
    voice-pooling LM, the voice vector: `voice_proj` (audiolm_extra.safetensors) of the mean embedding
    over the `reference` positions (bool [b, t]: the prompt's known frames), added at every position."""
    extra_file = folder / EXTRA_WEIGHTS
    extra = load_file(str(extra_file)) if extra_file.exists() else {}
    if ids.dim() == 2 and "voice_proj.weight" not in extra:
        return {"input_ids": ids}
    table = stock_model.get_input_embeddings()
    x = table(ids) if ids.dim() == 2 else (table(ids) * (ids != TokenLayout.PAD)[..., None]).sum(-2)
    if "voice_proj.weight" in extra and reference is not None:
        weight = reference[..., None].to(x.dtype)
        pooled = (x * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1)
        x = x + pooled @ extra["voice_proj.weight"].T
    return {"inputs_embeds": x}


def probe(spec: TaskSpec, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random sequence of the task's shape (BOS, then ids of the task's ranges) and a reference mask."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = spec.target_ranges()[0][0], spec.target_ranges()[-1][1]
    shape = (1, length, spec.group) if spec.group > 1 else (1, length)
    ids = torch.randint(lo, hi, shape, generator=g)
    ids[0, 0] = TokenLayout.PAD if spec.group > 1 else TokenLayout.BOS
    if spec.group > 1:
        ids[0, 0, 0] = TokenLayout.BOS
    reference = torch.zeros(1, length, dtype=torch.bool)
    reference[0, 1 : length // 2] = True
    return ids, reference


@torch.no_grad()
def compare(folder: Path, length: int = 48) -> dict:
    """Ours and the stock model of one saved LM folder on a probe -> {class, kind, max_abs_diff}: the
    stock model's logits against ours for each position's (first) id."""
    from transformers import AutoModelForCausalLM

    ours = Decoder.from_pretrained(folder)
    stock = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()
    spec = TaskSpec.from_dict(ours.task)
    ids, reference = probe(spec, min(length, ours.config.max_positions))
    reference = reference if ours.config.voice_pool else None
    theirs = stock(**stock_inputs(stock, folder, ids, reference)).logits
    diff = (theirs - ours(ids, reference=reference)).abs().max().item()
    kind = json.loads((folder / CONFIG_NAME).read_text())["audiolm_stock"]  # written by audiolm.lm.stock.write
    return {"class": type(stock).__name__, "kind": kind, "max_abs_diff": diff}
