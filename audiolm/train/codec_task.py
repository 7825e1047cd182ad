"""Training our codec on the one trainer: reconstruction-only warm-up, then the multi-scale STFT
discriminator joins (hinge loss, feature matching). Batches are random crops chosen from the step
number and seed alone, so a resumed run sees exactly the data an uninterrupted one would."""

from __future__ import annotations

import numpy as np
import torch

from audiolm.codec.discriminator import MultiScaleSTFTDiscriminator
from audiolm.codec.losses import (
    MultiResolutionMelLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from audiolm.codec.metrics import mel_distance, si_snr
from audiolm.codec.model import SEANetCodec
from audiolm.config import CodecConfig
from audiolm.train.trainer import Update


class CodecTask:
    def __init__(self, codec: SEANetCodec, cfg: CodecConfig, train_wavs: list[np.ndarray],
                 heldout_wavs: list[np.ndarray], eval_clips: int = 16):
        self.cfg = cfg
        self.models = {"codec": codec, "discriminator": MultiScaleSTFTDiscriminator()}
        self.mel = MultiResolutionMelLoss(codec.sample_rate)
        self.segment = int(cfg.segment_seconds * codec.sample_rate)
        self.train_wavs = train_wavs
        self.heldout = heldout_wavs[:eval_clips]
        self.sample_rate = codec.sample_rate

    def batch(self, step: int, micro: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + step * 101 + micro)
        picks = torch.randint(len(self.train_wavs), (self.cfg.train.batch_size,), generator=g).tolist()
        out = torch.zeros(len(picks), self.segment)
        for row, i in enumerate(picks):
            wav = torch.from_numpy(self.train_wavs[i])
            start = int(torch.randint(max(1, len(wav) - self.segment + 1), (1,), generator=g))
            piece = wav[start : start + self.segment]
            out[row, : len(piece)] = piece
        return out

    def step(self, batch: torch.Tensor, step: int, update: Update) -> dict[str, float]:
        codec, disc, cfg = self.models["codec"], self.models["discriminator"], self.cfg
        device = next(codec.parameters()).device
        real = batch.to(device)
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
        codec = self.models["codec"]
        codec.eval()
        mels, snrs = [], []
        for wav in self.heldout:
            x = torch.from_numpy(wav).unsqueeze(0).to(next(codec.parameters()).device)
            y = codec.decode(codec.encode(x))[0].cpu().numpy()[: len(wav)]
            mels.append(mel_distance(y, wav, self.sample_rate))
            snrs.append(si_snr(y, wav))
        return {"mel_distance": float(np.mean(mels)), "si_snr": float(np.mean(snrs))}
