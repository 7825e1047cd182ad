"""Pretrained codecs from `transformers` behind our `Codec` interface: EnCodec, DAC and Mimi.

One adapter, a branch per model type where their calls differ. It hides EnCodec's per-chunk
output (a leading chunk axis, scales) and maps "number of codebooks" onto EnCodec's bandwidths,
DAC's `n_quantizers` and Mimi's `num_quantizers`. Loaded by Hub id or local folder through the same
`from_pretrained`, from safetensors only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from audiolm.codec.base import Codec
from audiolm.hub import copy_model_files

SUPPORTED = ("encodec", "dac", "mimi")
BUNDLED = "pretrained"  # where a local (not Hub) pretrained codec is copied when saved


class TransformersCodec(Codec):
    kind = "transformers"
    card_title = "reference to a pretrained neural audio codec (transformers)"

    def __init__(self, model_id: str, revision: str | None = None, num_codebooks: int | None = None,
                 token: str | bool | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(model_id, revision=revision or None, token=token)
        if config.model_type not in SUPPORTED:
            raise ValueError(f"{model_id}: a '{config.model_type}' model is not a codec this adapter knows ({SUPPORTED})")
        self.model_id, self.revision, self.model_type = model_id, revision or "", config.model_type
        self.model = AutoModel.from_pretrained(model_id, revision=revision or None, token=token, use_safetensors=True).eval()
        self.sample_rate = config.sampling_rate
        self.codebook_size = config.codebook_size
        if self.model_type == "encodec":
            if config.chunk_length_s:
                raise ValueError(f"{model_id}: chunked EnCodec models (48 kHz) are not supported")
            self.frame_rate = config.frame_rate
            self._bits_per_codebook = self.frame_rate * math.log2(self.codebook_size)
            self.max_codebooks = max(self._codebooks_at(bw) for bw in config.target_bandwidths)
        elif self.model_type == "dac":
            self.frame_rate = config.sampling_rate / config.hop_length
            self.max_codebooks = config.n_codebooks
        else:
            self.frame_rate = config.frame_rate
            self.max_codebooks = config.num_quantizers
        self.num_codebooks = num_codebooks or self.max_codebooks
        if not 1 <= self.num_codebooks <= self.max_codebooks:
            raise ValueError(f"{model_id}: has 1..{self.max_codebooks} codebooks, {self.num_codebooks} asked")

    def _codebooks_at(self, bandwidth: float) -> int:
        return int(max(1, math.floor(bandwidth * 1000 / self._bits_per_codebook)))

    def _bandwidth_for(self, k: int) -> float:
        for bw in sorted(self.model.config.target_bandwidths):
            if self._codebooks_at(bw) == k:
                return bw
        allowed = sorted(self._codebooks_at(bw) for bw in self.model.config.target_bandwidths)
        raise ValueError(f"{self.model_id}: EnCodec offers {allowed} codebooks (its bandwidths), not {k}")

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        k = self._check_codebooks(num_codebooks)
        x = wav.unsqueeze(1)  # [b, 1, n]
        if self.model_type == "encodec":
            out = self.model.encode(x, bandwidth=self._bandwidth_for(k))
            return out.audio_codes[0]  # [chunks=1, b, k, t] -> [b, k, t]
        if self.model_type == "dac":
            return self.model.encode(x, n_quantizers=k).audio_codes[:, :k]
        return self.model.encode(x, num_quantizers=k).audio_codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self._check_codes(codes)
        if self.model_type == "encodec":
            return self.model.decode(codes.unsqueeze(0), [None]).audio_values[:, 0]
        if self.model_type == "dac":
            return self.model.decode(audio_codes=codes).audio_values
        return self.model.decode(codes).audio_values[:, 0]

    def _write_kind(self, folder: Path) -> dict[str, Any]:
        """A Hub model is referenced (id and revision); a local one is copied into `pretrained/`
        (its config and safetensors), so that the saved codec works on another machine."""
        ref = {"model": self.model_id, "revision": self.revision, "model_type": self.model_type}
        if Path(self.model_id).is_dir():
            copy_model_files(Path(self.model_id), folder / BUNDLED)
            ref.update(model=BUNDLED, bundled=True)
        return ref

    @classmethod
    def _load_kind(cls, folder: Path, config: dict[str, Any], token: str | bool | None = None, **kwargs: Any) -> Codec:
        model = str(folder / BUNDLED) if config.get("bundled") else config["model"]
        return cls(model, config.get("revision") or None, config.get("num_codebooks"), token)
