"""`SemanticTokenizer`: frame features -> normalisation -> nearest k-means centroid -> ids.

A saved tokenizer (`save_pretrained`, `from_pretrained`, `push_to_hub`: see `audiolm.hub`) is a
folder: `config.json` (backend, model, layer, K, rates, normalisation) and `kmeans.safetensors`
(centroids and the per-dimension mean/std the features were standardised with, as AudioLM does
before k-means). A speech encoder from the Hub is referenced by id and revision; one from a local
folder is copied into `encoder/` (its config and safetensors), so the tokenizer works elsewhere.
The layer is checked against the centroids' width.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from audiolm.config import SemanticConfig
from audiolm.hub import HubMixin, config_from, copy_model_files, weights_file
from audiolm.semantic.features import FrameFeatures, build_features
from audiolm.semantic.kmeans import PenalizedAssignment, assign, fit_kmeans

WEIGHTS_NAME = "kmeans.safetensors"
ENCODER_FOLDER = "encoder"  # a local speech encoder, bundled


@dataclass
class SemanticTokenizerConfig:
    backend: str
    model: str
    layer: int
    num_clusters: int
    sample_rate: int
    frame_rate: float
    feature_dim: int
    utterance_norm: bool
    context_frames: int = 0
    revision: str = ""  # of `model`, when it is a Hub id
    units: str = "kmeans"  # "classifier": the encoder's frame classes (one-hot centroids, see ClassifierFeatures)
    duration_penalty: float = 0.0  # price of a change of id, in squared distance (kmeans.PenalizedAssignment)
    format_version: int = 1


class SemanticTokenizer(HubMixin):
    component = "semantic-tokenizer"
    card_title = "semantic tokenizer (speech features -> k-means ids)"

    def __init__(self, config: SemanticTokenizerConfig, features: FrameFeatures, centroids: torch.Tensor,
                 mean: torch.Tensor, std: torch.Tensor):
        if centroids.shape != (config.num_clusters, features.dim):
            raise ValueError(
                f"centroids of shape {tuple(centroids.shape)} do not fit {config.num_clusters} clusters of "
                f"{features.dim}-dim features ({config.backend} {config.model} layer {config.layer})"
            )
        self.config, self.features = config, features
        self.centroids, self.mean, self.std = centroids.float(), mean.float(), std.float()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def num_clusters(self) -> int:
        return self.config.num_clusters

    @property
    def device(self) -> torch.device:
        """Where the features are computed and the units assigned (the CPU for a spectral front end)."""
        return torch.device(getattr(self.features, "device", "cpu"))

    # -- features -------------------------------------------------------------------------
    @staticmethod
    def _utterance_normalize(feats: list[torch.Tensor], enabled: bool) -> list[torch.Tensor]:
        """Per-utterance mean and variance normalisation (CMVN): removes the channel and much of
        the voice's spectral tilt before k-means sees the frames."""
        if not enabled:
            return feats
        return [(f - f.mean(0)) / f.std(0, correction=0).clamp_min(1e-3) if f.shape[0] > 1 else f for f in feats]

    def normalized_features(self, wavs: Sequence[np.ndarray], on_device: bool = False) -> list[torch.Tensor]:
        """The frames k-means sees, on the CPU (`on_device`: where the encoder ran)."""
        frames = self.features.frames_on_device(wavs) if on_device and hasattr(self.features, "frames_on_device") \
            else self.features(wavs)
        feats = self._utterance_normalize(frames, self.config.utterance_norm)
        mean, std = (self.mean.to(self.device), self.std.to(self.device)) if on_device else (self.mean, self.std)
        return [(f - mean) / std for f in feats]

    def encode(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Mono float32 wavs at `sample_rate` -> one int64 id array per wav (frames at `frame_rate`);
        the features stay on the encoder's device and the units are assigned there (on a GPU only
        the ids come back)."""
        return self.assign_features(self.normalized_features(wavs, on_device=True))

    def assign_features(self, feats: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """`normalized_features`' output -> the ids `encode` gives (for a caller that needs both)."""
        if self.config.duration_penalty:  # a Viterbi pass on the CPU
            return [self._assign([f.cpu()]) for f in feats]
        lengths = [f.shape[0] for f in feats]
        if not sum(lengths):
            return [np.zeros(0, dtype=np.int64) for _ in feats]
        x = torch.cat(feats)
        ids = assign(x, self.centroids.to(x.device)).cpu()
        return [part.numpy().astype(np.int64) for part in ids.split(lengths)]

    def _assign(self, chunks: Iterable[torch.Tensor]) -> np.ndarray:
        """Ids of one utterance's normalised frames, given in order in any number of chunks."""
        assignment = PenalizedAssignment(self.centroids, self.config.duration_penalty)
        for chunk in chunks:
            assignment.feed(chunk)
        return assignment.finish().numpy().astype(np.int64)

    def encode_long(self, wav: np.ndarray, chunk_seconds: float = 60.0, margin_seconds: float = 1.0) -> np.ndarray:
        """`encode` of one wav of any length in bounded memory (a 30-minute file's stacked log-mel
        frames alone would take 0.5 GB): features of chunks with `margin_seconds` of context on either
        side, whose frames are dropped. For spectral features the frames are `encode`'s; the
        per-utterance normalisation is computed over the whole file in a first pass."""
        win, hop = round(0.025 * self.sample_rate), round(self.sample_rate / self.frame_rate)
        frames = max(0, (len(wav) - win) // hop + 1)
        chunk, margin = max(1, round(chunk_seconds * self.frame_rate)), round(margin_seconds * self.frame_rate)
        if frames <= chunk:
            return self.encode([wav])[0]
        spans = [(f0, min(frames, f0 + chunk)) for f0 in range(0, frames, chunk)]

        def chunk_features():
            for f0, f1 in spans:
                a, b = max(0, f0 - margin), min(frames, f1 + margin)
                (f,) = self.features([wav[a * hop : (b - 1) * hop + win]])
                yield f[f0 - a : f1 - a]

        shift, scale = 0.0, 1.0
        if self.config.utterance_norm:  # first pass: the whole file's mean and std, as _utterance_normalize
            total = sum_sq = 0.0
            for f in chunk_features():
                total, sum_sq = total + f.double().sum(0), sum_sq + f.double().pow(2).sum(0)
            mean = total / frames
            shift, scale = mean.float(), (sum_sq / frames - mean**2).clamp_min(0).sqrt().float().clamp_min(1e-3)
        return self._assign(((f - shift) / scale - self.mean) / self.std for f in chunk_features())

    # -- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, cfg: SemanticConfig, features: FrameFeatures, batches: Iterable[Sequence[np.ndarray]]) -> SemanticTokenizer:
        """Collect up to `cfg.kmeans_frames` frames from `batches` of wavs, standardise, fit k-means.
        With `cfg.units == "classifier"` nothing is fitted: the units are the classifier's classes."""
        if cfg.units == "classifier":
            return cls.of_classifier(cfg, features)
        chunks, total = [], 0
        for wavs in batches:
            for f in cls._utterance_normalize(features(wavs), cfg.utterance_norm):
                chunks.append(f)
                total += f.shape[0]
            if total >= cfg.kmeans_frames:
                break
        if not chunks:
            raise ValueError("no audio to fit the semantic tokenizer on")
        x = torch.cat(chunks)
        if x.shape[0] > cfg.kmeans_frames:
            x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(cfg.seed))[: cfg.kmeans_frames]]
        mean, std = x.mean(0), x.std(0).clamp_min(1e-5)
        centroids = fit_kmeans((x - mean) / std, cfg.num_clusters, steps=cfg.kmeans_steps,
                               batch_size=cfg.kmeans_batch_size, seed=cfg.seed)
        spectral = cfg.backend != "ssl"
        config = SemanticTokenizerConfig(
            backend=cfg.backend, model=cfg.model if not spectral else "", layer=cfg.layer if not spectral else 0,
            revision=cfg.revision if not spectral else "",
            num_clusters=cfg.num_clusters, sample_rate=features.sample_rate, frame_rate=features.frame_rate,
            feature_dim=features.dim, utterance_norm=cfg.utterance_norm,
            context_frames=cfg.context_frames if spectral else 0, duration_penalty=cfg.duration_penalty,
        )
        return cls(config, features, centroids, mean, std)

    @classmethod
    def of_classifier(cls, cfg: SemanticConfig, features: FrameFeatures) -> SemanticTokenizer:
        """Units = classes of the encoder's frame classifier (features: its posteriors). One-hot
        centroids make nearest-centroid assignment the argmax (|p - e_k|^2 = |p|^2 + 1 - 2 p_k),
        so these tokenizers share the format, `encode` and `encode_long` of k-means ones."""
        k = features.dim
        config = SemanticTokenizerConfig(
            backend=cfg.backend, model=cfg.model, layer=0, revision=cfg.revision, num_clusters=k,
            sample_rate=features.sample_rate, frame_rate=features.frame_rate, feature_dim=k,
            utterance_norm=False, units="classifier", duration_penalty=cfg.duration_penalty)
        return cls(config, features, torch.eye(k), torch.zeros(k), torch.ones(k))

    # -- persistence (audiolm.hub.HubMixin) ----------------------------------------------
    def _write(self, folder: Path) -> dict[str, Any]:
        save_file({"centroids": self.centroids, "mean": self.mean, "std": self.std}, str(folder / WEIGHTS_NAME))
        config = asdict(self.config)
        local = Path(self.config.model) if self.config.backend == "ssl" else None
        if local is not None and local.is_dir():
            copy_model_files(local, folder / ENCODER_FOLDER)
            config["model"] = ENCODER_FOLDER
            config["bundled_encoder"] = True
        return config

    @classmethod
    def _load(cls, folder: Path, config: dict[str, Any], device: str = "cpu", precision: str = "fp32") -> SemanticTokenizer:
        """`device`: where the encoder runs ("auto": the GPU where there is one); `precision`: its
        forward's ("bf16", "fp16": see `EncoderFeatures`)."""
        if config.get("format_version", 1) > SemanticTokenizerConfig.format_version:
            raise ValueError(f"{folder}: saved by a newer audiolm (format {config['format_version']}); upgrade audiolm")
        if config.get("bundled_encoder"):  # a path again, so that saving the tokenizer copies the encoder along
            config = {**config, "model": str(folder / ENCODER_FOLDER)}
        tokenizer_config = config_from(SemanticTokenizerConfig, config)
        tensors = load_file(weights_file(folder, WEIGHTS_NAME))
        features = build_features(tokenizer_config.backend, tokenizer_config.model, tokenizer_config.layer, device,
                                  tokenizer_config.sample_rate, tokenizer_config.context_frames, tokenizer_config.revision,
                                  tokenizer_config.units, precision)
        return cls(tokenizer_config, features, tensors["centroids"], tensors["mean"], tensors["std"])
