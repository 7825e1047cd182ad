"""Text in, text out, any voice: the text tasks on the same token cascade as continuation.

    lm = AudioLM.from_pretrained("runs/demo")                   # a run with the text LMs (lm.text)
    wav = lm.speak("Any sentence at all.", voice=prompt, sample_rate=sr)
    texts = lm.transcribe([wav], sample_rate=sr)
    wav = lm.convert(source, sr, voice=target, voice_rate=sr2)

Reading (SPEAR-TTS's first stage) turns eSpeak NG's phones of the text into deduplicated semantic
ids, which each take their mean training duration; transcription (AudioPaLM's ASR task) turns
semantic ids into text pieces. Speech in a voice is then AudioLM's acoustic stage: the coarse and fine
LMs continue the voice prompt's codes over the new semantic ids, as in AudioLM's speaker conversion,
which `convert` is (the source's own semantic ids, the target's voice).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from audiolm.audio import check_audible, check_waveform, resample
from audiolm.config import SamplingConfig
from audiolm.lm.generate import complete_text

MIN_VOICE_SECONDS = 1.0  # a voice prompt shorter than this carries too little of a voice to copy
READ_PHONES = 100  # a reading chunk's phones at most: about two sentences, as the reading LM trains on


def sentences_of(text: str) -> list[str]:
    """Sentences (split after . ! ? ; :), the unit a text is read in."""
    return [s for s in (p.strip() for p in re.split(r"(?<=[.!?;:])\s+", text)) if s]


class TextTasks:
    """`speak`, `transcribe` and `convert`, mixed into `AudioLM` (which has the parts they use)."""

    def _text_model(self, task: str):
        if task not in self.models:
            raise ValueError(f"this model has no {task} LM (lm-{task}/): train it with `make stage-3 TASK={task}` "
                             "or a pipeline with lm.text: true")
        return self.models[task], self.specs[task]

    # -- reading -----------------------------------------------------------------------------
    def read_chunks(self, text: str) -> list[np.ndarray]:
        """The phone ids of `text` in chunks of whole sentences (a sentence longer than READ_PHONES
        is cut between words); a ValueError naming the text when nothing in it can be spoken."""
        if not text or not text.strip():
            raise ValueError("text: empty; give a sentence to speak")
        word = self.text.phone_ids(["|"])[0]
        chunks: list[np.ndarray] = []
        for sentence in sentences_of(text):
            phones = self.text.phonemes(sentence)
            while len(phones):
                cut = len(phones)
                if cut > READ_PHONES:  # the last word boundary before the limit
                    bounds = np.flatnonzero(phones[:READ_PHONES] == word)
                    cut = int(bounds[-1]) if bounds.size else READ_PHONES
                chunks.append(phones[:cut])
                phones = phones[cut + 1:] if cut < len(phones) and phones[cut] == word else phones[cut:]
        if not chunks:
            raise ValueError(f"text {text[:60]!r}: nothing speakable in it (no word eSpeak NG can read)")
        return chunks

    @torch.no_grad()
    def read(self, texts: list[str], seed: int = 0, sampling: SamplingConfig | None = None,
             generator: torch.Generator | None = None) -> list[np.ndarray]:
        """Texts -> semantic ids at the tokenizer's frame rate (each chunk read, then its ids held for
        their mean durations)."""
        model, spec = self._text_model("reading")
        generator = generator or torch.Generator(self.device).manual_seed(seed)
        chunks = [self.read_chunks(t) for t in texts]
        flat = [c for row in chunks for c in row]
        units = complete_text(model, spec, [(np.zeros(0, np.int64), (c, None)) for c in flat],
                              sampling or self.sampling["reading"], generator)
        out, i = [], 0
        for row in chunks:
            out.append(np.concatenate([spec.expand(u) for u in units[i : i + len(row)]]))
            i += len(row)
        return out

    def _voice(self, wav: np.ndarray, sample_rate: int, source: str) -> np.ndarray:
        wav = check_audible(check_waveform(np.asarray(wav, dtype=np.float32), source, MIN_VOICE_SECONDS, sample_rate), source)
        keep = round(self.max_prompt_seconds * sample_rate)
        return wav[-keep:]

    @torch.no_grad()
    def render(self, semantic: list[np.ndarray], voices: list[np.ndarray] | None, sample_rate: int = 16000,
               seed: int = 0, sampling: dict[str, SamplingConfig] | None = None,
               generator: torch.Generator | None = None, source: str = "voice prompt") -> list[np.ndarray]:
        """Semantic ids (any number of frames each) -> audio at the codec's rate in the voice of each
        row's prompt (`voices`, at `sample_rate`; all cut to the shortest's length so that they go as
        one batch), or with None a voice of the corpus (no acoustic prompt)."""
        sampling = {**self.sampling, **(sampling or {})}
        generator = generator or torch.Generator(self.device).manual_seed(seed)
        rate_s, rate_a = self.tokenizer.frame_rate, self.codec.frame_rate
        if voices is not None:
            voices = [self._voice(v, sample_rate, source) for v in voices]
            known = min(self.prompt_frames(len(v), sample_rate) for v in voices)
            _, prompt_semantic, prompt_codes = self._prompt_tokens(voices, sample_rate, known, source)
        else:
            known, prompt_semantic = 0, [np.zeros(0, np.int64)] * len(semantic)
            prompt_codes = np.zeros((len(semantic), self.codec.num_codebooks, 0), dtype=np.int64)
        frames = [max(1, int(len(s) * rate_a / rate_s)) for s in semantic]  # codec frames of each row
        total = known + max(frames)
        rows = []
        for p, s in zip(prompt_semantic, semantic, strict=True):
            row = np.concatenate([p, np.asarray(s, dtype=np.int64)])
            need = int(np.ceil(total * rate_s / rate_a)) + 1  # rows padded by holding their last id
            # (a reading with no ids at all, from an undertrained LM and no voice, gets one frame of id 0)
            rows.append(np.pad(row, (0, max(0, need - len(row))), mode="edge" if len(row) else "constant")[:need])
        audio = self._acoustic(rows, prompt_codes, total, sampling, generator)
        start = self._samples(known)
        return [audio[i, start : start + self._samples(n)] for i, n in enumerate(frames)]

    def speak(self, text: str, voice: np.ndarray | None = None, sample_rate: int = 16000, seed: int = 0,
              sampling: dict[str, SamplingConfig] | None = None) -> np.ndarray:
        """Text -> audio at the codec's rate, in the voice of `voice` (audio at `sample_rate`, at least
        MIN_VOICE_SECONDS) or, without it, a voice of the corpus. The same seed gives the same audio."""
        (out,) = self.speak_batch([text], None if voice is None else [voice], sample_rate, seed, sampling)
        return out

    def speak_batch(self, texts: list[str], voices: list[np.ndarray] | None = None, sample_rate: int = 16000,
                    seed: int = 0, sampling: dict[str, SamplingConfig] | None = None) -> list[np.ndarray]:
        sampling = {**self.sampling, **(sampling or {})}
        generator = torch.Generator(self.device).manual_seed(seed)
        semantic = self.read(texts, sampling=sampling["reading"], generator=generator)
        return self.render(semantic, voices, sample_rate, sampling=sampling, generator=generator)

    # -- transcription -----------------------------------------------------------------------
    @torch.no_grad()
    def transcribe_ids(self, semantic: list[np.ndarray], sampling: SamplingConfig | None = None) -> list[str]:
        """Semantic ids -> text; ids longer than the transcription LM's window go in window-long pieces."""
        model, spec = self._text_model("transcription")
        pieces = [[ids[i : i + spec.window] for i in range(0, max(1, len(ids)), spec.window)] for ids in semantic]
        flat = [(p, (None, None)) for row in pieces for p in row]
        generator = torch.Generator(self.device).manual_seed(0)
        out = complete_text(model, spec, flat, sampling or self.sampling["transcription"], generator)
        texts, i = [], 0
        for row in pieces:
            texts.append(" ".join(self.text.decode(ids) for ids in out[i : i + len(row)]).strip())
            i += len(row)
        return texts

    def transcribe(self, wavs: list[np.ndarray], sample_rate: int = 16000, names: list[str] | None = None,
                   sampling: SamplingConfig | None = None) -> list[str]:
        """Audio (mono, any rate) -> its text."""
        names = names or [f"audio {i}" for i in range(len(wavs))]
        frame = 1.0 / self.tokenizer.frame_rate
        wavs = [check_waveform(np.asarray(w, dtype=np.float32), n, frame, sample_rate) for w, n in zip(wavs, names, strict=True)]
        semantic = self.tokenizer.encode([resample(w, sample_rate, self.tokenizer.sample_rate) for w in wavs])
        return self.transcribe_ids(semantic, sampling)

    # -- voice conversion --------------------------------------------------------------------
    def convert(self, source: np.ndarray, sample_rate: int, voice: np.ndarray, voice_rate: int | None = None,
                seed: int = 0, sampling: dict[str, SamplingConfig] | None = None) -> np.ndarray:
        """The words of `source` in the voice of `voice`: the source's semantic ids, rendered by the
        coarse and fine LMs prompted with the target's (AudioLM's speaker conversion)."""
        source = check_waveform(np.asarray(source, dtype=np.float32), "source", 1.0 / self.tokenizer.frame_rate, sample_rate)
        (ids,) = self.tokenizer.encode([resample(source, sample_rate, self.tokenizer.sample_rate)])
        (out,) = self.render([ids], [voice], voice_rate or sample_rate, seed, sampling)
        return out
