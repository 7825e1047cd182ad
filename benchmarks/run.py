"""The benchmark suite: every speed and memory figure of the pipeline, each next to a baseline
measured in the same run, so the ratios survive a noisy or different machine.

    python -m benchmarks.run [--quick] [--json OUT.json] [--run runs/demo] [--only lm_16m codec ...]

Each group runs in its own process (its peak resident memory is a figure too) after a warm-up,
timing the median of several repeats. Models have random weights unless `--run` holds a trained
run: speed does not depend on weight values. The JSON is a list of flat objects
{"name", "value", "unit", "baseline", "ratio"}; ratio = value / baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.breakdown import PARTS, continuation_breakdown
from benchmarks.timing import median_seconds

Figure = dict[str, object]


def figure(name: str, value: float, unit: str, baseline: float | None = None) -> Figure:
    ratio = value / baseline if baseline else None
    return {"name": name, "value": float(value), "unit": unit, "baseline": None if baseline is None else float(baseline),
            "ratio": ratio}


# -- the machine -------------------------------------------------------------------------------
def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 1536) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n**3 * 4 / median_seconds(lambda: [a @ b for _ in range(4)], repeats=5) / 1e9


def memory_gbps(megabytes: int = 512) -> float:
    """Read bandwidth: summing an array far beyond any cache (512 MB; `--quick`: 128)."""
    x = torch.ones(megabytes * 256 * 1024)
    return x.numel() * 4 / median_seconds(x.sum, repeats=5) / 1e9


def machine(quick: bool, run: Path) -> list[Figure]:
    threads = torch.get_num_threads()
    n = 768 if quick else 1536  # quick: 8x fewer operations, still far beyond the caches
    peak = matmul_gflops(n=n)
    torch.set_num_threads(1)
    one = matmul_gflops(n=n)
    torch.set_num_threads(threads)
    return [figure("matmul_peak_gflops", peak, f"GFLOP/s fp32, {threads} threads", one),
            figure("memory_bandwidth_gb_s", memory_gbps(128 if quick else 512), "GB/s read")]


# -- language models -----------------------------------------------------------------------------
def _decoder(vocab: int, dim: int, layers: int, heads: int, kv_heads: int = 0, ffn_dim: int = 0, max_positions: int = 1024):
    from audiolm.lm.model import Decoder, DecoderConfig

    torch.manual_seed(0)
    return Decoder(DecoderConfig(vocab_size=vocab, dim=dim, layers=layers, heads=heads, kv_heads=kv_heads,
                                 ffn_dim=ffn_dim, max_positions=max_positions))


def _training(name: str, model, batch: int, length: int, quick: bool) -> list[Figure]:
    from benchmarks.lm_speed import flops_per_token, training_speed

    peak = matmul_gflops() * 1e9
    tokens = training_speed(model, batch, length, "fp32", steps=1 if quick else 3)
    bound = peak / flops_per_token(model, length)  # tokens/s at 100% of the matmul peak
    return [figure(f"lm_train_tokens_per_s_{name}", tokens, f"tokens/s, batch {batch} x {length}, fp32", bound),
            figure(f"lm_train_mfu_{name}", tokens / bound, "fraction of matmul_peak_gflops", 1.0)]


def lm_16m(quick: bool, run: Path) -> list[Figure]:
    """The 16.8M-parameter semantic LM of the issue: dim 512, 6 layers, 8 heads, 500 semantic ids
    (+4 special), SwiGLU width 1088; training batch 8 x 512; generation batch 1, 500 new tokens."""
    from benchmarks.lm_speed import generation_speed

    model = _decoder(504, 512, 6, 8, ffn_dim=1088)
    figures = _training("16m", model, 8, 513, quick)
    model.eval()
    weights_bound = memory_gbps() * 1e9 / (4 * model.num_parameters())  # fp32 weights read once per token
    new = 200 if quick else 500
    plain = generation_speed(model, 1, 50, new, True)
    half = generation_speed(model.prepare_generation("fp16"), 1, 50, new, True)
    model.prepare_generation()  # int8, as AudioLM generates
    cached = generation_speed(model, 1, 50, new, True)
    compiled, compile_seconds = _compiled_generation(model, new, cached)
    uncached = generation_speed(model, 1, 50, new, False)
    batch16 = generation_speed(model, 16, 50, new // 2, True)
    return figures + [
        figure("lm_generate_cached_tokens_per_s_16m", cached, f"tokens/s, batch 1, {new} new, int8 weight copies, "
               "vs fp32 weights read at memory bandwidth", weights_bound),
        figure("lm_generate_compiled_tokens_per_s_16m", compiled, f"tokens/s, batch 1, {new} new, int8 copies, the "
               "decode step compiled (audiolm.lm.decode_step), vs eager", cached),
        figure("lm_generate_compile_seconds_16m", compile_seconds, "s to compile the decode step (once per process and "
               "shape; inductor's disk cache makes later processes faster), vs one eager generation", new / cached),
        figure("lm_generate_cached_fp16_tokens_per_s_16m", half, f"tokens/s, batch 1, {new} new, fp16 weight copies",
               cached),
        figure("lm_generate_cached_fp32_tokens_per_s_16m", plain, f"tokens/s, batch 1, {new} new, fp32 weights", cached),
        figure("lm_generate_uncached_tokens_per_s_16m", uncached, f"tokens/s, batch 1, {new} new, no KV cache", cached),
        figure("lm_generate_cached_batch16_tokens_per_s_16m", batch16, f"tokens/s, batch 16, {new // 2} new", cached),
        figure("parameters_16m", model.num_parameters() / 1e6, "M parameters", 16.8),
    ]


def _compiled_generation(model, new: int, eager_speed: float) -> tuple[float, float]:
    """Tokens/s of `generation_speed` with the compiled decode step, and the seconds its first call
    took beyond an eager one's (`eager_speed`: compiling). The model goes back to eager steps after."""
    from audiolm.config import SamplingConfig
    from audiolm.lm.decode_step import compile_generation
    from audiolm.lm.generate import generate
    from benchmarks.lm_speed import generation_speed

    compile_generation(model)
    ids = torch.randint(4, model.config.vocab_size, (1, 50))
    start = time.perf_counter()  # the first call compiles for the shape generation_speed uses below
    generate(model, ids, new, lambda i: (4, model.config.vocab_size), SamplingConfig(temperature=0.0))
    seconds = time.perf_counter() - start - new / eager_speed
    speed = generation_speed(model, 1, 50, new, True)
    model.compiled_step = None
    return speed, seconds


