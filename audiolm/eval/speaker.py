"""Speaker models over per-utterance statistics of the log-mel spectrum of voiced frames (mean and
standard deviation per band): `SpeakerEmbedding` (LDA learned on training voices; voices never heard
are enrolled and named by cosine: stage 4's judge, `audiolm.pipeline.speaker_eval`) and
`SpeakerClassifier` (multinomial logistic regression over known speakers: `audiolm semantic-eval`'s
probe of how much voice token histograms carry). Deliberately simple: they have to tell the corpus'
voices apart, not be speaker-verification systems.
"""

from __future__ import annotations

import numpy as np
import torch

from audiolm.audio import mel_filters, resample

SAMPLE_RATE = 16000
N_FFT, HOP, MELS = 512, 160, 40


def mel_statistics(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """[2 * MELS]: mean and standard deviation of the log-mel frames louder than 40 dB below the
    loudest (so silence does not dilute the voice)."""
    wav = torch.from_numpy(resample(np.asarray(wav, dtype=np.float32), sample_rate, SAMPLE_RATE))
    if wav.numel() < N_FFT:
        wav = torch.nn.functional.pad(wav, (0, N_FFT - wav.numel()))
    spec = torch.stft(wav, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2)
    logmel = torch.log10(spec.T @ mel_filters(SAMPLE_RATE, N_FFT, MELS) + 1e-8)  # [frames, mels]
    energy = logmel.max(dim=1).values
    voiced = logmel[energy > energy.max() - 4.0]
    return torch.cat([voiced.mean(0), voiced.std(0, unbiased=False)]).numpy()


class SpeakerClassifier:
    def __init__(self, labels: list[str], mean: np.ndarray, std: np.ndarray, weight: torch.Tensor, bias: torch.Tensor):
        self.labels, self.mean, self.std, self.weight, self.bias = labels, mean, std, weight, bias

    @classmethod
    def fit(cls, wavs: list[np.ndarray], speakers: list[str], sample_rate: int, steps: int = 300,
            weight_decay: float = 1e-3) -> SpeakerClassifier:
        return cls.fit_features(np.stack([mel_statistics(w, sample_rate) for w in wavs]), speakers, steps, weight_decay)

    @classmethod
    def fit_features(cls, x: np.ndarray, speakers: list[str], steps: int = 300,
                     weight_decay: float = 1e-3) -> SpeakerClassifier:
        """The same classifier on any per-utterance feature vectors [n, d] (token histograms, say)."""
        labels = sorted(set(speakers))
        if len(labels) < 2:
            raise ValueError("a speaker classifier needs at least two speakers")
        mean, std = x.mean(0), x.std(0) + 1e-6
        features = torch.from_numpy((x - mean) / std).float()
        target = torch.tensor([labels.index(s) for s in speakers])
        weight = torch.zeros(features.shape[1], len(labels), requires_grad=True)
        bias = torch.zeros(len(labels), requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(features @ weight + bias, target) + weight_decay * weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(labels, mean, std, weight.detach(), bias.detach())

    def predict_features(self, x: np.ndarray) -> list[str]:
        logits = torch.from_numpy((x - self.mean) / self.std).float() @ self.weight + self.bias
        return [self.labels[i] for i in logits.argmax(1).tolist()]

    def predict(self, wavs: list[np.ndarray], sample_rate: int) -> list[str]:
        return self.predict_features(np.stack([mel_statistics(w, sample_rate) for w in wavs]))

    def accuracy(self, wavs: list[np.ndarray], speakers: list[str], sample_rate: int) -> float:
        return float(np.mean([p == s for p, s in zip(self.predict(wavs, sample_rate), speakers, strict=True)]))


class SpeakerEmbedding:
    """Voices never heard, judged by a projection learned on the training voices: linear discriminant
    analysis of `mel_statistics` (the directions along which training voices differ most relative to
    how much one voice varies across its utterances), length-normalised. A held-out voice is enrolled
    as the mean embedding of some of its utterances; a clip is identified as the enrolled voice of
    highest cosine, so the judge needs no training on the voices it judges."""

    def __init__(self, mean: np.ndarray, projection: np.ndarray):
        self.mean, self.projection = mean, projection

    @classmethod
    def fit(cls, wavs: list[np.ndarray], speakers: list[str], sample_rate: int, dims: int = 32,
            shrinkage: float = 0.1) -> SpeakerEmbedding:
        return cls.fit_features(np.stack([mel_statistics(w, sample_rate) for w in wavs]), speakers, dims, shrinkage)

    @classmethod
    def fit_features(cls, x: np.ndarray, speakers: list[str], dims: int = 32, shrinkage: float = 0.1) -> SpeakerEmbedding:
        from scipy.linalg import eigh

        labels = sorted(set(speakers))
        if len(labels) < 2:
            raise ValueError("a speaker embedding needs at least two training speakers")
        x = x.astype(np.float64)
        mean = x.mean(0)
        spk = np.array(speakers)
        centres = np.stack([x[spk == s].mean(0) for s in labels])
        within = sum(np.cov((x[spk == s] - centres[i]).T, bias=True) * (spk == s).sum() for i, s in enumerate(labels))
        within = within / len(x)
        # shrink towards the diagonal: 80 dimensions from a few utterances per voice
        within = (1 - shrinkage) * within + shrinkage * np.diag(np.diag(within)) + 1e-6 * np.eye(len(mean))
        between = np.cov((centres - mean).T, bias=True)
        values, vectors = eigh(between, within)
        keep = min(dims, len(labels) - 1)
        return cls(mean, vectors[:, ::-1][:, :keep])

    def embed_features(self, x: np.ndarray) -> np.ndarray:
        e = (np.atleast_2d(x) - self.mean) @ self.projection
        return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)

    def embed(self, wavs: list[np.ndarray], sample_rate: int) -> np.ndarray:
        return self.embed_features(np.stack([mel_statistics(w, sample_rate) for w in wavs]))

    def identify(self, enrolled: dict[str, np.ndarray], clips: np.ndarray) -> list[str]:
        """`enrolled`: speaker -> embeddings [n, d] of their enrolment clips; `clips` [m, d] -> the
        speaker of highest cosine with each clip."""
        names = list(enrolled)
        centres = np.stack([enrolled[n].mean(0) for n in names])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True).clip(1e-12)
        return [names[i] for i in (clips @ centres.T).argmax(1)]


