"""Our codec: SEANet encoder/decoder (transformers' EnCodec modules, configured for any rate and
strides) around a residual vector quantizer. Trained in stage 2; saved as `config.json` +
`model.safetensors`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import EncodecConfig
from transformers.models.encodec.modeling_encodec import EncodecDecoder, EncodecEncoder

from audiolm.codec.base import Codec
from audiolm.codec.quantizer import ResidualQuantizer


@dataclass
class SEANetCodecConfig:
    sample_rate: int = 16000
    strides: list[int] = field(default_factory=lambda: [2, 4, 5, 8])
    num_filters: int = 32
    latent_dim: int = 128
    lstm_layers: int = 2
    residual_layers: int = 1
    causal: bool = True
    num_codebooks: int = 8
    codebook_size: int = 1024
    quantizer_dropout: bool = True
    commitment_weight: float = 1.0

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)


@dataclass
class CodecOutput:
    wav: torch.Tensor  # [b, n] reconstruction
    codes: torch.Tensor  # [b, k, t]
    commitment_loss: torch.Tensor


class SEANetCodec(Codec):
    kind = "seanet"
    config_class = SEANetCodecConfig

    def __init__(self, config: SEANetCodecConfig):
        super().__init__()
        self.config = config
        seanet = EncodecConfig(
            sampling_rate=config.sample_rate, audio_channels=1, num_filters=config.num_filters,
            hidden_size=config.latent_dim, upsampling_ratios=list(reversed(config.strides)),
            num_lstm_layers=config.lstm_layers, codebook_size=config.codebook_size,
            num_residual_layers=config.residual_layers, use_causal_conv=config.causal,
        )
        self.encoder = EncodecEncoder(seanet)
        self.decoder = EncodecDecoder(seanet)
        self.quantizer = ResidualQuantizer(config.latent_dim, config.num_codebooks, config.codebook_size,
                                           config.quantizer_dropout, config.commitment_weight)
        self.sample_rate = config.sample_rate
        self.frame_rate = config.sample_rate / config.hop_length
        self.num_codebooks, self.codebook_size = config.num_codebooks, config.codebook_size

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        """[b, n] -> [b, 1, n'] with n' a multiple of the hop, so frames and samples line up."""
        extra = -wav.shape[-1] % self.config.hop_length
        return torch.nn.functional.pad(wav, (0, extra)).unsqueeze(1)

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [b, n] -> latent [b, d, t], before quantization."""
        return self.encoder(self._pad(wav))

    def forward(self, wav: torch.Tensor, dropout_seed: int | None = None) -> CodecOutput:
        z = self.analyse(wav)
        quantized, codes, commit = self.quantizer(z, dropout_seed)
        out = self.decoder(quantized)[:, 0, : wav.shape[-1]]
        return CodecOutput(out, codes, commit)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        k = self._check_codebooks(num_codebooks)
        return self.quantizer.encode(self.analyse(wav), k)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self._check_codes(codes)
        return self.decoder(self.quantizer.decode(codes))[:, 0]