def lm_demo(quick: bool, run: Path) -> list[Figure]:
    """The demo's coarse LM shape (the largest of its three), trained on its longest window."""
    from audiolm.config import load_config
    from benchmarks.lm_speed import generation_speed

    cfg = load_config("pipelines/demo.yaml")
    lm = cfg.lm.coarse
    vocab = 4 + cfg.semantic.num_clusters + cfg.lm.coarse_codebooks * cfg.codec.codebook_size
    model = _decoder(vocab, lm.dim, lm.layers, lm.heads, lm.kv_heads, lm.ffn_dim)
    figures = _training("demo", model, 16, 302, quick)
    model.eval().prepare_generation()
    weights_bound = memory_gbps() * 1e9 / (4 * model.num_parameters())
    return figures + [figure("lm_generate_cached_tokens_per_s_demo", generation_speed(model, 1, 100, 200, True),
                             "tokens/s, batch 1, 200 new, vs fp32 weights read at memory bandwidth", weights_bound)]


# -- tokenizers and codec ------------------------------------------------------------------------
def _demo_codec():
    from audiolm.config import load_config
    from audiolm.pipeline.codec_stage import build_codec

    torch.manual_seed(0)
    codec = build_codec(load_config("pipelines/demo.yaml").codec)
    codec.quantizer(codec.analyse(torch.randn(4, 16000) * 0.1))  # k-means-initialise the codebooks
    return codec.eval()


def _demo_tokenizer(folder: str):
    """The demo's stage-1 tokenizer with random weights (speed does not depend on them): its encoder
    shape saved with a 53-phone classifier, `units` and `duration_penalty` as in demo.yaml."""
    import dataclasses

    from audiolm.config import load_config
    from audiolm.semantic.features import build_features
    from audiolm.semantic.pretrain import MaskedPredictor, feature_extractor, new_encoder, with_classifier
    from audiolm.semantic.tokenizer import SemanticTokenizer

    cfg = load_config("pipelines/demo.yaml").semantic
    torch.manual_seed(0)
    phones = [f"p{i}" for i in range(53)]
    with_classifier(MaskedPredictor(new_encoder(cfg.encoder), len(phones)), phones).save_pretrained(folder)
    feature_extractor().save_pretrained(folder)
    s = dataclasses.replace(cfg, backend="ssl", model=folder)
    return SemanticTokenizer.fit(s, build_features("ssl", folder, s.layer, units=s.units), [])


