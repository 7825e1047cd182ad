"""`make gpu-check`: the first GPU run in one command, and what it measured.

On a machine with a CUDA GPU:
1. the tiny pipeline (pipelines/tiny.yaml) end to end on the device, stages 0-4 in this process, with
   every module's forward watched: each must run with its weights and inputs on the GPU (a part left
   on the CPU is named, and the check fails); with 2 or more GPUs, stage 3's semantic LM again under
   `accelerate launch --num_processes 2`;
2. stage 1-2 throughput in hours of audio per second of wall time, through the library's own path:
   a HuBERT-base-sized encoder (random weights, group-norm front end: utterances of one length at a
   time, as `EncoderFeatures` computes them) at layer 9 with nearest-centroid assignment to K=500, and
   EnCodec 24 kHz (random weights, 8 codebooks) encoding padded batches;
3. a GPT-2-small-sized LM training step (12 layers, 768 wide, 1,024 positions, bf16 autocast,
   AdamW): tokens per second and MFU against a bf16 matmul timed in this run and against the 790
   TFLOP/s measured on the lent H100/H200 (../shared/design/GPU.md);
4. the continuation's real-time factor at batch 1 and 8 on the tiny run's models.
It prints a table and writes it as JSON (--json). Without a GPU it says so in one line and exits 0.

    python -m benchmarks.gpu_check [--json OUT.json] [--device cpu --small]   # --device cpu: the CPU test's path

`--device cpu --small` runs the same code on the CPU at toy sizes: what tests/test_gpu_check.py checks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MEASURED_PEAK_TFLOPS = 790.0  # bf16 matmul on the lent H100/H200 (shared/design/GPU.md)


def no_gpu_line() -> str | None:
    """One line saying why there is nothing to check here, or None when there is a CUDA GPU."""
    try:
        import torch
    except ImportError:
        gpu = shutil.which("nvidia-smi") is not None
        return None if gpu else f"gpu-check: no CUDA GPU here (and no torch in {sys.executable}); nothing to check"
    if torch.cuda.is_available():
        return None
    return (f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, "
            f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}); nothing to check")


class DeviceWatch:
    """Every module forward while active (a global forward pre-hook): counted per module class as on
    `device` when its own weights and its tensor inputs are all there, else as elsewhere."""

    def __init__(self, device: str):
        import torch

        self.type = torch.device(device).type
        self.on: Counter[str] = Counter()
        self.elsewhere: Counter[str] = Counter()
        self._handle = None

    def _hook(self, module, args) -> None:
        import torch

        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += list(module.parameters(recurse=False))[:1]
        places = {t.device.type for t in tensors}
        if places:
            (self.on if places == {self.type} else self.elsewhere)[type(module).__name__] += 1

    def __enter__(self) -> DeviceWatch:
        import torch

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str, repeats: int = 3) -> float:
    """The fastest of `repeats` runs of `fn` after one warm-up, in seconds."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


# -- 1. the tiny pipeline on the device --------------------------------------------------------------------
def tiny_pipeline(runs: Path, device: str) -> tuple[object, dict[str, float]]:
    from audiolm.config import load_config
    from audiolm.pipeline import codec_stage, continue_stage, corpus_stage, lm_stage, semantic_stage

    cfg = load_config(REPO / "pipelines" / "tiny.yaml", [f"runs_dir={runs}", f"semantic.device={device}",
                                                         f"continuation.device={device}"])
    seconds = {}
    for name, stage in (("stage 0", corpus_stage), ("stage 1", semantic_stage), ("stage 2", codec_stage),
                        ("stage 3", lm_stage), ("stage 4", continue_stage)):
        start = time.perf_counter()
        stage.run(cfg)
        seconds[name] = round(time.perf_counter() - start, 1)
    return cfg, seconds


def two_processes(runs: Path) -> float:
    """Stage 3's semantic LM of the tiny run, retrained under `accelerate launch --num_processes 2`."""
    shutil.rmtree(runs / "tiny" / "lm-semantic", ignore_errors=True)
    shutil.rmtree(runs / "tiny" / "lm-semantic-train", ignore_errors=True)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
               "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "stages.stage3_lm",
               "--pipeline", "pipelines/tiny.yaml", "--task", "semantic", f"runs_dir={runs}"]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True)
    return time.perf_counter() - start


