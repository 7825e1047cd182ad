"""Codec speed on this machine: encode and decode real-time factors (seconds of audio per second of
wall time; higher is faster), for the demo codec's architecture and EnCodec 24 kHz's (random
weights: speed does not depend on their values). The baseline, in the same process, is the same
demo codec quantizing through `vector_quantize_pytorch.ResidualVQ` instead of our lean
argmin/gather path.

    python -m benchmarks.codec_rtf [--seconds 20]
"""

from __future__ import annotations

import argparse
import json

import torch

from audiolm.config import load_config
from audiolm.pipeline.codec_stage import build_codec
from benchmarks.timing import median_seconds


def _rate(fn, seconds: float, repeats: int = 3) -> float:
    return seconds / median_seconds(fn, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    torch.manual_seed(0)
    c = load_config("pipelines/demo.yaml").codec
    demo = build_codec(c)
    wav = torch.randn(1, int(args.seconds * demo.sample_rate)) * 0.1
    demo.quantizer(demo.analyse(torch.randn(4, 16000) * 0.1))  # k-means-initialise the codebooks
    demo.eval()
    results: dict[str, float] = {"threads": torch.get_num_threads(), "audio_seconds": args.seconds}
    with torch.inference_mode():
        codes = demo.encode(wav)
        results["demo_encode_x_realtime"] = _rate(lambda: demo.encode(wav), args.seconds)
        results["demo_decode_x_realtime"] = _rate(lambda: demo.decode(codes), args.seconds)
        z = demo.analyse(wav)
        codes = demo.quantizer.encode(z)  # the residual VQ's own levels (the source-filter codec adds a pitch code)
        rvq = demo.quantizer.rvq
        results["quantize_lean_x_realtime"] = _rate(lambda: demo.quantizer.encode(z), args.seconds, 5)
        results["quantize_residualvq_x_realtime"] = _rate(lambda: rvq(z.transpose(1, 2)), args.seconds, 5)
        results["dequantize_lean_x_realtime"] = _rate(lambda: demo.quantizer.decode(codes), args.seconds, 5)
        results["dequantize_residualvq_x_realtime"] = _rate(lambda: rvq.get_output_from_indices(codes.transpose(1, 2)),
                                                            args.seconds, 5)

        import transformers

        from audiolm.codec.pretrained import TransformersCodec

        encodec = transformers.EncodecModel(transformers.EncodecConfig()).eval()  # the 24 kHz architecture
        with __import__("tempfile").TemporaryDirectory() as folder:
            encodec.save_pretrained(folder)
            adapter = TransformersCodec(folder, num_codebooks=8)  # 6 kbps
            wav24 = torch.randn(1, int(args.seconds * 24000)) * 0.1
            codes24 = adapter.encode(wav24)
            results["encodec24_encode_x_realtime"] = _rate(lambda: adapter.encode(wav24), args.seconds)
            results["encodec24_decode_x_realtime"] = _rate(lambda: adapter.decode(codes24), args.seconds)
    results["lean_quantize_speedup"] = results["quantize_lean_x_realtime"] / results["quantize_residualvq_x_realtime"]
    results["lean_dequantize_speedup"] = results["dequantize_lean_x_realtime"] / results["dequantize_residualvq_x_realtime"]
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
