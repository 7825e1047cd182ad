"""A source-filter codec that computes at the frame rate: harmonics by construction, filters learned.

    wav -> F0 (YIN, `audiolm.codec.pitch`) -> codebook 0: log F0 on a grid of 4-cent steps, 0 = unvoiced
    wav -> STFT (n_fft, stft_hop) -> log magnitude, `hop / stft_hop` STFT frames stacked per code frame
        -> ConvNeXt encoder -> latent [b, d, t] -> residual VQ -> codebooks 1 .. k-1
    codes -> F0 and latent -> ConvNeXt decoder -> per STFT frame a harmonic and a noise filter
        -> STFT(harmonics of F0) x harmonic filter + STFT(white noise) x noise filter
        -> inverse STFT -> wav

Why this shape (README, stage 2): a SEANet decoder must learn periodicity sample by sample and, in a
CPU budget of minutes, rendered none; a Vocos-style head that writes magnitude and phase per bin
learned the envelope but no harmonic lines either (a comb whose spacing moves with pitch is a hard
target for a per-frame layer), and neither did one that decoded F0 from the latent (2-4 semitones
off after 3 minutes). Here the comb comes from a sum of sinusoids at the coded F0 (NSF / DDSP), with
its phase, and the network learns only the smooth per-bin gains (the vocal tract and the noise). The
pitch is a code of its own, a scalar quantizer exact to 4 cents, so it needs no learning at all, and
the coarse LM sees the voice's pitch in its first codebook. No layer runs at the sample rate, so a
training step is cheap and sees much audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from audiolm.codec.base import Codec
from audiolm.codec.pitch import yin
from audiolm.codec.quantizer import ResidualQuantizer


@dataclass
class SourceFilterCodecConfig:
    sample_rate: int = 16000
    hop_length: int = 320  # samples per code frame (50 Hz at 16 kHz)
    stft_hop: int = 160  # the STFT's hop (10 ms, the pitch labels' frame); hop_length is a multiple of it
    n_fft: int = 640  # 40 ms windows: harmonics of voices above ~75 Hz fall in separate bins
    dim: int = 256
    ffn_dim: int = 768
    encoder_layers: int = 4
    decoder_layers: int = 6
    latent_dim: int = 128
    num_codebooks: int = 8
    codebook_size: int = 1024
    quantizer_dropout: bool = True
    commitment_weight: float = 1.0
    f0_min: float = 50.0  # the coded F0's range (Hz): codebook 0 splits it into `pitch_steps` log steps
    f0_max: float = 500.0
    # log-F0 steps of codebook 0 (ids 1..pitch_steps; 0 = codebook_size - 1, 4-cent steps at 1024).
    # Fewer, coarser steps are what lets a small coarse LM copy a prompt's pitch register: at 128
    # (31 cents) a 100-step coarse LM kept the voice in 21% of continuations instead of 4% (README)
    pitch_steps: int = 0

    @property
    def pitch_grid(self) -> int:
        return self.pitch_steps or self.codebook_size - 1

    @property
    def frames_per_code(self) -> int:
        return self.hop_length // self.stft_hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def check(self) -> None:
        if self.hop_length % self.stft_hop or self.n_fft < 2 * self.stft_hop:
            raise ValueError(f"codec: hop_length ({self.hop_length}) must be a multiple of stft_hop ({self.stft_hop}), "
                             f"and n_fft ({self.n_fft}) at least 2 x stft_hop")


@dataclass
class SpectralOutput:
    spectrum: torch.Tensor  # [b, f, frames] decoded complex STFT (frames = t * r)
    target: torch.Tensor  # [b, f, frames] the input's STFT, which the decoded one should match
    codes: torch.Tensor  # [b, k, t]: pitch, then the residual VQ's (-1 where quantizer dropout left a level out)
    commitment_loss: torch.Tensor


class ConvNeXtBlock(nn.Module):
    """Depthwise temporal convolution, then a per-frame MLP, added back (ConvNeXt, 1-D)."""

    def __init__(self, dim: int, ffn_dim: int, kernel: int = 7):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.scale = nn.Parameter(torch.full((dim,), 0.1))  # layer scale: each block starts near identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, d, t]
        y = self.norm(self.dwconv(x).transpose(1, 2))
        return x + (self.mlp(y) * self.scale).transpose(1, 2)


class Backbone(nn.Module):
    """[b, in, t] -> [b, t, out]: a pointwise projection, ConvNeXt blocks, a linear read-out."""

    def __init__(self, in_dim: int, dim: int, ffn_dim: int, layers: int, out_dim: int):
        super().__init__()
        self.embed = nn.Conv1d(in_dim, dim, 3, padding=1)
        self.norm_in = nn.LayerNorm(dim)
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, ffn_dim) for _ in range(layers)))
        self.norm_out = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(x).transpose(1, 2)).transpose(1, 2)
        return self.out(self.norm_out(self.blocks(x).transpose(1, 2)))


@torch.no_grad()
def harmonic_excitation(f0: torch.Tensor, voiced: torch.Tensor, hop: int, sample_rate: int) -> torch.Tensor:
    """A sum of unit sinusoids at every multiple of F0 below Nyquist, silent where unvoiced.
    f0, voiced [b, frames] at one frame per `hop` samples -> [b, frames * hop]. The phase is the
    running sum of the frequency, so pitch glides stay continuous; the K harmonics are summed in
    closed form, sin(K x / 2) sin((K + 1) x / 2) / sin(x / 2), instead of K sines per sample."""
    f0 = nn.functional.interpolate(f0[:, None].double(), scale_factor=hop, mode="linear", align_corners=False)[:, 0]
    gate = nn.functional.interpolate(voiced[:, None].float(), scale_factor=hop, mode="linear", align_corners=False)[:, 0]
    x = 2 * math.pi * torch.remainder(torch.cumsum(f0 / sample_rate, dim=-1), 1.0)  # phase of the fundamental
    count = torch.floor(sample_rate / 2 / f0.clamp_min(1.0))  # harmonics below Nyquist
    half = torch.sin(x / 2)
    total = torch.sin(count * x / 2) * torch.sin((count + 1) * x / 2) / torch.where(half.abs() < 1e-6, 1.0, half)
    return (torch.where(half.abs() < 1e-6, 0.0, total).float() * gate)


NOISE_BLOCK = 16384  # samples of noise drawn from one seed


def positional_noise(samples: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """White noise [samples] whose every sample depends on its position and `seed` only (blocks of
    NOISE_BLOCK, each from its own seed): the noise of a prefix is the start of a longer one's, so a
    stream that decodes ever longer prefixes renders what one decode of the whole renders. (The first
    n values of torch.randn(m) are not torch.randn(n).)"""
    blocks = [torch.randn(NOISE_BLOCK, generator=torch.Generator(device=device).manual_seed(seed * 1_000_003 + j),
                          device=device) for j in range(-(-samples // NOISE_BLOCK))]
    return torch.cat(blocks)[:samples] if blocks else torch.zeros(0, device=device)


class SourceFilterCodec(Codec):
    kind = "source-filter"
    config_class = SourceFilterCodecConfig

    def __init__(self, config: SourceFilterCodecConfig):
        super().__init__()
        config.check()
        if config.num_codebooks < 2:
            raise ValueError("codec: the source-filter codec needs at least 2 codebooks (pitch, then the spectrum)")
        if not 0 < config.pitch_grid < config.codebook_size:
            raise ValueError(f"codec: pitch_steps must be between 1 and codebook_size - 1 ({config.codebook_size - 1}), "
                             f"got {config.pitch_steps}")
        self.config = config
        r, bins = config.frames_per_code, config.bins
        self.encoder = Backbone(r * bins, config.dim, config.ffn_dim, config.encoder_layers, config.latent_dim)
        # per STFT frame: the harmonic and the noise filter (log gains per bin); the pitch is an input
        self.decoder = Backbone(config.latent_dim + 2, config.dim, config.ffn_dim, config.decoder_layers, r * 2 * bins)
        self.quantizer = ResidualQuantizer(config.latent_dim, config.num_codebooks - 1, config.codebook_size,
                                           config.quantizer_dropout, config.commitment_weight)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.sample_rate = config.sample_rate
        self.frame_rate = config.sample_rate / config.hop_length
        self.num_codebooks, self.codebook_size = config.num_codebooks, config.codebook_size

    def freeze_codes(self) -> SourceFilterCodec:
        """From here on only the decoder trains (fine-tuning, `codec.init_from`): the encoder and the
        codebooks, their EMA updates and dead-code resets included, stay as they are, so the codes of
        a corpus, and the LMs trained on them, keep their meaning."""
        self.codes_frozen = True
        self.encoder.requires_grad_(False)
        self.quantizer.requires_grad_(False)
        return self.train(self.training)

    def train(self, mode: bool = True) -> SourceFilterCodec:
        super().train(mode)
        if getattr(self, "codes_frozen", False):
            self.encoder.eval()
            self.quantizer.eval()
        return self

    @property
    def lookahead_frames(self) -> int:
        """The decoder's right context: its first convolution (kernel 3) and blocks (kernel 7) reach
        1 + 3 x layers code frames ahead, the STFT, its inverse and the pitch's interpolation 2 more."""
        return 1 + 3 * self.config.decoder_layers + 2

    # -- pitch: codebook 0 ---------------------------------------------------------------------
    def pitch(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [b, n] -> F0 [b, t * r] (Hz, 0 = unvoiced) on the STFT's frames (YIN, `audiolm.codec.pitch`)."""
        c = self.config
        wav = nn.functional.pad(wav.float(), (0, -wav.shape[-1] % c.hop_length))
        return yin(wav, c.sample_rate, c.stft_hop, c.f0_min, c.f0_max)[:, : wav.shape[-1] // c.stft_hop]

    def pitch_codes(self, f0: torch.Tensor) -> torch.Tensor:
        """F0 [b, t * r] -> [b, t]: 0 where no STFT frame of the code frame is voiced, else the log-F0
        step (1 .. codebook_size - 1) of the mean log F0 of its voiced frames."""
        c = self.config
        f0 = rearrange(f0, "b (t r) -> b t r", r=c.frames_per_code)
        voiced = f0 > 0
        count = voiced.sum(-1)
        log_f0 = (torch.log(f0.clamp_min(c.f0_min)) * voiced).sum(-1) / count.clamp_min(1)
        steps = c.pitch_grid
        position = (log_f0 - math.log(c.f0_min)) / math.log(c.f0_max / c.f0_min)
        code = (position * steps).floor().long().clamp(0, steps - 1) + 1
        return torch.where(count > 0, code, torch.zeros_like(code))

    def pitch_of(self, codes: torch.Tensor) -> torch.Tensor:
        """codebook 0 [b, t] -> F0 [b, t * r] (Hz, 0 = unvoiced), each step's centre."""
        c = self.config
        # looked up in a table of every id: computed over the codes themselves, the vectorised pow rounds
        # the last few of a row differently from the rest, so a streamed prefix's F0 was not the whole's
        # in the last bit, and the harmonics' running phase carried that into its audio (up to 2e-3)
        ids = torch.arange(c.codebook_size, device=codes.device, dtype=torch.float32)
        table = c.f0_min * (c.f0_max / c.f0_min) ** ((ids - 0.5) / c.pitch_grid)
        f0 = table[codes]
        return torch.where(codes > 0, f0, torch.zeros_like(f0)).repeat_interleave(c.frames_per_code, dim=-1)

    # -- the spectrum: codebooks 1 .. k-1 ------------------------------------------------------
    def stft(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [b, n] -> complex STFT [b, f, t * r], t = ceil(n / hop): one frame per `stft_hop`."""
        c = self.config
        wav = nn.functional.pad(wav.float(), (0, -wav.shape[-1] % c.hop_length))
        return self._stft(wav)[..., :-1]

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        # zero padding at the ends: reflection would need more samples than the pad (a one-frame clip)
        c = self.config
        return torch.stft(x, c.n_fft, c.stft_hop, window=self.window, return_complex=True, pad_mode="constant")

    def analyse(self, wav: torch.Tensor, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """wav [b, n] (or its `stft`, if already computed) -> latent [b, d, t] (the spectrum's; the
        pitch is coded apart)."""
        feats = torch.log((self.stft(wav) if spectrum is None else spectrum).abs().clamp_min(1e-5))
        return self.encoder(rearrange(feats, "b f (t r) -> b (r f) t", r=self.config.frames_per_code)).transpose(1, 2)

    # -- synthesis -------------------------------------------------------------------------
    def render(self, latent: torch.Tensor, f0: torch.Tensor, noise_seed: int | None) -> torch.Tensor:
        """latent [b, d, t] and F0 [b, t * r] -> the output spectrum [b, f, t * r]: the two
        excitations' STFTs through the decoded filters."""
        c = self.config
        voiced = (f0 > 0).float()
        log_f0 = torch.log(f0.clamp_min(1.0) / 100.0) * voiced
        pitch = rearrange(torch.stack([log_f0, voiced], 1), "b p (t r) -> b p t r", r=c.frames_per_code).mean(-1)
        gains = rearrange(self.decoder(torch.cat([latent, pitch], 1)).float(), "b t (r p) -> b p (t r)", r=c.frames_per_code)
        gain_h, gain_n = gains[:, : c.bins].clamp(-12.0, 6.0), gains[:, c.bins :].clamp(-12.0, 6.0)
        frames = f0.shape[-1]
        harmonics = harmonic_excitation(f0, voiced, c.stft_hop, c.sample_rate)
        if noise_seed is None:  # training: fresh noise per row
            noise = torch.randn(harmonics.shape, device=f0.device)
        else:  # decoding: one noise for every row, fixed by position (`positional_noise`)
            noise = positional_noise(harmonics.shape[-1], noise_seed, f0.device)[None]
        h, n = self._stft(harmonics)[..., :frames], self._stft(noise)[..., :frames]
        return h * torch.exp(gain_h) * 0.1 + n * torch.exp(gain_n) * 0.1

    def _inverse(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        c = self.config
        spectrum = nn.functional.pad(spectrum, (0, 1))  # the end frame dropped by `stft`, silent
        return torch.istft(spectrum, c.n_fft, c.stft_hop, window=self.window, length=length)

    def forward(self, wav: torch.Tensor, dropout_seed: int | None = None, noise_seed: int | None = None) -> SpectralOutput:
        """Training: the spectrum decoded from the quantized latent and the coded pitch, exactly as
        `decode` renders it (the pitch code needs no teacher forcing: it is the same here and there)."""
        pitch = self.pitch_codes(self.pitch(wav))
        target = self.stft(wav)
        quantized, codes, commit = self.quantizer(self.analyse(wav, target), dropout_seed)
        spectrum = self.render(quantized, self.pitch_of(pitch), noise_seed)
        return SpectralOutput(spectrum, target, torch.cat([pitch[:, None], codes], 1), commit)

    # -- the Codec interface -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """codes [b, k, t]: the pitch, then k - 1 levels of the spectrum's residual VQ."""
        k = self._check_codebooks(num_codebooks)
        pitch = self.pitch_codes(self.pitch(wav))[:, None]
        return torch.cat([pitch, self.quantizer.encode(self.analyse(wav), k - 1)], 1) if k > 1 else pitch

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, noise_seed: int = 0) -> torch.Tensor:
        """wav [b, t * hop]; with the pitch code alone (k = 1), the spectrum is the decoder's average
        (a zero latent). The noise is seeded: the same codes give the same audio."""
        self._check_codes(codes)
        b, k, t = codes.shape
        latent = (self.quantizer.decode(codes[:, 1:]) if k > 1 else
                  torch.zeros(b, self.config.latent_dim, t, device=codes.device))
        spectrum = self.render(latent, self.pitch_of(codes[:, 0]), noise_seed)
        return self._inverse(spectrum, t * self.config.hop_length)

