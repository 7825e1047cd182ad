"""The one decoder-only language model of the three AudioLM stages: LLaMA-style (RoPE, RMSNorm,
SwiGLU, optional grouped-query attention), PyTorch SDPA attention and a preallocated KV cache.

Parameter names are those of `transformers`' `LlamaForCausalLM`, so a parity test can load the same
weights into both and compare logits. We keep our own ~150 lines rather than `LlamaForCausalLM`
because batch-1 generation at demo size is dominated by per-step overhead on CPU: the README's
stage-3 section and `benchmarks/lm_speed.py` give the measured tokens/s of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from audiolm.hub import HubMixin, config_from, weights_file
from audiolm.lm import stock
from audiolm.tokens import TokenLayout


@dataclass
class DecoderConfig:
    vocab_size: int
    dim: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 0  # < heads: grouped-query attention; 0 = heads
    ffn_dim: int = 0  # 0 = SwiGLU's 8/3 * dim, rounded up to a multiple of 64
    max_positions: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    # a "voice vector": the mean embedding of the reference positions (the acoustic prompt's tokens),
    # through a zero-initialised projection, added at every position (Decoder.forward's `reference`)
    voice_pool: bool = False
    # ids per position: > 1 reads ids [b, t, group] (a codec frame's codebooks, their embeddings summed
    # into one position; PAD where a position holds fewer) and predicts a position's later ids with a
    # small depth head over the earlier ones (`DepthHead`): one transformer step per frame, not per code
    group: int = 1
    # residual MLP layers of the depth head (group > 1); 0 = none: a position's ids are predicted
    # together from the state before it, independent of each other given it (MusicGen's parallel
    # pattern), and sampled in one draw
    depth_layers: int = 2

    def __post_init__(self) -> None:
        self.kv_heads = self.kv_heads or self.heads
        self.ffn_dim = self.ffn_dim or 64 * math.ceil(8 * self.dim / 3 / 64)
        if self.dim % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"dim {self.dim} must divide into {self.heads} heads, and heads into {self.kv_heads} kv heads")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


class KVCache:
    """Keys and values of every layer ([batch, kv heads, length, head dim] each), allocated once for
    `length` positions. `static`: made for the compiled decode step (`audiolm.lm.decode_step`), which
    attends over all `length` positions with those past `pos` masked."""

    def __init__(self, config: DecoderConfig, batch: int, length: int, device: torch.device, dtype: torch.dtype,
                 static: bool = False):
        shape = (batch, config.kv_heads, length, config.head_dim)
        # a tensor per layer, not views of one: the compiled step updates them in place
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.pos, self.length, self.static = 0, length, static
        self.position = torch.zeros(1, dtype=torch.long, device=device)  # `pos` as the compiled step reads it
        self.voice: torch.Tensor | None = None  # the voice vector of the first call (voice_pool)
        self.pad: torch.Tensor | None = None  # each row's left padding (`Decoder.hidden`'s `pad`) of the first call


# batches of up to this many rows (batch x new tokens) use the low-precision copies (prepare_generation):
# measured on 2 cores (16.8M model), fp16 copies are slower than fp32 beyond a few rows, int8 ones are
# faster up to 16 (1.2-1.3x at batch 8-16, even at 32)
MATVEC_ROWS = {"fp16": 4, "int8": 16}


class MatVecWeight:
    """A low-precision copy of a weight [out, in] for small batches without gradients: at batch 1 on
    a CPU, generating a token is reading every weight, so fewer bytes per weight is more tokens/s.
    "fp16": the weight in half precision. "int8": one int8 per weight and a scale per output row
    (symmetric, weight-only), multiplied by torch's int8 weight-only kernel with bf16 activations
    (`aten._weight_int8pack_mm`, a CPU kernel: on other devices the copy is fp16)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor | None, max_rows: int):
        self.weight, self.scale, self.max_rows = weight, scale, max_rows  # max_rows: the largest batch it serves

    @classmethod
    def of(cls, weight: torch.Tensor, kind: str, max_rows: int | None = None) -> MatVecWeight:
        if kind not in MATVEC_ROWS:
            raise ValueError(f"low-precision weights: {kind!r}, expected one of {', '.join(MATVEC_ROWS)}")
        max_rows = max_rows or MATVEC_ROWS[kind]
        if kind == "int8" and weight.device.type == "cpu":
            weight = weight.detach().float()
            amax = weight.abs().amax(1).clamp_min(1e-12)
            return cls((weight * (127 / amax)[:, None]).round().to(torch.int8), (amax / 127).to(torch.bfloat16), max_rows)
        return cls(weight.detach().to(torch.float16), None, max_rows)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] in the copy's activation dtype (fp16 or bf16)."""
        if self.scale is None:
            return F.linear(x.to(self.weight.dtype), self.weight)
        flat = x.reshape(-1, x.shape[-1]).to(self.scale.dtype)
        return torch._weight_int8pack_mm(flat, self.weight, self.scale).view(*x.shape[:-1], -1)

    def rows(self, lo: int, hi: int) -> MatVecWeight:
        """The copy of output rows [lo, hi) (a head's id range)."""
        return MatVecWeight(self.weight[lo:hi], None if self.scale is None else self.scale[lo:hi], self.max_rows)


