"""The one codec interface: every acoustic tokenizer, ours or pretrained, looks like this.

    codes = codec.encode(wav)     # wav [b, n] float at codec.sample_rate -> codes [b, k, t] int64
    wav = codec.decode(codes)     # codes [b, k, t] -> wav [b, n]

`k` is at most `num_codebooks`; `encode(wav, num_codebooks=j)` keeps the first j (lower bitrate).
A saved codec is a folder with `codec_config.json`; `audiolm.codec.load_codec` reads any of them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CONFIG_NAME = "codec_config.json"
WEIGHTS_NAME = "model.safetensors"


class Codec(nn.Module):
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bits per second at `num_codebooks` (all by default)."""
        k = num_codebooks or self.num_codebooks
        return k * self.frame_rate * math.log2(self.codebook_size)

    def _check_codebooks(self, num_codebooks: int | None) -> int:
        k = num_codebooks or self.num_codebooks
        if not 1 <= k <= self.num_codebooks:
            raise ValueError(f"this codec has 1..{self.num_codebooks} codebooks, {k} asked")
        return k

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.ndim != 3 or codes.shape[1] > self.num_codebooks:
            raise ValueError(f"codes must be [b, k<={self.num_codebooks}, t], got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]")
