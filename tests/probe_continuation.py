"""What a loaded `AudioLM` makes of one prompt: its semantic ids, its codec codes and a seeded
continuation. Run as `python -m tests.probe_continuation MODEL PROMPT.wav OUT.npz` to get the same
from a fresh process."""

from __future__ import annotations

import sys

import numpy as np

from audiolm import audio
from audiolm.continuation import AudioLM


def probe(model_name: str, prompt_path: str, **load_kwargs) -> dict[str, np.ndarray]:
    model = AudioLM.from_pretrained(model_name, **load_kwargs)
    wav, rate = audio.load(prompt_path)
    (semantic,) = model.tokenizer.encode([audio.resample(wav, rate, model.tokenizer.sample_rate)])
    codes = model.encode(audio.resample(wav, rate, model.codec.sample_rate))
    continuation = model.continue_speech(wav, rate, seconds=0.6, seed=7)
    return {"semantic": semantic, "codes": codes, "continuation": continuation}


if __name__ == "__main__":
    model_name, prompt_path, out = sys.argv[1:4]
    np.savez(out, **probe(model_name, prompt_path))
