"""How likely the semantic LM finds a recording: the number sWUGGY, sBLIMP and StoryCloze compare.

A wav becomes semantic ids (the run's tokenizer), the ids the LM's sequence (deduplicated when the LM
was trained on deduplicated ids, as it then models them), and its score the log-likelihood of every id
given the ones before it (the first given the sequence's start): summed (`sum`, the ZeroSpeech 2021 baselines') or averaged per
id (`mean`, the default: slamkit's, used for Slam's and TWIST's figures; a sum favours the shorter of
two recordings whatever they say). A stream longer than the LM's window is scored in windows that
overlap by half, each id once, with at least half a window of context after the first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from audiolm.devices import resolve_device
from audiolm.hub import resolve_folder
from audiolm.interop.flat_codes import FlatCodeLM, FlatCodeScorer, flat_code_folder
from audiolm.interop.language_models import load_language_model
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TaskSpec
from audiolm.semantic.tokenizer import SemanticTokenizer
from audiolm.tokens import TokenLayout

REDUCTIONS = ("mean", "sum")


class SpeechLMScorer:
    def __init__(self, tokenizer: SemanticTokenizer, model: Decoder, device: str = "cpu"):
        device = resolve_device(device)
        self.tokenizer, self.model, self.device = tokenizer, model.to(device).eval(), device
        self.spec = TaskSpec.from_dict(model.task)
        if self.spec.task != "semantic":
            raise ValueError(f"scoring needs the semantic LM; this model is the {self.spec.task} LM")

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device: str = "cpu") -> SpeechLMScorer:
        """A run folder, a bundle (`audiolm save`) or its Hub id: its semantic tokenizer and semantic LM.
        A released one-stage model (Llama-Mimi) gives a `FlatCodeScorer`, which scores by its own rule."""
        flat = flat_code_folder(name_or_path, revision)
        if flat is not None:
            return FlatCodeScorer(FlatCodeLM(flat, device))
        tokenizer = SemanticTokenizer.from_pretrained(name_or_path, revision=revision, subfolder="semantic", device=device)
        folder = resolve_folder(name_or_path, revision=revision, subfolder="lm-semantic")
        return cls(tokenizer, load_language_model(folder), device)

    def units(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Wavs at the tokenizer's rate -> their semantic ids."""
        return self.tokenizer.encode(list(wavs))

    def sequence(self, units: np.ndarray) -> np.ndarray:
        """The LM's sequence for a recording's ids: BOS, then the ids (deduplicated if the LM's are)."""
        return self.spec.build(np.asarray(units), None, 0, len(units))[0]

    def _windows(self, ids: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """(BOS + a stretch of ids, how many of its last ids are scored) covering ids[1:] once each."""
        room = self.spec.max_length() - 1  # ids after BOS a window holds
        body = ids[1:]
        if len(body) <= room:
            return [(ids, len(body))]
        out, step, done = [(ids[: room + 1], room)], max(1, room // 2), room
        while done < len(body):
            new = min(step, len(body) - done)
            out.append((np.concatenate(([TokenLayout.BOS], body[done + new - room : done + new])), new))
            done += new
        return out

    @torch.no_grad()
    def log_likelihoods(self, units: Sequence[np.ndarray], batch_size: int = 32) -> list[tuple[float, int]]:
        """(sum of log p of each id, how many ids) per recording."""
        windows = [(r, w, n) for r, u in enumerate(units) for w, n in self._windows(self.sequence(u))]
        totals, counts = np.zeros(len(units)), np.zeros(len(units), dtype=np.int64)
        lo, hi = self.spec.target_ranges()[0]
        windows.sort(key=lambda t: len(t[1]))
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            length = max(len(w) for _, w, _ in chunk)
            ids = torch.full((len(chunk), length), TokenLayout.PAD, dtype=torch.long)
            scored = torch.zeros(len(chunk), length, dtype=torch.bool)  # positions whose next id is scored
            for row, (_, w, n) in enumerate(chunk):
                ids[row, : len(w)] = torch.from_numpy(w)
                scored[row, len(w) - 1 - n : len(w) - 1] = True
            targets = ids[:, 1:][scored[:, :-1]].to(self.device)
            every = torch.arange(len(targets), device=self.device)
            (logits,) = self.model(ids.to(self.device), select=scored.to(self.device), vocab_ranges=[(lo, hi, every)])
            log_p = torch.log_softmax(logits.float(), -1).gather(1, (targets - lo)[:, None])[:, 0].cpu().numpy()
            per_row = scored.sum(1).tolist()
            for (r, _, n), part in zip(chunk, np.split(log_p, np.cumsum(per_row)[:-1]), strict=True):
                totals[r] += part.sum()
                counts[r] += n
        return list(zip(totals.tolist(), counts.tolist(), strict=True))

    def scores(self, units: Sequence[np.ndarray], reduction: str = "mean", batch_size: int = 32) -> np.ndarray:
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown score reduction {reduction!r} (known: {', '.join(REDUCTIONS)})")
        pairs = self.log_likelihoods(units, batch_size)
        return np.array([t / max(1, n) if reduction == "mean" else t for t, n in pairs])
