"""Training our codecs on the one trainer. Batches are random crops chosen from the step number and
seed alone, so a resumed run sees exactly the data an uninterrupted one would; with `augment` each
crop's voice is changed first (speed, formants, equalisation, band limits, noise), so the codec
learns voices beyond the corpus' few.

- SEANet: multi-resolution mel loss, then (after `adversarial_start_step`) the multi-scale STFT
  discriminator joins (hinge loss, feature matching).
- source-filter: L1 of log magnitude and of log mel between the decoded and the true STFT (at the
  codec's own STFT, so no waveform is rendered while training); its pitch code is not learned.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from audiolm.audio import mel_filters
from audiolm.codec.discriminator import MultiScaleSTFTDiscriminator
from audiolm.codec.losses import (
    MultiResolutionMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from audiolm.codec.metrics import mel_distance, si_snr
from audiolm.codec.model import SEANetCodec
from audiolm.codec.source_filter import SourceFilterCodec
from audiolm.config import CodecConfig
from audiolm.semantic import augment
from audiolm.train.trainer import Update


class CodecTask:
    def __init__(self, codec: SEANetCodec | SourceFilterCodec, cfg: CodecConfig, train_wavs: list[np.ndarray],
                 heldout_wavs: list[np.ndarray], eval_clips: int = 16):
        self.cfg = cfg
        self.spectral = isinstance(codec, SourceFilterCodec)
        self.models = {"codec": codec} if self.spectral else {"codec": codec, "discriminator": MultiScaleSTFTDiscriminator()}
        if self.spectral:
            self.mel_bank = mel_filters(codec.sample_rate, codec.config.n_fft, 80)
        else:
            self.mel = MultiResolutionMelLoss(codec.sample_rate)
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
            speed = augment.speed_factor(rng) if self.cfg.augment else 1.0
            need = math.ceil(self.segment * speed)
            start = int(torch.randint(max(1, len(wav) - need + 1), (1,), generator=g))
            piece = wav[start : start + need]
            if self.cfg.augment:
                piece = augment.change_speed(piece, speed, min(self.segment, round(len(piece) / speed)))
                piece = augment.colour(augment.shift_formants(piece, augment.formant_factor(rng)), rng, self.sample_rate)
            out[row, : len(piece)] = torch.from_numpy(np.ascontiguousarray(piece[: self.segment]))
        return out

    # -- losses ----------------------------------------------------------------------------
    def step(self, batch: torch.Tensor, step: int, update: Update) -> dict[str, float]:
        return self._spectral_step(batch, step, update) if self.spectral else self._waveform_step(batch, step, update)

    def _log_mel(self, spectrum: torch.Tensor) -> torch.Tensor:
        return torch.log(spectrum.abs().pow(2).transpose(1, 2) @ self.mel_bank.to(spectrum.device) + 1e-5)

    def _spectral_step(self, batch: torch.Tensor, step: int, update: Update) -> dict[str, float]:
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

    def _waveform_step(self, batch: torch.Tensor, step: int, update: Update) -> dict[str, float]:
        codec, disc, cfg = self.models["codec"], self.models["discriminator"], self.cfg
        real = batch.to(next(codec.parameters()).device)
        out = codec(real, dropout_seed=cfg.train.seed * 7919 + step)
        mel = self.mel(out.wav, real)
        loss = cfg.mel_weight * mel + out.commitment_loss
        logs = {"mel": mel.item(), "commit": out.commitment_loss.item()}
        if step >= cfg.adversarial_start_step:
            real_logits, _ = disc(real)
            fake_logits, _ = disc(out.wav.detach())
            d_loss = discriminator_hinge_loss(real_logits, fake_logits)
            update("discriminator", d_loss)
            disc.requires_grad_(False)  # the generator's losses must not leave gradients in the discriminator
            fake_logits, fake_maps = disc(out.wav)
            with torch.no_grad():
                _, real_maps = disc(real)
            disc.requires_grad_(True)
            adv, feat = generator_adversarial_loss(fake_logits), feature_matching_loss(real_maps, fake_maps)
            loss = loss + cfg.adversarial_weight * adv + cfg.feature_weight * feat
            logs.update(disc=d_loss.item(), adv=adv.item(), feat=feat.item())
        update("codec", loss)
        return logs

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
