"""The one codec interface: every acoustic tokenizer, ours or pretrained, looks like this.

    codes = codec.encode(wav)     # wav [b, n] float at codec.sample_rate -> codes [b, k, t] int64
    wav = codec.decode(codes)     # codes [b, k, t] -> wav [b, n]

`k` is at most `num_codebooks`; `encode(wav, num_codebooks=j)` keeps the first j (lower bitrate).
A saved codec (`save_pretrained`, `push_to_hub`: see `audiolm.hub`) is a folder whose `config.json`
names its `kind` and the interface's numbers (rates, codebooks); `Codec.from_pretrained` reads any
of ours, and `audiolm.codec.load_codec` also a transformers codec folder or Hub id.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiolm.devices import module_device
from audiolm.hub import WEIGHTS_NAME, HubMixin, config_from, weights_file


class Codec(nn.Module, HubMixin):
    component = "codec"
    card_title = "neural audio codec (waveform <-> residual-VQ codes)"
    kinds: dict[str, type[Codec]] = {}  # config.json's `kind` -> the class that loads it
    kind: str
    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Codec.kinds[cls.kind] = cls

    def _write(self, folder: Path) -> dict[str, Any]:
        """The interface's numbers go into every codec's config.json: a bundle checks them against
        the language models' without loading any weights."""
        return {"kind": self.kind, "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
                "num_codebooks": self.num_codebooks, "codebook_size": self.codebook_size, **self._write_kind(folder)}

    config_class: type | None = None  # our trained codecs: the dataclass of `self.config`

    def _write_kind(self, folder: Path) -> dict[str, Any]:
        """A codec of ours: its weights (safetensors) and its architecture dataclass."""
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_NAME))
        return {"model": dataclasses.asdict(self.config)}

    @classmethod
    def _load(cls, folder: Path, config: dict[str, Any], **kwargs: Any) -> Codec:
        from audiolm.codec import pretrained, source_filter  # noqa: F401  (they register their kinds)

        kind = Codec.kinds.get(config.get("kind"))
        if kind is None:
            raise ValueError(f"{folder}: unknown codec kind {config.get('kind')!r} (known: {', '.join(Codec.kinds)})")
        return kind._load_kind(folder, config, **kwargs)

    @classmethod
    def _load_kind(cls, folder: Path, config: dict[str, Any], **kwargs: Any) -> Codec:
        model = cls(config_from(cls.config_class, config["model"]))
        model.load_state_dict(load_file(weights_file(folder)))
        return model.eval()

    @property
    def device(self) -> torch.device:
        return module_device(self)

    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def lookahead_frames(self) -> int:
        """Frames at the end of a decoded prefix that may still change once more codes follow (a
        non-causal decoder's right context): a stream gives out audio this far behind its codes.
        Half a second where a codec does not know its own."""
        return math.ceil(0.5 * self.frame_rate)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate / self.frame_rate)

    def _chunks(self, frames: int, chunk_seconds: float, margin_seconds: float):
        """(keep_from, keep_to, read_from, read_to) in frames: chunks with context on either side."""
        chunk, margin = max(1, round(chunk_seconds * self.frame_rate)), round(margin_seconds * self.frame_rate)
        for f0 in range(0, frames, chunk):
            f1 = min(frames, f0 + chunk)
            yield f0, f1, max(0, f0 - margin), min(frames, f1 + margin)

    @torch.inference_mode()
    def encode_long(self, wav: torch.Tensor, num_codebooks: int | None = None, chunk_seconds: float = 30.0,
                    margin_seconds: float = 1.0) -> torch.Tensor:
        """`encode` for audio of any length, on any device (the codes are on the codec's), in bounded
        memory (a 30-minute file would need GBs of activations at once): chunks encoded with
        `margin_seconds` of context on either side, whose codes are dropped. Away from the joins the
        codes are `encode`'s; a recurrent codec (an LSTM in the encoder) differs a little within about
        a margin of each join."""
        frames, hop = self.num_frames(wav.shape[-1]), self.hop_length
        wav = wav.to(self.device)
        parts = [self.encode(wav[..., a * hop : b * hop], num_codebooks)[..., f0 - a : f1 - a]
                 for f0, f1, a, b in self._chunks(frames, chunk_seconds, margin_seconds)]
        return torch.cat(parts, dim=-1)

    @torch.inference_mode()
    def decode_long(self, codes: torch.Tensor, chunk_seconds: float = 30.0, margin_seconds: float = 1.0) -> torch.Tensor:
        """`decode` for any number of frames in bounded memory, the same way as `encode_long`."""
        hop, codes = self.hop_length, codes.to(self.device)
        parts = [self.decode(codes[..., a:b])[..., (f0 - a) * hop : (f1 - a) * hop]
                 for f0, f1, a, b in self._chunks(codes.shape[-1], chunk_seconds, margin_seconds)]
        return torch.cat(parts, dim=-1)

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
