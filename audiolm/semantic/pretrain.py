"""A speech encoder trained from scratch: a small transformers `HubertModel` and its two objectives.

The encoder is HuBERT's architecture at a fraction of its size: a 7-layer convolutional front end
on the raw 16 kHz waveform with HuBERT's kernels and strides (receptive field 400 samples, hop
320: frame i covers samples [320 i, 320 i + 400), the grid of every semantic backend here), then
a Transformer. It is saved with `save_pretrained` next to a `Wav2Vec2FeatureExtractor` config,
so it loads through `AutoModel.from_pretrained` exactly like a Hub HuBERT (`backend: ssl`).

Objectives (the model `MaskedPredictor` serves both):
- "hubert": spans of the projected front-end frames are replaced by a learned mask embedding and
  the Transformer predicts the k-means target of each masked frame (loss on masked frames only,
  HuBERT's best setting). Iteration 1 takes MFCC k-means targets; iteration 2 k-means of a block
  of the iteration-1 model.
- "phones": every frame predicts its phone label (frame-wise cross-entropy against forced-alignment
  labels, which the demo corpus has for free from eSpeak NG); masking is still applied, so the
  model learns to use context.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiolm.config import EncoderConfig

KERNELS = (10, 3, 3, 3, 3, 2, 2)
STRIDES = (5, 2, 2, 2, 2, 2, 2)
IGNORE = -100  # target id of frames without a label (padding, unknown phones)


def hubert_config(cfg: EncoderConfig):
    from transformers import HubertConfig

    return HubertConfig(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
        intermediate_size=cfg.ffn_dim, conv_dim=(cfg.conv_dim,) * len(KERNELS), conv_kernel=KERNELS,
        conv_stride=STRIDES, conv_bias=True,
        # Layer norm in every front-end layer and pre-norm blocks: insensitive to padding in a batch
        # (a group-norm front end is not), and pre-norm trains a small model from scratch stably.
        feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=64, num_conv_pos_embedding_groups=16,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0,  # dropping blocks leaves parameters unused, which hangs multi-GPU training
        # > 0 so that the model has its mask embedding; the masks themselves are always passed in
        # (`span_mask`), so transformers never draws one with this probability.
        apply_spec_augment=True, mask_time_prob=0.05,
    )


def new_encoder(cfg: EncoderConfig):
    from transformers import HubertModel

    return HubertModel(hubert_config(cfg))


def feature_extractor(sample_rate: int = 16000):
    """What `AutoFeatureExtractor.from_pretrained` gives back for a saved encoder: per-utterance
    zero-mean unit-variance waveforms, with an attention mask for padded batches."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sample_rate, padding_value=0.0,
                                    do_normalize=True, return_attention_mask=True)


def num_frames(num_samples: int) -> int:
    """Frames the front end gives for `num_samples` (HuBERT's conv arithmetic)."""
    for kernel, stride in zip(KERNELS, STRIDES, strict=True):
        num_samples = max(0, (num_samples - kernel) // stride + 1)
    return num_samples


def samples_for(frames: int) -> int:
    """The fewest samples that give `frames` frames: (frames - 1) hops plus one 400-sample window."""
    return 320 * (frames - 1) + 400


def span_mask(rng: np.random.Generator, batch: int, frames: int, prob: float, length: int) -> np.ndarray:
    """HuBERT/wav2vec 2.0 masking: each frame starts a span of `length` masked frames with
    probability prob / length, so `prob` is the masked share before spans overlap (0.65 with
    spans of 10 masks about half the frames); at least one span per row. Bool [batch, frames]."""
    mask = np.zeros((batch, frames), dtype=bool)
    if prob <= 0 or frames == 0:
        return mask
    length = min(length, frames)
    starts = rng.random((batch, frames - length + 1)) < prob / length
    for row in range(batch):
        first = np.flatnonzero(starts[row])
        if first.size == 0:
            first = rng.integers(0, frames - length + 1, 1)
        for s in first:
            mask[row, s : s + length] = True
    return mask


class MaskedPredictor(nn.Module):
    """The encoder plus a linear classifier over targets (k-means ids or phones)."""

    def __init__(self, encoder: nn.Module, num_targets: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_targets)

    def forward(self, wavs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                unmasked_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs [b, n] (normalised), targets [b, t] (IGNORE where unlabelled), mask [b, t] bool.
        Loss: mean cross-entropy over masked frames + `unmasked_weight` x that over the others
        (HuBERT's alpha = 1 / (1 + unmasked_weight)). Returns (loss, accuracy on masked frames,
        or on all frames when nothing is masked)."""
        hidden = self.encoder(wavs, mask_time_indices=mask).last_hidden_state  # [b, t, d]
        if hidden.shape[1] != targets.shape[1]:
            raise ValueError(f"{hidden.shape[1]} encoder frames but {targets.shape[1]} targets")
        labelled = targets != IGNORE
        scored = labelled & mask if mask.any() else labelled
        others = labelled & ~scored
        logits = self.head(hidden[scored]).float()
        labels = targets[scored]
        loss = F.cross_entropy(logits, labels) if labels.numel() else hidden.sum() * 0.0
        if unmasked_weight and others.any():
            loss = loss + unmasked_weight * F.cross_entropy(self.head(hidden[others]).float(), targets[others])
        accuracy = (logits.argmax(-1) == labels).float().mean() if labels.numel() else loss.detach()
        return loss, accuracy.detach()


def with_classifier(predictor: MaskedPredictor, labels: list[str]):
    """The trained encoder and its head as a transformers `HubertForCTC`: the class Hub phone
    recognizers use, whose `logits` are this head's (`lm_head` on the last block's normalised
    output). `AutoModel` still loads the bare encoder from it, `AutoModelForCTC` the classifier;
    the labels go into the config's id2label."""
    import copy

    from transformers import HubertForCTC

    if predictor.head.out_features != len(labels):
        raise ValueError(f"{len(labels)} labels for a head of {predictor.head.out_features} classes")
    config = copy.deepcopy(predictor.encoder.config)
    config.vocab_size = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    model = HubertForCTC(config)
    model.hubert.load_state_dict(predictor.encoder.state_dict())
    model.lm_head.load_state_dict(predictor.head.state_dict())
    return model.eval()


def normalize(wavs: torch.Tensor) -> torch.Tensor:
    """The feature extractor's per-utterance normalisation, on a batch of equal-length crops."""
    return (wavs - wavs.mean(-1, keepdim=True)) / torch.sqrt(wavs.var(-1, keepdim=True, correction=0) + 1e-7)