def _use_low(low: MatVecWeight | None, x: torch.Tensor) -> bool:
    return low is not None and not torch.is_grad_enabled() and x.numel() <= low.max_rows * x.shape[-1]


class Linear(nn.Linear):
    """`nn.Linear` without bias that may also hold a low-precision copy of its weight (`low`, made by
    `Decoder.prepare_generation`). The copy serves small batches without gradients only; training
    and large batches use the fp32 weight."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.low: MatVecWeight | None = None  # not a buffer: never saved, made again after loading

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_low(self.low, x):
            return self.low(x).to(x.dtype)
        return F.linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype:  # one op: a third of the norm's time in batch-1 generation
            return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)  # in fp32 under autocast


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in LLaMA's half-split layout: x * cos + rotate_half(x) * sin."""
    a, b = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-b, a), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.c = c
        self.q_proj = Linear(c.dim, c.heads * c.head_dim)
        self.k_proj = Linear(c.dim, c.kv_heads * c.head_dim)
        self.v_proj = Linear(c.dim, c.kv_heads * c.head_dim)
        self.o_proj = Linear(c.heads * c.head_dim, c.dim)
        self.qkv_low: MatVecWeight | None = None  # q, k, v weights in one low-precision matrix

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [b, t, dim] -> q, k (rotated) and v, [b, heads, t, head dim] each."""
        b, t, _ = x.shape
        c = self.c
        if _use_low(self.qkv_low, x):  # one matrix, and one rotation for q and k together
            qkv = self.qkv_low(x).to(x.dtype).view(b, t, c.heads + 2 * c.kv_heads, c.head_dim).transpose(1, 2)
            qk = _rotate(qkv[:, : c.heads + c.kv_heads], cos, sin)
            return qk[:, : c.heads], qk[:, c.heads :], qkv[:, c.heads + c.kv_heads :]
        q = self.q_proj(x).view(b, t, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.kv_heads, c.head_dim).transpose(1, 2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def step(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, pos: torch.Tensor, k_cache: torch.Tensor,
             v_cache: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """`forward` of one new position per row (x [b, 1, dim]) with a static-shape cache (the compiled
        decode step): its keys and values go in at `pos` (a tensor), and it attends over the whole
        cache where `valid` (bool [1, 1, 1, length]) holds."""
        q, k, v = self._qkv(x, cos, sin)
        k_cache.index_copy_(2, pos, k)
        v_cache.index_copy_(2, pos, v)
        out = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=valid, enable_gqa=self.c.kv_heads != self.c.heads)
        return self.o_proj(out.transpose(1, 2).reshape(x.shape[0], 1, -1))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layer: int, cache: KVCache | None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` (bool [b, 1, t, keys]): which keys each query sees, for left-padded rows; None: causal."""
        b, t, _ = x.shape
        c = self.c
        q, k, v = self._qkv(x, cos, sin)
        pos = 0
        if cache is not None:
            pos = cache.pos
            cache.k[layer][:, :, pos : pos + t] = k
            cache.v[layer][:, :, pos : pos + t] = v
            k, v = cache.k[layer][:, :, : pos + t], cache.v[layer][:, :, : pos + t]
        causal = mask is None and t > 1 and pos == 0
        if mask is None and t > 1 and pos > 0:  # a block of new tokens after cached ones: causal within the block
            mask = torch.ones(t, pos + t, dtype=torch.bool, device=x.device).tril(diagonal=pos)
        dropout = c.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout,
                                             enable_gqa=c.kv_heads != c.heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, c.heads * c.head_dim))