def tokenize(quick: bool, run: Path) -> list[Figure]:
    """Stage 1 (the demo's tokenizer: the encoder trained in stage 1, its phone decisions with the
    duration penalty, batched as the stage does) and stage 2 (the demo codec, one utterance at a
    time as the stage does) on synthesized speech."""
    import tempfile

    from benchmarks.semantic_throughput import demo_audio

    wavs = sorted(demo_audio(20.0 if quick else 60.0), key=len)
    seconds = sum(len(w) for w in wavs) / 16000

    def stage1(tokenizer) -> float:
        return seconds / median_seconds(lambda: [tokenizer.encode(wavs[i : i + 16]) for i in range(0, len(wavs), 16)],
                                        repeats=1 if quick else 3)

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _demo_tokenizer(folder)
        penalty = tokenizer.config.duration_penalty
        ours = stage1(tokenizer)
        tokenizer.config.duration_penalty = 0.0
        argmax = stage1(tokenizer)
    codec = _demo_codec()
    with torch.inference_mode():
        start = time.perf_counter()
        for w in wavs:
            codec.encode(torch.from_numpy(w)[None])
        stage2 = seconds / (time.perf_counter() - start)
        whole = torch.from_numpy(np.concatenate(wavs))[None]
        one_clip = seconds / median_seconds(lambda: codec.encode(whole), repeats=1 if quick else 3)
    return [figure("semantic_tokenize_audio_s_per_s_demo", ours, f"audio s per s (3.7M encoder, 53 phone units, "
                   f"duration penalty {penalty:g}), vs the same without the penalty", argmax),
            figure("stage2_tokenize_audio_s_per_s_demo", stage2, "audio s per s (one utterance at a time), vs one clip",
                   one_clip)]


def codec(quick: bool, run: Path) -> list[Figure]:
    """Encode/decode real-time factors of the demo codec, against EnCodec 24 kHz's architecture (6
    kbps) measured in the same process."""
    import tempfile

    import transformers

    from audiolm.codec.pretrained import TransformersCodec

    seconds = 10.0 if quick else 20.0
    repeats = 1 if quick else 3
    demo = _demo_codec()
    encodec = transformers.EncodecModel(transformers.EncodecConfig()).eval()
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        encodec.save_pretrained(folder)
        reference = TransformersCodec(folder, num_codebooks=8)
        rates = {}
        for name, c in (("demo", demo), ("encodec", reference)):
            wav = torch.randn(1, int(seconds * c.sample_rate)) * 0.1
            codes = c.encode(wav)
            rates[name] = (seconds / median_seconds(lambda c=c, w=wav: c.encode(w), repeats),
                           seconds / median_seconds(lambda c=c, k=codes: c.decode(k), repeats))
    return [figure("codec_encode_rtf_demo", rates["demo"][0], "x real time, vs EnCodec 24 kHz", rates["encodec"][0]),
            figure("codec_decode_rtf_demo", rates["demo"][1], "x real time, vs EnCodec 24 kHz", rates["encodec"][1])]


# -- end to end ----------------------------------------------------------------------------------
def demo_model(run: Path):
    """The trained run if there is one, else the demo's architecture with random weights."""
    from audiolm.continuation import AudioLM

    if (run / "lm-fine").exists():
        return AudioLM.from_pretrained(run), f"trained {run}"
    from audiolm.config import load_config
    from audiolm.lm.sequences import TASKS, TaskSpec
    from audiolm.pipeline.lm_stage import build_model
    from audiolm.semantic.features import build_features
    from audiolm.semantic.tokenizer import SemanticTokenizer, SemanticTokenizerConfig
    from audiolm.tokens import TokenLayout

    cfg = load_config("pipelines/demo.yaml")
    s = cfg.semantic
    features = build_features(s.backend, context=s.context_frames)
    tokenizer = SemanticTokenizer(SemanticTokenizerConfig(s.backend, "", 0, s.num_clusters, 16000, features.frame_rate,
                                                          features.dim, s.utterance_norm, s.context_frames),
                                  features, torch.randn(s.num_clusters, features.dim), torch.zeros(features.dim),
                                  torch.ones(features.dim))
    acoustic = _demo_codec()
    layout = TokenLayout(s.num_clusters, acoustic.codebook_size, acoustic.num_codebooks, cfg.lm.coarse_codebooks)
    models = {}
    for task in TASKS:
        lm = getattr(cfg.lm, task)
        spec = TaskSpec(task, layout, features.frame_rate, acoustic.frame_rate, lm.window_seconds,
                        frame_positions=lm.frame_positions)
        torch.manual_seed(0)
        models[task] = build_model(spec, lm).eval()
    return AudioLM(tokenizer, acoustic, models), "random weights, demo architecture"


