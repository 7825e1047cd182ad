"""Frame features for semantic tokens: a transformers speech encoder, or a spectral front end.

Both produce 50 Hz frames at 16 kHz on the same grid as HuBERT/WavLM (25 ms window, 20 ms hop,
no padding: frame i covers samples [320 i, 320 i + 400)), so the tokens of either backend line
up in time with each other and with a 50 Hz codec.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from audiolm.audio import mel_filters
from audiolm.devices import resolve_device


class FrameFeatures(Protocol):
    """wavs (float32 mono at `sample_rate`) -> one [t, dim] float32 tensor each."""

    sample_rate: int
    frame_rate: float
    dim: int

    def __call__(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]: ...


def num_frames(num_samples: int, sample_rate: int) -> int:
    """Frames of the 25 ms / 20 ms grid (HuBERT's conv stack gives the same count at 16 kHz)."""
    win, hop = round(0.025 * sample_rate), round(0.020 * sample_rate)
    return max(0, (num_samples - win) // hop + 1)


class SpectralFeatures:
    """Log-mel (80 bands) or MFCC (13 cepstra + deltas + delta-deltas = 39, HuBERT's iteration-1
    input), each frame stacked with `context` neighbours on either side. No download, so the
    offline demo works. A single spectral frame carries voice as much as content; the context
    window (+-80 ms at 4) lets k-means see the phone-sized movement instead, which more than
    halves the distance between two voices reading the same sentence (see the README)."""

    def __init__(self, kind: str = "mfcc", sample_rate: int = 16000, context: int = 4, num_mels: int = 80,
                 num_ceps: int = 13):
        if kind not in ("mfcc", "logmel"):
            raise ValueError(f"unknown spectral feature kind '{kind}' (use 'mfcc' or 'logmel')")
        self.kind, self.sample_rate = kind, sample_rate
        self.win, self.hop = round(0.025 * sample_rate), round(0.020 * sample_rate)
        self.n_fft = 2 ** math.ceil(math.log2(self.win))
        self.frame_rate = sample_rate / self.hop
        self.fbank = mel_filters(sample_rate, self.n_fft, num_mels)  # [freq, mels]
        self.window = torch.hann_window(self.win)
        # Orthonormal DCT-II rows 0..num_ceps-1: cepstra from log-mel energies.
        n = torch.arange(num_mels).float()
        dct = torch.cos(math.pi / num_mels * (n + 0.5).unsqueeze(0) * torch.arange(num_ceps).float().unsqueeze(1))
        dct[0] *= 1 / math.sqrt(2)
        self.dct = dct * math.sqrt(2 / num_mels)  # [ceps, mels]
        self.context = context
        self.dim = (3 * num_ceps if kind == "mfcc" else num_mels) * (2 * context + 1)

    def _one(self, wav: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        t = num_frames(x.shape[0], self.sample_rate)
        if t == 0:
            return torch.zeros(0, self.dim)
        frames = x[: (t - 1) * self.hop + self.win].unfold(0, self.win, self.hop) * self.window  # [t, win]
        power = torch.fft.rfft(frames, n=self.n_fft).abs().pow(2)  # [t, freq]
        feats = torch.log(power @ self.fbank + 1e-6)  # [t, mels]
        if self.kind == "mfcc":
            ceps = feats @ self.dct.T  # [t, ceps]
            d1 = _deltas(ceps)
            feats = torch.cat([ceps, d1, _deltas(d1)], dim=-1)
        return _stack_context(feats, self.context)

    def __call__(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        return [self._one(w) for w in wavs]


def _stack_context(x: torch.Tensor, context: int) -> torch.Tensor:
    """[t, d] -> [t, (2 context + 1) d]: each frame with its neighbours, edges repeated."""
    if context == 0 or x.shape[0] == 0:
        return x
    padded = F.pad(x.T.unsqueeze(0), (context, context), mode="replicate").squeeze(0).T  # [t + 2c, d]
    return torch.cat([padded[i : i + x.shape[0]] for i in range(2 * context + 1)], dim=-1)


def _deltas(x: torch.Tensor, width: int = 2) -> torch.Tensor:
    """HTK regression deltas over +-width frames, edges repeated: [t, d] -> [t, d]."""
    if x.shape[0] == 0:
        return x
    taps = torch.arange(-width, width + 1, dtype=x.dtype)
    kernel = (taps / (2 * (taps[width + 1 :] ** 2).sum())).view(1, 1, -1)
    padded = F.pad(x.T.unsqueeze(1), (width, width), mode="replicate")  # [d, 1, t + 2w]
    return F.conv1d(padded, kernel.flip(-1)).squeeze(1).T


def _has_classifier(config) -> bool:
    """Saved as a `...ForCTC` model: an encoder with a frame classifier on top."""
    return "ForCTC" in "".join(config.architectures or [])


class EncoderFeatures:
    """Hidden states of one transformer block of a `transformers` speech encoder.

    `model` is a Hub id or a local folder; both go through the same `from_pretrained` call.
    Weights are loaded from safetensors only, and no remote code is run. Blocks after `layer`
    are dropped, since they would be computed and thrown away.
    """

    def __init__(self, model: str, layer: int, device: str = "cpu", sample_rate: int = 16000, revision: str = "",
                 precision: str = "fp32"):
        from transformers import AutoConfig, AutoFeatureExtractor, Wav2Vec2FeatureExtractor

        revision = revision or None
        config = AutoConfig.from_pretrained(model, revision=revision)
        self.name = model
        device = resolve_device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"semantic.precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.model = self._load(model, config, revision).eval().to(device)
        try:
            self.processor = AutoFeatureExtractor.from_pretrained(model, revision=revision)
        except OSError:  # a bare model folder: the wav2vec2-family defaults
            self.processor = Wav2Vec2FeatureExtractor(sampling_rate=sample_rate, do_normalize=True, return_attention_mask=True)
        self.device, self.sample_rate = device, self.processor.sampling_rate
        if self.sample_rate != sample_rate:
            raise ValueError(f"{model}: expects {self.sample_rate} Hz audio, the pipeline gives {sample_rate} Hz")
        if hasattr(config, "conv_stride"):
            self.frame_rate = self.sample_rate / math.prod(config.conv_stride)
        elif config.model_type == "whisper":  # 100 Hz log-mel; the encoder's second convolution has stride 2
            self.frame_rate = self.sample_rate / (2 * self.processor.hop_length)
        else:  # w2v-BERT: 100 Hz filterbanks stacked by the processor's stride
            self.frame_rate = 100.0 / getattr(self.processor, "stride", 1)
        self.dim = self._select(layer, config)

    @staticmethod
    def _load(model: str, config, revision: str | None):
        from transformers import AutoModel, AutoModelForCTC

        if _has_classifier(config):  # the encoder under its classifier, loaded
            # as saved (AutoModel would load it too, reporting the classifier's weights as unexpected)
            return AutoModelForCTC.from_pretrained(model, config=config, revision=revision, use_safetensors=True).base_model
        return AutoModel.from_pretrained(model, config=config, revision=revision, use_safetensors=True)

    def _stack(self) -> torch.nn.Module:
        """The module whose `layers` are the Transformer blocks."""
        return self.model.encoder

    def _select(self, layer: int, config) -> int:
        """Keep blocks 1..layer and capture the last one's output; returns the feature width."""
        blocks = self._stack().layers
        if not 1 <= layer <= len(blocks):
            raise ValueError(f"{self.name}: layer {layer} does not exist (the encoder has blocks 1..{len(blocks)})")
        self._stack().layers = blocks[:layer]
        self._captured: torch.Tensor | None = None
        blocks[layer - 1].register_forward_hook(self._capture)
        return config.hidden_size

    def _capture(self, module, args, output) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    def _frames(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.model(**inputs)
        return self._captured

    @property
    def pads_safely(self) -> bool:
        """Whether a padded batch gives each utterance the frames it gets alone: a front end that
        normalizes each frame on its own (layer norm) and an encoder that takes an attention mask.
        HuBERT-base and WavLM-base(-plus) have a group-norm front end, which normalizes every channel
        over the whole (padded) input, and no mask: padding changes every frame's features (fairseq
        dumps their features one utterance at a time for this reason)."""
        config = self.model.config
        return getattr(config, "feat_extract_norm", "layer") != "group"

    def _inputs(self, wavs: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """The processor's inputs of each wav computed alone (its per-utterance normalization sees that
        utterance only), then padded on the right into one batch, with the mask."""
        parts = [self.processor(np.asarray(w, dtype=np.float32), sampling_rate=self.sample_rate, return_tensors="pt")
                 for w in wavs]
        key = "input_values" if "input_values" in parts[0] else "input_features"
        longest = max(p[key].shape[1] for p in parts)
        batch = {}
        for name in parts[0].keys():
            pad = 0 if name == "attention_mask" else getattr(self.processor, "padding_value", 0.0)
            first = parts[0][name]
            batch[name] = torch.full((len(parts), longest, *first.shape[2:]), pad, dtype=first.dtype)
            for i, p in enumerate(parts):
                batch[name][i, : p[name].shape[1]] = p[name][0]
        if "attention_mask" not in batch and len({p[key].shape[1] for p in parts}) > 1:
            batch["attention_mask"] = torch.zeros(len(parts), longest, dtype=torch.long)
            for i, p in enumerate(parts):
                batch["attention_mask"][i, : p[key].shape[1]] = 1
        return batch

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """The groups of utterances (indices, by sample count) computed together: where padding is
        safe, those within PAD_RATIO of each other's length (a 2 s prompt padded to 12 s cost 2.2x
        the time of computing 2-12 s prompts one by one on 2 cores); else those of one length (no
        padding at all)."""
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        groups: list[list[int]] = []
        for i in order:
            first = lengths[groups[-1][0]] if groups else None
            fits = first is not None and (lengths[i] <= PAD_RATIO * first if self.pads_safely else lengths[i] == first)
            if fits:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _autocast(self):
        """The forward in half precision (`precision` bf16 or fp16: weights stay fp32, matrix products
        run in the half type), or as it is."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def __call__(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """One [t, dim] float32 tensor per wav, on the CPU."""
        return [f.cpu() for f in self.frames_on_device(wavs)]

    @torch.inference_mode()
    def frames_on_device(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """One [t, dim] float32 tensor per wav, left on the model's device (the tokenizer assigns units
        there), the same whatever else is in the call (up to float rounding)."""
        out: list[torch.Tensor] = [torch.zeros(0)] * len(wavs)
        for rows in self.batches([len(w) for w in wavs]):
            inputs = {k: v.to(self.device, non_blocking=True) for k, v in self._inputs([wavs[i] for i in rows]).items()}
            with self._autocast():
                frames = self._frames(inputs).float()  # [b, t, d]
            if "input_values" in inputs:
                lengths = self.model._get_feat_extract_output_lengths(torch.tensor([len(wavs[i]) for i in rows]))
            else:
                lengths = inputs["attention_mask"].sum(-1).cpu()
            for j, (i, n) in enumerate(zip(rows, lengths, strict=True)):
                out[i] = frames[j, : int(n)]
        return out


class ClassifierFeatures(EncoderFeatures):
    """Per-frame class posteriors of a speech encoder with a frame classifier on top (a transformers
    `...ForCTC` model: the phone-supervised encoder of stage 1, or a phone recognizer from the Hub).
    Tokens from them are the classifier's decisions, the ASR-derived units of the literature; the
    tokenizer stores one-hot centroids, so nearest-centroid assignment is the argmax. A CTC-trained
    recognizer answers "blank" on most frames: only frame-wise classifiers make good units."""

    @staticmethod
    def _load(model: str, config, revision: str | None):
        from transformers import AutoModelForCTC

        # checked before loading: AutoModelForCTC would load a bare encoder too, with a random classifier
        if not _has_classifier(config):
            raise ValueError(f"{model}: semantic.units 'classifier' needs an encoder saved with its frame "
                             f"classifier (architectures {config.architectures}; stage 1's phone-supervised "
                             f"encoder has one, a masked-prediction one does not)")
        return AutoModelForCTC.from_pretrained(model, config=config, revision=revision, use_safetensors=True)

    def _select(self, layer: int, config) -> int:
        return config.vocab_size  # every class is a unit; `layer` does not apply

    def _frames(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**inputs).logits.float().softmax(-1)


class WhisperEncoderFeatures(EncoderFeatures):
    """Hidden states of one block of a Whisper model's encoder (`openai/whisper-*`): the ASR side's
    encoder as a semantic backend. Only the encoder is kept (the text decoder is dropped after loading).

    Whisper's encoder takes exactly 30 s of log-mel (its positions are absolute and fixed), so audio is
    cut into 30 s pieces, each padded by the feature extractor to 30 s (a short utterance costs as much
    as 30 s of audio), and the frames of the pieces are concatenated. Its 50 Hz frame i is centred at
    sample 320 i (centred STFT), 200 samples (12.5 ms) before the centre of frame i of the HuBERT grid;
    the count is cut to that grid's (`num_frames`), so its tokens line up with every other backend's.
    """

    @staticmethod
    def _load(model: str, config, revision: str | None):
        from transformers import AutoModel

        return AutoModel.from_pretrained(model, config=config, revision=revision, use_safetensors=True).get_encoder()

    def _stack(self) -> torch.nn.Module:
        return self.model

    @torch.inference_mode()
    def frames_on_device(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        piece = self.processor.n_samples  # 30 s
        per_piece = piece // (2 * self.processor.hop_length)  # 1500 frames
        pieces, owner = [], []
        for i, w in enumerate(wavs):
            w = np.asarray(w, dtype=np.float32)
            for start in range(0, max(1, len(w)), piece):
                pieces.append(w[start : start + piece])
                owner.append(i)
        inputs = self.processor(pieces, sampling_rate=self.sample_rate, return_tensors="pt")
        with self._autocast():
            frames = self._frames({"input_features": inputs["input_features"].to(self.device)}).float()
        out = []
        for i, w in enumerate(wavs):
            mine = [frames[j] for j, o in enumerate(owner) if o == i]
            out.append(torch.cat(mine)[: min(num_frames(len(w), self.sample_rate), per_piece * len(mine))])
        return out


UNITS = ("kmeans", "classifier")
PAD_RATIO = 1.25  # a padded batch holds utterances up to this much longer than its shortest
PRECISIONS = ("fp32", "bf16", "fp16")


def build_features(backend: str, model: str = "", layer: int = 6, device: str = "cpu", sample_rate: int = 16000,
                   context: int = 4, revision: str = "", units: str = "kmeans", precision: str = "fp32") -> FrameFeatures:
    if units not in UNITS:
        raise ValueError(f"unknown semantic.units '{units}' (use {' or '.join(UNITS)})")
    if backend in ("mfcc", "logmel"):
        if units != "kmeans":
            raise ValueError(f"semantic.units '{units}' needs a speech encoder; backend '{backend}' has no classifier")
        return SpectralFeatures(backend, sample_rate, context)
    if backend == "ssl":
        if not model:
            raise ValueError("semantic.backend 'ssl' needs semantic.model (a Hub id or a local folder)")
        if units == "classifier":
            return ClassifierFeatures(model, layer, device, sample_rate, revision, precision)
        from transformers import AutoConfig

        if AutoConfig.from_pretrained(model, revision=revision or None).model_type == "whisper":
            return WhisperEncoderFeatures(model, layer, device, sample_rate, revision, precision)
        return EncoderFeatures(model, layer, device, sample_rate, revision, precision)
    raise ValueError(f"unknown semantic.backend '{backend}' (use 'mfcc', 'logmel' or 'ssl')")