class MLP(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.gate_proj = Linear(c.dim, c.ffn_dim)
        self.up_proj = Linear(c.dim, c.ffn_dim)
        self.down_proj = Linear(c.ffn_dim, c.dim)
        self.gate_up_low: MatVecWeight | None = None  # gate and up weights in one low-precision matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _use_low(self.gate_up_low, x):
            gate, up = self.gate_up_low(x).chunk(2, dim=-1)
            return self.down_proj(F.silu(gate) * up).to(x.dtype)  # low precision between the two matrices
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), MLP(c)
        self.input_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.post_attention_layernorm = RMSNorm(c.dim, c.norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x, cos, sin, layer, cache, mask=None):
        if not (self.training and self.dropout.p):  # a module call per branch is measurable at batch 1
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, layer, cache, mask)
            return x + self.mlp(self.post_attention_layernorm(x))
        x = x + self.dropout(self.self_attn(self.input_layernorm(x), cos, sin, layer, cache, mask))
        return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))


class DepthHead(nn.Module):
    """Predicts id j > 0 of a position from the transformer's state before it plus the embeddings of
    the position's ids 0..j-1 (and a learned vector per j), through a few residual SwiGLU MLPs: the
    codebooks of a frame stay conditioned on each other (as in RQ-Transformer's and Moshi's depth
    transformers, here without attention) while the transformer runs once per frame. Its output goes
    through the decoder's final norm and head, so id j's logits are the same rows as without it."""

    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.offsets = nn.Parameter(torch.zeros(c.group, c.dim))  # row 0 unused: id 0 needs no depth
        self.norms = nn.ModuleList(RMSNorm(c.dim, c.norm_eps) for _ in range(c.depth_layers))
        self.mlps = nn.ModuleList(MLP(c) for _ in range(c.depth_layers))

    def forward(self, x: torch.Tensor, earlier: torch.Tensor, j: int | torch.Tensor) -> torch.Tensor:
        """x: the transformer's (unnormed) state; earlier: the summed embeddings of ids 0..j-1."""
        x = x + earlier + self.offsets[j]
        for norm, mlp in zip(self.norms, self.mlps, strict=True):
            x = x + mlp(norm(x))
        return x


class Body(nn.Module):
    def __init__(self, c: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.dim, c.norm_eps)


