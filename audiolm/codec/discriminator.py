"""Multi-scale STFT discriminator (EnCodec's MS-STFT-D, small): one 2-D conv stack per STFT
resolution over [real, imaginary] channels; returns logits and feature maps per scale."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class STFTDiscriminator(nn.Module):
    def __init__(self, n_fft: int, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for d in dilations:  # time axis dilated, frequency axis strided
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.head = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3)  # [b, 2, frames, freq]
        maps = []
        for layer in self.layers:
            x = nn.functional.leaky_relu(layer(x), 0.2)
            maps.append(x)
        return self.head(x), maps


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (1024, 512, 256), channels: int = 32):
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(n, channels) for n in n_ffts)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outs = [d(wav) for d in self.scales]
        return [o[0] for o in outs], [o[1] for o in outs]
