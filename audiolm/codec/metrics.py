"""Codec quality metrics on waveforms at one rate: SI-SNR, multi-resolution mel distance, and
(where the packages are installed) wide-band PESQ and STOI, which expect 16 kHz audio."""

from __future__ import annotations

import numpy as np
import torch

from audiolm.codec.losses import MultiResolutionMelLoss

_mel_cache: dict[int, MultiResolutionMelLoss] = {}


def si_snr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-noise ratio in dB (higher is better)."""
    n = min(len(estimate), len(reference))
    est, ref = estimate[:n] - estimate[:n].mean(), reference[:n] - reference[:n].mean()
    target = (est @ ref) / max(ref @ ref, 1e-12) * ref
    noise = est - target
    return float(10 * np.log10(max(target @ target, 1e-12) / max(noise @ noise, 1e-12)))


def mel_distance(estimate: np.ndarray, reference: np.ndarray, sample_rate: int) -> float:
    """Mean L1 distance of log10 mel spectrograms over six resolutions (lower is better)."""
    if sample_rate not in _mel_cache:
        _mel_cache[sample_rate] = MultiResolutionMelLoss(sample_rate)
    n = min(len(estimate), len(reference))
    with torch.no_grad():
        return float(_mel_cache[sample_rate](torch.from_numpy(estimate[:n]).unsqueeze(0),
                                             torch.from_numpy(reference[:n]).unsqueeze(0)))


def pesq_wb(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """Wide-band PESQ (MOS-LQO, 1.0-4.64) of 16 kHz audio; None if `pesq` is missing or fails."""
    try:
        from pesq import pesq
    except ImportError:
        return None
    n = min(len(estimate), len(reference))
    try:
        return float(pesq(16000, reference[:n].astype(np.float64), estimate[:n].astype(np.float64), "wb"))
    except Exception:  # pesq raises on silent or too-short clips
        return None


def stoi(estimate: np.ndarray, reference: np.ndarray) -> float | None:
    """Short-time objective intelligibility (0-1) of 16 kHz audio; None if `pystoi` is missing."""
    try:
        from pystoi import stoi as _stoi
    except ImportError:
        return None
    n = min(len(estimate), len(reference))
    return float(_stoi(reference[:n], estimate[:n], 16000, extended=False))