class Decoder(nn.Module, HubMixin):
    """Saved (`save_pretrained`, `from_pretrained`, `push_to_hub`: see `audiolm.hub`) as config.json
    (the decoder's shape and the task: what the ids mean) and model.safetensors."""

    component = "language-model"
    card_title = "decoder-only language model over audio tokens (LLaMA-style)"

    def __init__(self, config: DecoderConfig, task: dict[str, Any] | None = None):
        super().__init__()
        self.config = config
        self.task = task or {}  # what the ids mean (saved with the weights; see audiolm.lm.sequences)
        self.compiled_step = None  # the compiled decode step (audiolm.lm.decode_step), when made
        self.model = Body(config)
        self.lm_head = Linear(config.dim, config.vocab_size)
        if config.voice_pool:
            self.voice_proj = Linear(config.dim, config.dim)
        if config.group > 1 and config.depth_layers:
            self.depth = DepthHead(config)
        inv_freq = 1.0 / config.rope_theta ** (torch.arange(0, config.head_dim, 2).float() / config.head_dim)
        angles = torch.outer(torch.arange(config.max_positions).float(), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.apply(self._init)
        for block in self.model.layers:  # residual branches scaled down with depth (GPT-2)
            for proj in (block.self_attn.o_proj, block.mlp.down_proj):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.layers))
        if config.group > 1 and config.depth_layers:
            nn.init.normal_(self.depth.offsets, std=0.02)
            for mlp in self.depth.mlps:
                nn.init.normal_(mlp.down_proj.weight, std=0.02 / math.sqrt(2 * config.depth_layers))
        if config.voice_pool:  # starts as the model without it
            nn.init.zeros_(self.voice_proj.weight)

    @torch.no_grad()
    def init_ordinal(self, lo: int, hi: int, periods: tuple[float, ...] = (3, 6, 12, 24, 48, 96, 192, 384)) -> None:
        """Ids lo..hi-1 are steps of an ordered scale (the source-filter codec's pitch codebook: id lo + k
        is log-F0 step k): their embeddings and output rows start as random linear maps of Fourier
        features of k, so neighbouring steps start alike and "about the pitch just heard" is a smooth
        function to learn instead of hi - lo separate ids."""
        k = torch.arange(hi - lo, dtype=torch.float32)[:, None]
        angles = 2 * math.pi * k / torch.tensor(periods, dtype=torch.float32)
        features = torch.cat([angles.cos(), angles.sin()], dim=1)  # [steps, 2 * len(periods)]
        for weight in (self.model.embed_tokens.weight, self.lm_head.weight):
            rows = features @ torch.randn(features.shape[1], weight.shape[1])
            weight[lo:hi] = rows / rows.std() * 0.02

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def new_cache(self, batch: int, length: int) -> KVCache:
        if length > self.config.max_positions:
            raise ValueError(f"a sequence of {length} tokens is longer than the model's {self.config.max_positions} positions")
        activations = self.model.embed_tokens.weight.dtype
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else activations
        static = self.compiled_step is not None
        if static:  # lengths in steps of 64: a compiled step per batch size and length bucket, not per length
            length = min(self.config.max_positions, -(-length // 64) * 64)
        return KVCache(self.config, batch, length, self.lm_head.weight.device, dtype, static)

    def step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """`hidden` of one new position per row (ids [b, 1] or [b, 1, group]) after those in `cache`:
        through the compiled decode step when `audiolm.lm.decode_step.compile_generation` made one
        (and the cache is one of its static ones), else `hidden` itself."""
        if self.compiled_step is None or not cache.static or ids.shape[1] != 1 or cache.pad is not None:
            return self.hidden(ids, cache)
        if cache.pos >= cache.length:
            raise ValueError(f"position {cache.pos + 1} is beyond the cache's {cache.length}")
        x = self.compiled_step(ids, cache.position.fill_(cache.pos), cache.k, cache.v, cache.voice)
        cache.pos += 1
        return x

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None, select: torch.Tensor | None = None,
                last_only: bool = False, vocab_ranges: list[tuple[int, int, torch.Tensor]] | None = None,
                vocab: tuple[int, int] | None = None, reference: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, target_rows: torch.Tensor | None = None
                ) -> torch.Tensor | list[torch.Tensor]:
        """ids [b, t] (or [b, t, group]) -> logits [b, t, vocab] of each position's next id (its first,
        with groups); with `select` (bool [b, t], or the same positions as flat indices into b * t, long
        [n]: no device sync) only those positions' logits [n, vocab] (the loss needs no logits for the
        conditioning part); `last_only` -> [b, 1, vocab]; `vocab=(lo, hi)` -> only the
        logits of ids [lo, hi) (generation: the one range the next id may come from; the fine LM's head
        is 8x smaller that way).
        `vocab_ranges` [(lo, hi, rows)] (with `select`): for each, the logits of ids [lo, hi) at the
        selected positions `rows` only, a list of [len(rows), hi - lo] (training on the id range a
        position may hold, as sampling does, without computing the rest).
        `reference` (bool [b, t], with `voice_pool`): the positions pooled into the voice vector; with
        a cache, on the first call only (later calls reuse its vector). None or no position: no voice.
        `targets` [n, group] (with `select`, grouped ids): the ids of the positions after the selected
        ones; the logits are then those of each of their ids but PAD (the first from the state, the
        others from the depth head given the ids before them: teacher forcing), rows in that order;
        `target_rows` (long): the flat indices of `targets`' ids that are not PAD, when computed ahead."""
        x = self.hidden(ids, cache, reference)
        if select is not None:
            x = x[select] if select.dtype == torch.bool else x.flatten(0, 1)[select]
            if targets is not None:
                keep = targets.reshape(-1) != TokenLayout.PAD if target_rows is None else target_rows
                x = self._depth_states(x, targets).flatten(0, 1)[keep]
            x = self.model.norm(x)
            if vocab_ranges is not None:
                return [self._head(x[rows], lo, hi) for lo, hi, rows in vocab_ranges]
            return self.lm_head(x)
        return self.logits(x[:, -1:] if last_only else x, vocab)

    def hidden(self, ids: torch.Tensor, cache: KVCache | None = None, reference: torch.Tensor | None = None,
               pad: torch.Tensor | None = None) -> torch.Tensor:
        """ids [b, t] (or [b, t, group], PAD where a position holds fewer) -> the last block's output
        [b, t, dim], before the final norm (`forward`'s `cache` and `reference`).
        `pad` (long [b]): rows left-padded by that many positions (sequences of different lengths in one
        batch): a row's positions count from its first real one, and no real position sees a padded one,
        so each row's states are those it has alone (up to float rounding). With a cache, given on the
        first call and kept for the later ones."""
        b, t = ids.shape[:2]
        pos = cache.pos if cache is not None else 0
        if cache is not None:
            cache.pad = pad if pos == 0 else cache.pad
            pad = cache.pad
        if pos + t > self.config.max_positions:
            raise ValueError(f"position {pos + t} is beyond the model's {self.config.max_positions} positions")
        x = self.embed(ids)
        if self.config.voice_pool:
            x = x + self._voice(x, reference, cache)
        mask = None
        if pad is None:
            cos, sin = self.rope_cos[pos : pos + t].to(x.dtype), self.rope_sin[pos : pos + t].to(x.dtype)
        else:
            queries = torch.arange(pos, pos + t, device=x.device)
            positions = (queries[None] - pad[:, None]).clamp_min(0)  # [b, t]
            cos, sin = (table[positions].to(x.dtype)[:, None] for table in (self.rope_cos, self.rope_sin))
            keys = torch.arange(pos + t, device=x.device)
            # causal, and never a padded key; a padded query sees itself (a row of nothing would be NaN)
            mask = ((keys[None] <= queries[:, None]) & (keys[None, None] >= pad[:, None, None])) | \
                (keys[None] == queries[:, None])
            mask = mask[:, None]  # [b, 1, t, keys]
        for i, block in enumerate(self.model.layers):
            x = block(x, cos, sin, i, cache, mask)
        if cache is not None:
            cache.pos += t
        return x

    def _depth_states(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """States x [n, dim] before positions holding ids `targets` [n, group] -> [n, group, dim]: the
        state itself for id 0, the depth head's given ids 0..j-1 for id j (the state for every id
        without a depth head)."""
        if not self.config.depth_layers:
            return x[:, None].expand(-1, targets.shape[1], -1)
        embedded = self.embed(targets[..., None])  # [n, group, dim]; PAD embeds as nothing
        earlier = embedded.cumsum(1) - embedded
        j = torch.arange(1, targets.shape[1], device=targets.device)
        return torch.cat([x[:, None], self.depth(x[:, None], earlier[:, 1:], j)], dim=1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [...] -> [..., dim]; ids [b, t, group] -> their embeddings summed per position (PAD: none)."""
        if ids.dim() < 3:
            return self.model.embed_tokens(ids)
        return (self.model.embed_tokens(ids) * (ids != TokenLayout.PAD)[..., None]).sum(-2)

    def logits(self, x: torch.Tensor, vocab: tuple[int, int] | None = None) -> torch.Tensor:
        """A `hidden` state [..., dim] -> logits (of ids [lo, hi) only, with `vocab`)."""
        x = self.model.norm(x)
        return self.lm_head(x) if vocab is None else self._head(x, *vocab)

    def _head(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Normed states -> the logits of ids [lo, hi) only."""
        if _use_low(self.lm_head.low, x):
            return self.lm_head.low.rows(lo, hi)(x).to(x.dtype)
        return F.linear(x, self.lm_head.weight[lo:hi])

    def _voice(self, x: torch.Tensor, reference: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        """[b, 1, dim]: the projected mean embedding of the reference positions (zero without any)."""
        if cache is not None and cache.pos > 0:
            return cache.voice
        if reference is None:
            voice = torch.zeros_like(x[:, :1])
        else:
            weight = reference[:, : x.shape[1], None].to(x.dtype)
            voice = self.voice_proj((x * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1))
        if cache is not None:
            cache.voice = voice
        return voice

    @torch.no_grad()
    def prepare_generation(self, kind: str = "int8", max_rows: int | None = None) -> Decoder:
        """Keep low-precision copies of the weights (`MatVecWeight`: "int8" or "fp16"; q/k/v and
        gate/up fused into one matrix each) for batches of up to `max_rows` rows (default
        `MATVEC_ROWS[kind]`) without gradients. Batch-1 generation of the 16.8M model on 2 CPU
        cores (benchmarks/run.py, docs/performance.md): 250-280 tokens/s with fp32 weights,
        190-310 with fp16 copies, 440-460 with int8 ones; the demo's held-out perplexities move by
        under 0.05% (benchmarks/generation_precision.py). The fp32 weights stay the model; call
        again after changing them."""
        for block in self.model.layers:
            a = block.self_attn
            a.qkv_low = MatVecWeight.of(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]), kind, max_rows)
            a.o_proj.low = MatVecWeight.of(a.o_proj.weight, kind, max_rows)
        mlps = list(self.depth.mlps) if hasattr(self, "depth") else []
        for m in [block.mlp for block in self.model.layers] + mlps:
            m.gate_up_low = MatVecWeight.of(torch.cat([m.gate_proj.weight, m.up_proj.weight]), kind, max_rows)
            m.down_proj.low = MatVecWeight.of(m.down_proj.weight, kind, max_rows)
        self.lm_head.low = MatVecWeight.of(self.lm_head.weight, kind, max_rows)
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _write(self, folder: Path) -> dict[str, Any]:
        """In transformers' LlamaForCausalLM layout (`audiolm.lm.stock`): the ecosystem loads it as is."""
        return stock.write(self, folder)

    @classmethod
    def _load(cls, folder: Path, config: dict[str, Any], **kwargs: Any) -> Decoder:
        if "adapter" in config:  # an adapted LM (audiolm.lm.lora): its parent with the adapters merged in
            from audiolm.lm.lora import load_adapted

            return load_adapted(folder, config, cls.from_pretrained)
        shape = config["audiolm_decoder"] if "audiolm_decoder" in config else config["decoder"]  # saved before 2026-12
        model = cls(config_from(DecoderConfig, shape), config.get("task"))
        # strict: a missing or extra tensor is an error
        model.load_state_dict(stock.read(folder, load_file(weights_file(folder))))
        return model.eval()
