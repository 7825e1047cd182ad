"""Language-model speed on this machine, at the demo's coarse-LM size (random weights: speed does not
depend on their values), each number next to a baseline measured in the same process:

- training tokens/s (forward + backward + AdamW, fp32 and bf16 autocast) and model FLOPs utilization
  against a plain matmul of the same dtype timed in this run;
- generation tokens/s at batch 1: our decoder with its KV cache, without it (the whole sequence again
  each step), and transformers' `LlamaForCausalLM.generate` with the same weights (the alternative
  we measured before choosing our own decoder); and at batch 16 with the cache;
- the end-to-end continuation real-time factor of a trained run (`--run runs/demo`, when present).

    python -m benchmarks.lm_speed [--run runs/demo]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from audiolm.config import SamplingConfig, load_config
from audiolm.lm.generate import generate
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.tokens import TokenLayout
from benchmarks.timing import median_seconds


def matmul_flops(dtype: torch.dtype, n: int = 1024) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 * 10 / median_seconds(lambda: [a @ b for _ in range(10)])


def flops_per_token(model: Decoder, length: int) -> float:
    """Training FLOPs per token (PaLM appendix B, as nanoGPT): 6 per weight (forward + backward)
    plus attention scores and values, 12 * layers * dim * length."""
    c = model.config
    weights = model.num_parameters() - model.model.embed_tokens.weight.numel()  # a lookup, not a matmul
    return 6 * weights + 12 * c.layers * c.dim * length


def training_speed(model: Decoder, batch: int, length: int, dtype: str, steps: int = 4) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the trainer
    ids = torch.randint(0, model.config.vocab_size, (batch, length))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            logits = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return batch * (length - 1) * steps / median_seconds(lambda: [step() for _ in range(steps)], repeats=2)


def generation_speed(model: Decoder, batch: int, prompt: int, new: int, use_cache: bool) -> float:
    ids = torch.randint(4, model.config.vocab_size, (batch, prompt))
    greedy = SamplingConfig(temperature=0.0)
    allowed = lambda i: (4, model.config.vocab_size)  # noqa: E731
    return batch * new / median_seconds(lambda: generate(model, ids, new, allowed, greedy, use_cache=use_cache), repeats=2)


def transformers_generation_speed(model: Decoder, prompt: int, new: int) -> float:
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.dim, intermediate_size=c.ffn_dim, num_hidden_layers=c.layers,
        num_attention_heads=c.heads, num_key_value_heads=c.kv_heads, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        max_position_embeddings=c.max_positions, tie_word_embeddings=False, attn_implementation="sdpa")).eval()
    llama.load_state_dict(model.state_dict(), strict=False)
    ids = torch.randint(4, c.vocab_size, (1, prompt))
    with torch.no_grad():
        return new / median_seconds(lambda: llama.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                                  pad_token_id=0), repeats=2)


def continuation_rtf(run: Path, prompt_seconds: float, seconds: float, batch: int) -> float:
    from audiolm.continuation import AudioLM

    model = AudioLM.from_pretrained(run)
    rng = np.random.default_rng(0)
    sr = model.codec.sample_rate
    prompts = [0.1 * rng.standard_normal(int(prompt_seconds * sr)).astype(np.float32) for _ in range(batch)]
    return batch * seconds / median_seconds(lambda: model.continue_batch(prompts, sr, seconds), repeats=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a trained run for the end-to-end number (skipped if absent)")
    parser.add_argument("--new-tokens", type=int, default=200)
    args = parser.parse_args()
    cfg = load_config("pipelines/demo.yaml")
    lm = cfg.lm.coarse
    layout = TokenLayout(semantic_size=cfg.semantic.num_clusters, codebook_size=cfg.codec.codebook_size,
                         num_codebooks=cfg.codec.num_codebooks, coarse_codebooks=cfg.lm.coarse_codebooks)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=layout.task_vocab_size("coarse"), dim=lm.dim, layers=lm.layers,
                                  heads=lm.heads, kv_heads=lm.kv_heads, ffn_dim=lm.ffn_dim, max_positions=1024))
    length = 302  # the demo coarse LM's longest window: 1 + 100 semantic + 1 + 200 coarse ids
    r: dict[str, float | int | str] = {"threads": torch.get_num_threads(), "parameters": model.num_parameters(),
                                       "train_batch": f"16 x {length}"}
    for dtype, torch_dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = matmul_flops(torch_dtype)
        tokens = training_speed(model, 16, length, dtype)
        r[f"matmul_gflops_{dtype}"] = peak / 1e9
        r[f"train_tokens_per_s_{dtype}"] = tokens
        r[f"train_mfu_{dtype}"] = tokens * flops_per_token(model, length) / peak
    model.eval()
    prompt = 100
    r["generate_tokens_per_s_cached"] = generation_speed(model, 1, prompt, args.new_tokens, True)
    r["generate_tokens_per_s_uncached"] = generation_speed(model, 1, prompt, args.new_tokens, False)
    r["generate_tokens_per_s_transformers_llama"] = transformers_generation_speed(model, prompt, args.new_tokens)
    r["generate_tokens_per_s_cached_batch16"] = generation_speed(model, 16, prompt, args.new_tokens, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r["generate_tokens_per_s_cached_bf16"] = generation_speed(model, 1, prompt, args.new_tokens, True)
    r["cache_speedup"] = r["generate_tokens_per_s_cached"] / r["generate_tokens_per_s_uncached"]
    r["ours_vs_transformers"] = r["generate_tokens_per_s_cached"] / r["generate_tokens_per_s_transformers_llama"]
    run = Path(args.run)
    if (run / "lm-fine").exists():
        c = cfg.continuation
        r["continuation_x_realtime_batch1"] = continuation_rtf(run, c.prompt_seconds, c.seconds, 1)
        r["continuation_x_realtime_batch16"] = continuation_rtf(run, c.prompt_seconds, c.seconds, 16)
    else:
        r["continuation_x_realtime"] = f"skipped: no trained run in {run} (make demo)"
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, indent=2))


if __name__ == "__main__":
    main()
