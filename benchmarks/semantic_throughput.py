"""Stage-1 throughput: seconds of audio tokenized per second of wall time, on this machine.

Backends: the demo's log-mel front end, and a base-size WavLM architecture (random weights: speed
does not depend on their values) at layer 6, batched. Each is compared with a baseline measured in
the same process: log-mel with +-4 frames of context against plain log-mel frames (the price of
the context window), WavLM layer 6 against running all 12 blocks (what a pipeline that does not
drop the unused blocks pays).

    python -m benchmarks.semantic_throughput [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from audiolm.audio import resample
from audiolm.config import SemanticConfig
from audiolm.data.demo import VOICES, sentences
from audiolm.data.espeak import synthesize
from audiolm.semantic.features import build_features
from audiolm.semantic.kmeans import assign


def demo_audio(total_seconds: float) -> list[np.ndarray]:
    wavs, have = [], 0.0
    texts = sentences(200, seed=7)
    for out in synthesize([(t, VOICES[i % len(VOICES)]) for i, t in enumerate(texts)]):
        wavs.append(resample(out.wav, out.sample_rate, 16000))
        have += len(wavs[-1]) / 16000
        if have >= total_seconds:
            break
    return wavs


def throughput(features, centroids: torch.Tensor, wavs: list[np.ndarray], batch: int) -> float:
    seconds = sum(len(w) for w in wavs) / 16000
    start = time.perf_counter()
    for i in range(0, len(wavs), batch):
        feats = features(wavs[i : i + batch])
        assign(torch.cat(feats), centroids)
    return seconds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio to tokenize per measurement")
    args = parser.parse_args()
    torch.manual_seed(0)
    wavs = sorted(demo_audio(args.seconds), key=len)
    results = {"threads": torch.get_num_threads(), "audio_seconds": round(sum(len(w) for w in wavs) / 16000, 1)}

    cfg = SemanticConfig()
    logmel = build_features("logmel", context=cfg.context_frames)
    k_demo = torch.randn(cfg.num_clusters, logmel.dim)
    results["logmel_context4_x_realtime"] = throughput(logmel, k_demo, wavs, batch=16)
    plain = build_features("logmel", context=0)
    results["logmel_context0_x_realtime"] = throughput(plain, torch.randn(cfg.num_clusters, plain.dim), wavs, batch=16)

    import transformers

    with tempfile.TemporaryDirectory() as folder:
        transformers.WavLMModel(transformers.WavLMConfig()).save_pretrained(folder)  # base size, random
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(folder)
        k500 = torch.randn(500, 768)
        layer6 = build_features("ssl", folder, 6)
        all12 = build_features("ssl", folder, 12)
        results["wavlm_base_layer6_x_realtime"] = throughput(layer6, k500, wavs, batch=8)
        results["wavlm_base_all12_x_realtime"] = throughput(all12, k500, wavs, batch=8)

    results["logmel_context_cost"] = results["logmel_context0_x_realtime"] / results["logmel_context4_x_realtime"]
    results["wavlm_truncation_speedup"] = results["wavlm_base_layer6_x_realtime"] / results["wavlm_base_all12_x_realtime"]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
