"""Every part that runs a model takes a device: the continuation, the scoreboard's scorer and the codec's
evaluation, from the library and the command line. On the test machines that device is the CPU, named
explicitly; what a GPU shows is `make gpu-check`'s (its CPU path is tested in test_gpu_check.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiolm.audio import resample
from audiolm.codec import load_codec
from audiolm.continuation import AudioLM
from audiolm.devices import module_device, resolve_device
from audiolm.eval.lm_score import SpeechLMScorer
from audiolm.pipeline import codec_eval


def test_auto_is_the_cpu_without_a_gpu_and_a_missing_gpu_is_a_clear_error(monkeypatch):
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="not a device torch knows"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")  # under accelerate launch: this process' own GPU
    assert resolve_device("auto") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA GPU"):
        resolve_device("cuda:2")


def _devices(module: torch.nn.Module) -> set[torch.device]:
    return {p.device for p in module.parameters()} | {b.device for b in module.buffers()}


def test_continuation_scorer_and_codec_eval_on_an_explicit_device(tiny_continuations, speech):
    wav, rate = speech
    device = torch.device("cpu")
    model = AudioLM.from_pretrained(tiny_continuations.run_dir, device="cpu")
    assert model.device == device and _devices(model.codec) == {device}
    assert all(_devices(lm) == {device} for lm in model.models.values())
    (out,) = model.continue_batch([wav], rate, seconds=0.3, seed=2)
    assert isinstance(out.continuation, np.ndarray) and out.continuation.dtype == np.float32
    assert isinstance(out.prompt, np.ndarray) and out.sample_rate == model.codec.sample_rate
    codes = model.encode(resample(wav, rate, model.codec.sample_rate))
    assert isinstance(codes, np.ndarray) and codes.dtype == np.int64
    assert isinstance(model.decode(codes), np.ndarray)

    scorer = SpeechLMScorer.from_pretrained(str(tiny_continuations.run_dir), device="cpu")
    assert scorer.device == device and module_device(scorer.model) == device
    units = scorer.units([resample(wav, rate, scorer.tokenizer.sample_rate)])
    assert isinstance(units[0], np.ndarray)

    codec = load_codec(tiny_continuations.run_dir / "codec", device="cpu")
    assert codec.device == device
    clip = resample(wav, rate, codec_eval.EVAL_RATE)
    back = codec_eval.resynthesize(codec, clip, codec.num_codebooks)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32 and back.shape == clip.shape


def test_the_command_line_says_in_one_line_that_there_is_no_gpu(tiny_continuations, speech_wav, tmp_path, capsys):
    from audiolm import cli

    out = tmp_path / "out.wav"
    assert cli.main(["continue", str(speech_wav), "-o", str(out), "--model", str(tiny_continuations.run_dir),
                     "--device", "cuda"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "device 'cuda'" in lines[0] and "no CUDA GPU" in lines[0], lines
    assert not out.exists()
