"""`AudioLM`: the whole cascade behind one object. A prompt is tokenized (semantic ids and codec
codes), the semantic LM continues the semantic ids, the coarse LM generates the coarse codebooks
for the whole span given the semantic ids and the prompt's coarse codes, the fine LM adds the fine
codebooks, and the codec decodes.

    lm = AudioLM.from_pretrained("runs/demo")          # a run folder, or a Hub id with the same layout
    wav = lm.continue_speech(prompt, sample_rate, seconds=4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from audiolm.audio import AudioError, resample
from audiolm.codec import Codec, load_codec
from audiolm.config import SamplingConfig, load_config
from audiolm.lm.generate import continue_stream
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TASKS, TaskSpec, expand_runs
from audiolm.semantic.tokenizer import SemanticTokenizer
from audiolm.tokens import dedup, frames_at

PICKLES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
COMPONENTS = {"semantic": "semantic", "codec": "codec", **{t: f"lm-{t}" for t in TASKS}}


def _run_sampling(config_file: Path) -> dict[str, SamplingConfig] | None:
    """The sampling settings of the pipeline that trained the models (its stage-4 section)."""
    if not config_file.exists():
        return None
    continuation = load_config(config_file).continuation
    return {t: getattr(continuation, t) for t in TASKS}


@dataclass
class Continuation:
    prompt: np.ndarray  # the prompt as used (whole codec frames), at the codec's rate
    continuation: np.ndarray  # the generated audio after it
    sample_rate: int

    @property
    def full(self) -> np.ndarray:
        return np.concatenate([self.prompt, self.continuation])


class AudioLM:
    def __init__(self, tokenizer: SemanticTokenizer, codec: Codec, models: dict[str, Decoder], device: str = "cpu",
                 sampling: dict[str, SamplingConfig] | None = None):
        self.tokenizer, self.codec = tokenizer, codec.to(device).eval()
        self.sampling = {t: (sampling or {}).get(t, SamplingConfig()) for t in TASKS}  # defaults of continue_*
        self.models = {t: models[t].to(device).eval() for t in TASKS}
        self.specs = {t: TaskSpec.from_dict(self.models[t].task) for t in TASKS}
        self.device = device
        self._check()

    def _check(self) -> None:
        """The parts must agree on vocabulary sizes, codebooks and rates: a mismatch would otherwise
        give garbage audio, not an error. The message names both parts and the field."""
        tokenizer, codec = "the semantic tokenizer (semantic/)", "the codec (codec/)"
        checks = []
        for t in TASKS:
            spec, lm = self.specs[t], f"the {t} LM (lm-{t}/)"
            checks += [("semantic vocabulary size", tokenizer, self.tokenizer.num_clusters, lm, spec.layout.semantic_size),
                       ("semantic frame rate", tokenizer, self.tokenizer.frame_rate, lm, spec.semantic_rate),
                       ("codebook size", codec, self.codec.codebook_size, lm, spec.layout.codebook_size),
                       ("number of codebooks", codec, self.codec.num_codebooks, lm, spec.layout.num_codebooks),
                       ("codec frame rate", codec, self.codec.frame_rate, lm, spec.acoustic_rate)]
            if t != "semantic":
                checks.append(("number of coarse codebooks", "the coarse LM (lm-coarse/)",
                               self.specs["coarse"].layout.coarse_codebooks, lm, spec.layout.coarse_codebooks))
        for field, part, have, other, expected in checks:
            if have != expected:
                raise ValueError(f"{part} has {field} {have:g}, but {other} expects {expected:g}")

    @classmethod
    def from_pretrained(cls, name_or_dir: str | os.PathLike, revision: str | None = None, device: str = "cpu") -> AudioLM:
        """A run folder (`runs/<name>`) or a Hub repository with the same layout: semantic/, codec/,
        lm-semantic/, lm-coarse/, lm-fine/."""
        path = Path(name_or_dir)
        if not path.exists():
            if str(name_or_dir).startswith((".", "/")) or str(name_or_dir).count("/") != 1:
                raise FileNotFoundError(f"{name_or_dir}: no such model folder")
            from huggingface_hub import snapshot_download

            patterns = [f"{folder}/*" for folder in COMPONENTS.values()]
            path = Path(snapshot_download(str(name_or_dir), revision=revision, allow_patterns=patterns))
        for folder in COMPONENTS.values():
            if not (path / folder).is_dir():
                raise FileNotFoundError(f"{path}: no {folder}/ (an AudioLM model folder holds "
                                        f"{', '.join(COMPONENTS.values())}; run stages 1-3 to make one)")
            for file in (path / folder).rglob("*"):
                if file.suffix in PICKLES:
                    raise ValueError(f"{file}: a pickle ({file.suffix}); weights are loaded from safetensors only, "
                                     "never from pickles (they can run code)")
        tokenizer = SemanticTokenizer.from_pretrained(path / "semantic", device=device)
        codec = load_codec(path / "codec")
        models = {t: Decoder.from_pretrained(path / f"lm-{t}") for t in TASKS}
        return cls(tokenizer, codec, models, device, _run_sampling(path / "lm-semantic" / "config.yaml"))

    # -- generation ------------------------------------------------------------------------------
    def continue_speech(self, wav: np.ndarray, sample_rate: int, seconds: float = 4.0, seed: int = 0,
                        include_prompt: bool = False, sampling: dict[str, SamplingConfig] | None = None,
                        acoustic_prompt: bool = True) -> np.ndarray:
        """Mono float audio at any rate -> `seconds` of continuation at the codec's rate (after the
        prompt, re-cut to whole codec frames, with `include_prompt`)."""
        (out,) = self.continue_batch([wav], sample_rate, seconds, seed, sampling, acoustic_prompt)
        return out.full if include_prompt else out.continuation

    def prompt_frames(self, num_samples: int, sample_rate: int) -> int:
        return int(num_samples * self.codec.frame_rate / sample_rate)

    def continue_batch(self, wavs: list[np.ndarray], sample_rate: int, seconds: float, seed: int = 0,
                       sampling: dict[str, SamplingConfig] | None = None,
                       acoustic_prompt: bool = True) -> list[Continuation]:
        """Several prompts at once; prompts of equal length in codec frames are generated together.
        With `acoustic_prompt=False` the codec codes of the prompt are withheld from the coarse and
        fine LMs (AudioLM's semantic-only condition: the voice cannot be carried over)."""
        sampling = {**self.sampling, **(sampling or {})}
        frames = [self.prompt_frames(len(w), sample_rate) for w in wavs]
        for n in frames:
            if n < 1:
                raise AudioError("prompt", f"shorter than one codec frame ({1000 / self.codec.frame_rate:.0f} ms)")
        results: list[Continuation | None] = [None] * len(wavs)
        generator = torch.Generator(self.device).manual_seed(seed)
        for length in sorted(set(frames)):
            rows = [i for i, n in enumerate(frames) if n == length]
            for i, result in zip(rows, self._continue_group([wavs[i] for i in rows], sample_rate, length, seconds,
                                                             sampling, acoustic_prompt, generator), strict=True):
                results[i] = result
        return results

    @torch.no_grad()
    def encode(self, wav: np.ndarray) -> np.ndarray:
        """Audio at the codec's rate -> codes [k, t] (whole frames)."""
        codes = self.codec.encode(torch.from_numpy(np.asarray(wav, dtype=np.float32))[None].to(self.device))
        return codes[0, :, : self.prompt_frames(len(wav), self.codec.sample_rate)].cpu().numpy()

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes [k, t] -> audio at the codec's rate."""
        codes = torch.from_numpy(np.asarray(codes, dtype=np.int64))[None].to(self.device)
        return self.codec.decode(codes)[0].float().cpu().numpy()

    def _samples(self, frames: int) -> int:
        return round(frames * self.codec.sample_rate / self.codec.frame_rate)

    @torch.no_grad()
    def _continue_group(self, wavs: list[np.ndarray], sample_rate: int, known: int, seconds: float,
                        sampling: dict[str, SamplingConfig], acoustic_prompt: bool,
                        generator: torch.Generator) -> list[Continuation]:
        rate_s, rate_a = self.tokenizer.frame_rate, self.codec.frame_rate
        at_codec = [resample(w, sample_rate, self.codec.sample_rate)[: self._samples(known)] for w in wavs]
        at_tokenizer = [resample(w, sample_rate, self.tokenizer.sample_rate) for w in wavs]
        total = known + max(1, round(seconds * rate_a))
        known_s = frames_at(known, rate_a, rate_s)
        semantic = [ids[:known_s] for ids in self.tokenizer.encode(at_tokenizer)]
        if min(len(s) for s in semantic) < 1:
            raise AudioError("prompt", "too short for the semantic tokenizer (not one frame)")
        semantic = self._continue_semantic(semantic, frames_at(total, rate_a, rate_s), sampling["semantic"], generator)
        codes = np.zeros((len(wavs), self.codec.num_codebooks, total), dtype=np.int64)
        batch = torch.from_numpy(np.stack(at_codec)).float().to(self.device)
        codes[:, :, :known] = self.codec.encode(batch)[:, :, :known].cpu().numpy()
        for task in ("coarse", "fine"):
            codes = continue_stream(self.models[task], self.specs[task], semantic, codes, known if acoustic_prompt else 0,
                                    total, sampling[task], generator)
        audio = self.codec.decode(torch.from_numpy(codes).to(self.device)).float().cpu().numpy()
        start, end = self._samples(known), self._samples(total)
        return [Continuation(prompt=p, continuation=audio[i, start:end], sample_rate=self.codec.sample_rate)
                for i, p in enumerate(at_codec)]

    def _continue_semantic(self, prompts: list[np.ndarray], total: int, sampling: SamplingConfig,
                           generator: torch.Generator) -> list[np.ndarray]:
        spec, model = self.specs["semantic"], self.models["semantic"]
        if not spec.dedup:
            known = min(len(p) for p in prompts)
            return list(continue_stream(model, spec, [p[:known] for p in prompts], None, known, total, sampling, generator))
        out = []  # deduplicated ids: each prompt has its own length; re-expanded by the mean run length
        for p in prompts:
            d = dedup(p)
            new = max(1, round((total - len(p)) / spec.mean_run))
            stream = continue_stream(model, replace(spec, dedup=False), [d], None, len(d), len(d) + new, sampling, generator)[0]
            out.append(np.concatenate([p, expand_runs(stream[len(d):], spec.mean_run, total - len(p))]))
        return out