# -- 2. stages 1-2 throughput ------------------------------------------------------------------------------
def utterances(count: int, seconds: tuple[float, float], rate: int, seed: int = 0) -> list:
    """Noise of varied lengths (speed does not depend on what the audio says)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(rng.uniform(*seconds) * rate))).astype(np.float32) for _ in range(count)]


def semantic_throughput(folder: Path, device: str, small: bool) -> dict[str, float]:
    import torch
    import transformers

    from audiolm.semantic.features import build_features
    from audiolm.semantic.kmeans import assign

    size = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2) if small else {}
    config = transformers.HubertConfig(**size, feat_extract_norm="group")  # HuBERT-base's front end
    transformers.HubertModel(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)
    layer = 2 if small else 9
    features = build_features("ssl", str(folder), layer, device)
    wavs = utterances(4 if small else 64, (1.0, 2.0) if small else (10.0, 16.0), 16000)
    centroids = torch.randn(500, features.dim)

    def tokenize():
        for i in range(0, len(wavs), 16):
            feats = features(wavs[i : i + 16])
            assign(torch.cat(feats), centroids)

    seconds = timed(tokenize, device, repeats=1 if small else 2)
    audio = sum(len(w) for w in wavs) / 16000
    return {"stage1_hours_per_s": audio / 3600 / seconds, "stage1_x_realtime": audio / seconds,
            "stage1_encoder": f"HuBERT-base config{' (toy)' if small else ''}, layer {layer}, random weights, K=500"}


def codec_throughput(folder: Path, device: str, small: bool) -> dict[str, float]:
    import torch
    import transformers

    from audiolm.codec import load_codec

    size = dict(num_filters=4, hidden_size=16, codebook_dim=16, codebook_size=64, num_lstm_layers=1) if small else {}
    transformers.EncodecModel(transformers.EncodecConfig(**size)).save_pretrained(folder)
    transformers.EncodecFeatureExtractor().save_pretrained(folder)
    codec = load_codec(folder, num_codebooks=None if small else 8, device=device)  # 6 kbps, as pipelines/librispeech.yaml
    rate = codec.sample_rate
    wavs = utterances(4 if small else 64, (1.0, 2.0) if small else (10.0, 16.0), rate, seed=1)

    @torch.inference_mode()
    def encode():
        for i in range(0, len(wavs), 16):
            chunk = wavs[i : i + 16]
            padded = torch.zeros(len(chunk), max(len(w) for w in chunk))
            for row, w in enumerate(chunk):
                padded[row, : len(w)] = torch.from_numpy(w)
            codec.encode(padded.to(codec.device)).cpu()

    seconds = timed(encode, device, repeats=1 if small else 2)
    audio = sum(len(w) for w in wavs) / rate
    return {"stage2_hours_per_s": audio / 3600 / seconds, "stage2_x_realtime": audio / seconds,
            "stage2_codec": f"EnCodec {rate // 1000} kHz config{' (toy)' if small else ''}, random weights, "
                            f"{codec.num_codebooks} codebooks"}


# -- 3. an LM training step --------------------------------------------------------------------------------
def lm_step(device: str, small: bool) -> dict[str, float]:
    import torch

    from audiolm.lm.model import Decoder, DecoderConfig
    from benchmarks.lm_speed import flops_per_token

    dim, layers, heads, length, batch = (64, 2, 2, 128, 4) if small else (768, 12, 12, 1024, 16)
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(vocab_size=1024, dim=dim, layers=layers, heads=heads, kv_heads=heads, ffn_dim=4 * dim,
                                  max_positions=length)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, 1024, (batch, length), device=device)
    kind = torch.device(device).type

    def step():
        with torch.autocast(kind, dtype=torch.bfloat16):
            logits = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    steps = 2 if small else 10
    seconds = timed(lambda: [step() for _ in range(steps)], device, repeats=1 if small else 2)
    tokens = batch * (length - 1) * steps / seconds
    flops = tokens * flops_per_token(model, length)
    n = 256 if small else 8192
    a, b = torch.randn(n, n, device=device, dtype=torch.bfloat16), torch.randn(n, n, device=device, dtype=torch.bfloat16)
    peak = 2 * n**3 * 10 / timed(lambda: [a @ b for _ in range(10)], device)
    return {"lm_parameters_m": model.num_parameters() / 1e6, "lm_batch": f"{batch} x {length}",
            "lm_tokens_per_s": tokens, "lm_tflops": flops / 1e12, "matmul_bf16_tflops": peak / 1e12,
            "lm_mfu_vs_matmul": flops / peak, "lm_mfu_vs_790": flops / (MEASURED_PEAK_TFLOPS * 1e12)}


# -- 4. continuation real-time factor ----------------------------------------------------------------------
def continuation_rtf(run: Path, device: str, seconds: float = 2.0) -> dict[str, float]:
    from audiolm.continuation import AudioLM

    model = AudioLM.from_pretrained(run, device=device)
    rate = model.codec.sample_rate
    prompts = utterances(8, (1.0, 1.0), rate, seed=2)  # one length: a batch of 8 is one group
    out = {}
    for batch in (1, 8):
        wall = timed(lambda b=batch: model.continue_batch(prompts[:b], rate, seconds), device, repeats=1)
        out[f"continuation_x_realtime_batch{batch}"] = batch * seconds / wall
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to run the check's code path here")
    parser.add_argument("--small", action="store_true", help="toy sizes (the CPU test)")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    parser.add_argument("--work", default=None, help="a folder for the tiny run (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        line = no_gpu_line()
        if line:
            print(line)
            return 0
    import torch

    device = args.device
    report: dict[str, object] = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                                 "torch": torch.__version__, "gpus": torch.cuda.device_count()}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(args.work) if args.work else Path(tmp) / "runs"
        with DeviceWatch(device) as watch:  # every part below: each forward on the device
            cfg, report["pipeline_seconds"] = tiny_pipeline(runs, device)
            report.update(semantic_throughput(Path(tmp) / "hubert", device, args.small))
            report.update(codec_throughput(Path(tmp) / "encodec", device, args.small))
            report.update(lm_step(device, args.small))
            report.update(continuation_rtf(cfg.run_dir, device))
        report["modules_on_device"] = sum(watch.on.values())
        report["modules_elsewhere"] = dict(watch.elsewhere)
        if not watch.on:
            failures.append("no module ran while watched")
        if watch.elsewhere:
            failures.append(f"modules ran off {device}: {dict(watch.elsewhere)}")
        if device.startswith("cuda") and torch.cuda.device_count() >= 2:
            report["stage3_two_processes_seconds"] = round(two_processes(runs), 1)
    width = max(len(k) for k in report)
    for key, value in report.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**report, "failures": failures}, indent=1) + "\n")
    for failure in failures:
        print(f"gpu-check: FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
