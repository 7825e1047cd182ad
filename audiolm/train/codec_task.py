"""Training our codec on the one trainer. Row r of a step's batch is a random crop chosen from (seed,
step, micro-batch, r) alone, so a resumed run sees exactly the data an uninterrupted one would, and
under `accelerate launch` each process reads and augments only its own rows of the same global batch;
with `augment` each crop's voice is changed first (speed, formants, equalisation, band limits, noise),
so the codec learns voices beyond the corpus' few.

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

    def crop(self, step: int, micro: int, row: int) -> np.ndarray:
        """Row `row` of the global batch of (step, micro-batch): a crop of `segment` samples (zero-padded
        where the utterance is shorter), voice-changed with `augment`."""
        rng = np.random.default_rng([self.cfg.train.seed, step, micro, row])
        wav = self.train_wavs[int(rng.integers(len(self.train_wavs)))]  # read from disk, for a corpus read lazily
        speed = augment.speed_factor(rng, self.cfg.augmentation) if self.cfg.augment else 1.0
        need = math.ceil(self.segment * speed)
        start = int(rng.integers(max(1, len(wav) - need + 1)))
        piece = wav[start : start + need]
        if self.cfg.augment:
            piece = augment.change_speed(piece, speed, min(self.segment, round(len(piece) / speed)))
            piece = augment.change_voice(piece, rng, self.sample_rate, self.cfg.augmentation)
        out = np.zeros(self.segment, dtype=np.float32)
        out[: min(len(piece), self.segment)] = piece[: self.segment]
        return out

    def batch(self, step: int, micro: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        """[b / world, n]: rows rank, rank + world, ... of the global batch (the source-filter codec
        tracks their pitch itself, after augmentation)."""
        return torch.from_numpy(np.stack([self.crop(step, micro, row) for row in range(rank, self.cfg.train.batch_size, world)]))

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
