"""Training our codec on the one trainer. Batches are random crops chosen from the step number and
seed alone, so a resumed run sees exactly the data an uninterrupted one would; with `augment` each
crop's voice is changed first (speed, formants, equalisation, band limits, noise), so the codec
learns voices beyond the corpus' few.

Losses: L1 of log magnitude and of log mel between the decoded and the true STFT (at the codec's
own STFT, so no waveform is rendered while training), and the quantizer's commitment; the pitch
code is measured, not learned. (The SEANet waveform codec this replaced, with its multi-scale STFT
discriminator, is in the git history and the README's stage-2 comparison.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from audiolm import augment
from audiolm.audio import mel_filters
from audiolm.codec.metrics import mel_distance, si_snr
from audiolm.codec.source_filter import SourceFilterCodec
from audiolm.config import CodecConfig
from audiolm.train.trainer import Update


class CodecTask:
    def __init__(self, codec: SourceFilterCodec, cfg: CodecConfig, train_wavs: list[np.ndarray],
                 heldout_wavs: list[np.ndarray], eval_clips: int = 16):
        self.cfg = cfg
        self.models = {"codec": codec}
        self.mel_bank = mel_filters(codec.sample_rate, codec.config.n_fft, 80)
        self.segment = int(cfg.segment_seconds * codec.sample_rate) // codec.hop_length * codec.hop_length
        self.train_wavs = train_wavs
        self.heldout = heldout_wavs[:eval_clips]
        self.sample_rate = codec.sample_rate

    # -- data ------------------------------------------------------------------------------
    def batch(self, step: int, micro: int) -> torch.Tensor:
        """[b, n] crops (the source-filter codec tracks their pitch itself, after augmentation)."""
        seed = self.cfg.train.seed * 1_000_003 + step * 101 + micro
        g = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        picks = torch.randint(len(self.train_wavs), (self.cfg.train.batch_size,), generator=g).tolist()
        out = torch.zeros(len(picks), self.segment)
        for row, i in enumerate(picks):
            wav = self.train_wavs[i]
            speed = augment.speed_factor(rng, self.cfg.augmentation) if self.cfg.augment else 1.0
            need = math.ceil(self.segment * speed)
            start = int(torch.randint(max(1, len(wav) - need + 1), (1,), generator=g))
            piece = wav[start : start + need]
            if self.cfg.augment:
                piece = augment.change_speed(piece, speed, min(self.segment, round(len(piece) / speed)))
                piece = augment.change_voice(piece, rng, self.sample_rate, self.cfg.augmentation)
            out[row, : len(piece)] = torch.from_numpy(np.ascontiguousarray(piece[: self.segment]))
        return out

    # -- losses ----------------------------------------------------------------------------
    def _log_mel(self, spectrum: torch.Tensor) -> torch.Tensor:
        return torch.log(spectrum.abs().pow(2).transpose(1, 2) @ self.mel_bank.to(spectrum.device) + 1e-5)

    def step(self, batch: torch.Tensor, step: int, update: Update) -> dict[str, float]:
        codec, cfg = self.models["codec"], self.cfg
        real = batch.to(next(codec.parameters()).device)
        seed = cfg.train.seed * 7919 + step
        out = codec(real, dropout_seed=seed, noise_seed=seed)
        target = out.target
        magnitude = (torch.log(out.spectrum.abs().clamp_min(1e-5)) - torch.log(target.abs().clamp_min(1e-5))).abs().mean()
        mel = (self._log_mel(out.spectrum) - self._log_mel(target)).abs().mean()
        loss = magnitude + mel + out.commitment_loss
        update("codec", loss)
        return {"magnitude": magnitude.item(), "mel": mel.item(), "commit": out.commitment_loss.item()}

    @staticmethod
    def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
        return getattr(model, "module", model)  # DistributedDataParallel wraps the model

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        codec = self._unwrap(self.models["codec"])
        codec.eval()
        mels, snrs = [], []
        for wav in self.heldout:
            x = torch.from_numpy(wav).unsqueeze(0).to(next(codec.parameters()).device)
            y = codec.decode(codec.encode(x))[0].cpu().numpy()[: len(wav)]
            mels.append(mel_distance(y, wav, self.sample_rate))
            snrs.append(si_snr(y, wav))
        return {"mel_distance": float(np.mean(mels)), "si_snr": float(np.mean(snrs))}
