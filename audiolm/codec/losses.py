"""Codec training losses, with documented fixed weights (DAC's: mel 15, adversarial 1, feature
matching 2, commitment as set on the quantizer) instead of a loss balancer.

- multi-resolution log-mel L1: windows 2^5..2^10 samples at 16 kHz (EnCodec/DAC style);
- hinge adversarial loss on a multi-scale STFT discriminator;
- feature matching: L1 between the discriminator's feature maps of real and decoded audio,
  each normalised by the mean magnitude of the real one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiolm.audio import mel_filters


class MultiResolutionMelLoss(nn.Module):
    def __init__(self, sample_rate: int, windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024), num_mels: int = 64):
        super().__init__()
        self.windows = windows
        for w in windows:
            self.register_buffer(f"mel_{w}", mel_filters(sample_rate, w, min(num_mels, w // 4)), persistent=False)
            self.register_buffer(f"window_{w}", torch.hann_window(w), persistent=False)

    def log_mel(self, wav: torch.Tensor, w: int) -> torch.Tensor:
        spec = torch.stft(wav.float(), n_fft=w, hop_length=w // 4, window=getattr(self, f"window_{w}"), return_complex=True)
        mel = spec.abs().pow(2).transpose(1, 2) @ getattr(self, f"mel_{w}")  # [b, frames, mels]
        return torch.log10(mel.clamp_min(1e-5))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return sum(F.l1_loss(self.log_mel(fake, w), self.log_mel(real, w)) for w in self.windows) / len(self.windows)


def discriminator_hinge_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    pairs = zip(real_logits, fake_logits, strict=True)
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in pairs) / len(real_logits)


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_maps: list[list[torch.Tensor]], fake_maps: list[list[torch.Tensor]]) -> torch.Tensor:
    total, count = 0.0, 0
    for real_scale, fake_scale in zip(real_maps, fake_maps, strict=True):
        for r, f in zip(real_scale, fake_scale, strict=True):
            total = total + F.l1_loss(f, r.detach()) / r.detach().abs().mean().clamp_min(1e-5)
            count += 1
    return total / count