def voice_scores(embedding: SpeakerEmbedding, enrolled: dict[str, np.ndarray], voices: list[str], prompts: np.ndarray,
                 clips: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """How well clips keep the voice of their prompts. `voices[i]` is the voice of prompt i,
    `prompts` [n, d] their embeddings, `clips` condition -> [n, d] (clip i follows prompt i), and
    `enrolled` voice -> embeddings of other utterances of that voice (the candidates). Per condition:
    `accuracy`, the fraction of clips whose nearest enrolled voice is their prompt's, and `cosine`,
    the mean cosine between each clip and its prompt."""
    for name, e in clips.items():
        if len(e) != len(voices):
            raise ValueError(f"{len(e)} '{name}' clips for {len(voices)} prompts")
    scores = {}
    for name, e in clips.items():
        named = embedding.identify(enrolled, e)
        scores[name] = {"accuracy": float(np.mean([p == v for p, v in zip(named, voices, strict=True)])),
                        "cosine": float(np.mean(np.sum(e * prompts, axis=1)))}
    return scores


def swapped(voices: list[str]) -> list[int]:
    """For each prompt, another prompt of a different voice (the next one along, cyclically): its
    true continuation, claimed for this prompt, is what a judge must reject."""
    if len(set(voices)) < 2:
        raise ValueError("swapping continuations needs prompts of at least two voices")
    n = len(voices)
    return [next((i + k) % n for k in range(1, n) if voices[(i + k) % n] != voices[i]) for i in range(n)]