def continuation(quick: bool, run: Path) -> list[Figure]:
    from audiolm.config import load_config

    c = load_config("pipelines/demo.yaml").continuation
    model, what = demo_model(run)
    rate = model.codec.sample_rate
    prompt = 0.1 * np.random.default_rng(0).standard_normal(int(c.prompt_seconds * rate)).astype(np.float32)
    wall = median_seconds(lambda: model.continue_speech(prompt, rate, c.seconds), repeats=1 if quick else 3)
    figures = [figure("continue_rtf_demo", c.seconds / wall, f"x real time, batch 1, {c.prompt_seconds:g} s prompt, "
                      f"{c.seconds:g} s generated ({what}), vs real time", 1.0)]
    # streamed: the wait before the first sound, against the whole call's; and the stream's whole time
    # (the codec runs again for each chunk) against the call's
    first, streamed = [], []
    for _ in range(2 if quick else 3):
        start = time.perf_counter()
        for i, _chunk in enumerate(model.continue_speech_stream(prompt, rate, c.seconds)):
            if i == 0:
                first.append(time.perf_counter() - start)
        streamed.append(time.perf_counter() - start)
    figures += [figure("continue_first_audio_seconds", sorted(first)[len(first) // 2],
                       "s from the call to the stream's first chunk, vs the whole call", wall),
                figure("continue_stream_rtf_demo", c.seconds / sorted(streamed)[len(streamed) // 2],
                       "x real time, the same continuation streamed, vs not streamed", c.seconds / wall)]
    # where one such call's time goes (benchmarks/breakdown.py); ratio = share of the call
    parts = continuation_breakdown(model, lambda: model.continue_speech(prompt, rate, c.seconds))
    for part in PARTS:
        slug = part.split(" (")[0].replace(" ", "_")
        figures.append(figure(f"continue_seconds_{slug}", parts[part], f"s of one continuation: {part}, vs the call",
                              parts["total"]))
    return figures


GROUPS: dict[str, Callable[[bool, Path], list[Figure]]] = {
    "machine": machine, "lm_16m": lm_16m, "lm_demo": lm_demo, "tokenize": tokenize, "codec": codec,
    "continue": continuation,
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def run_group(name: str, quick: bool, run: Path) -> list[Figure]:
    """One group in a fresh process: its own peak memory, no state left by the others."""
    args = [sys.executable, "-m", "benchmarks.run", "--child", name, "--run", str(run)] + (["--quick"] if quick else [])
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark group {name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(figures: list[Figure]) -> str:
    rows = [f"{'figure':46s} {'value':>10s} {'baseline':>10s} {'ratio':>7s}  unit"]
    for f in figures:
        baseline = "" if f["baseline"] is None else f"{f['baseline']:10.4g}"
        ratio = "" if f["ratio"] is None else f"{f['ratio']:7.3f}"
        rows.append(f"{f['name']:46s} {f['value']:10.4g} {baseline:>10s} {ratio:>7s}  {f['unit']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter inputs (under 5 minutes)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--run", default="runs/demo", help="a trained run for continue_rtf_demo (else random weights)")
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), help="these groups only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        figures = GROUPS[args.child](args.quick, Path(args.run))
        figures.append(figure(f"peak_rss_mb_{args.child}", _peak_rss_mb(), "MB resident (peak)"))
        print(json.dumps(figures))
        return
    start = time.perf_counter()
    bare = subprocess.run([sys.executable, "-c", "import resource, torch; "
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                          capture_output=True, text=True, check=True)
    bare_mb = float(bare.stdout)
    figures: list[Figure] = []
    for name in args.only or GROUPS:
        t = time.perf_counter()
        for f in run_group(name, args.quick, Path(args.run)):
            if f["name"].startswith("peak_rss_mb_"):
                f = figure(f["name"], f["value"], "MB resident (peak), vs a process that only imports torch", bare_mb)
            figures.append(f)
        print(f"  {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {time.perf_counter() - start:.0f} s in all")
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
