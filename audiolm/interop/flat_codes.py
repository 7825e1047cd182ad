"""A released one-stage speech LM over a codec's codes flattened per frame: Llama-Mimi.

llm-jp/Llama-Mimi-1.3B (the llama-mimi repository's `inference.py` and `eval/sLM21.py`) is a stock
causal LM whose tokenizer has a token `<{code}_{q}>` for every code of every codebook q < Q
(`config.num_quantizers`), and `<audio>` / `</audio>` around a recording. A recording's Mimi codes
[Q, T] are read frame by frame, `<audio><c0_0><c1_1>..<cQ-1_Q-1><c0_0>..</audio>`, after the
tokenizer's BOS; generation continues that text and Mimi decodes the codes. One LM does the semantic
and the acoustic parts at once (Mimi's codebook 0 is distilled from WavLM).

Everything about the layout is read from the model's config and tokenizer: Q, the id of every code
token, the codebook size (which must be the codec's), the ids around a recording. The codec is
`kyutai/mimi` as in Llama-Mimi's inference script, or a folder or id named by config.json's
`audio_tokenizer` (ours: the released config has none). `FlatCodeLM` answers `audiolm continue`
(`continue_speech`) and `FlatCodeScorer` answers `audiolm score-lm`, by Llama-Mimi's own rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiolm.audio import AudioError, resample
from audiolm.codec import load_codec
from audiolm.config import SamplingConfig
from audiolm.devices import resolve_device
from audiolm.hub import refuse_pickles
from audiolm.interop.unit_lm import cache_keyword, cache_of
from audiolm.lm.generate import sample_next

CODE_TOKEN = re.compile(r"<(\d+)_(\d+)>")
DEFAULT_CODEC = "kyutai/mimi"


def _is_flat_config(config: dict[str, Any]) -> bool:
    """A causal LM's config with `num_quantizers` (Llama-Mimi's), not one of our parts'."""
    return isinstance(config.get("num_quantizers"), int) and "component" not in config


def is_flat_code_model(folder: Path) -> bool:
    """A causal LM folder with `num_quantizers` in its config and a tokenizer (Llama-Mimi's layout)."""
    file = folder / "config.json"
    return file.exists() and (folder / "tokenizer.json").exists() and _is_flat_config(json.loads(file.read_text()))


def flat_code_folder(name_or_path: str, revision: str | None = None) -> Path | None:
    """The folder of a flat-code model named by a path or Hub id, or None for anything else; for a Hub
    id only its config.json is fetched to tell (a run bundle's other parts are not downloaded)."""
    from audiolm.hub import is_hub_id, resolve_folder

    if Path(name_or_path).exists():
        return Path(name_or_path) if is_flat_code_model(Path(name_or_path)) else None
    if not is_hub_id(name_or_path):
        return None
    try:
        from huggingface_hub import hf_hub_download

        config = json.loads(Path(hf_hub_download(str(name_or_path), "config.json", revision=revision)).read_text())
    except Exception:  # not on the Hub, offline, no config.json: the caller's own loading says what is wrong
        return None
    if not _is_flat_config(config):
        return None
    folder = resolve_folder(name_or_path, revision=revision)
    return folder if is_flat_code_model(folder) else None


class FlatCodeLM:
    """A released flat-code LM with its codec: `continue_speech` as `AudioLM`'s."""

    def __init__(self, folder: Path, device: str = "auto", codec: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        refuse_pickles(folder)
        config = json.loads((folder / "config.json").read_text())
        self.device = resolve_device(device)
        self.source = str(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        self.model = self.model.to(self.device).eval()
        self._cache_arg = cache_keyword(self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.q = int(config["num_quantizers"])
        self.codec = load_codec(codec or config.get("audio_tokenizer") or DEFAULT_CODEC, num_codebooks=self.q, device=self.device)
        self.table = self._code_table()  # [Q, codebook size]: the token id of code c of codebook q
        self.prefix = self.tokenizer("<audio>")["input_ids"]  # BOS (if the tokenizer adds one) and <audio>
        self.end = self.tokenizer.convert_tokens_to_ids("</audio>")
        self.sampling = {"flat": SamplingConfig(temperature=0.8, top_k=30)}  # Llama-Mimi's inference script

    def _code_table(self) -> torch.Tensor:
        codes: dict[tuple[int, int], int] = {}
        for token, i in self.tokenizer.get_vocab().items():
            m = CODE_TOKEN.fullmatch(token)
            if m and int(m.group(2)) < self.q:
                codes[(int(m.group(2)), int(m.group(1)))] = i
        size = 1 + max((c for _, c in codes), default=-1)
        if size != self.codec.codebook_size or len(codes) != self.q * size:
            raise ValueError(f"{self.source}: its tokenizer has {len(codes)} code tokens <code_q> for {self.q} codebooks "
                             f"of {size}; the codec {self.codec.model_id if hasattr(self.codec, 'model_id') else ''} "
                             f"has codebooks of {self.codec.codebook_size}")
        table = torch.empty(self.q, size, dtype=torch.long)
        for (q, c), i in codes.items():
            table[q, c] = i
        return table.to(self.device)

    # what the CLI asks of a model
    def sampling_with(self, **changes: Any) -> dict[str, SamplingConfig] | None:
        asked = {k: v for k, v in changes.items() if v is not None}
        return {"flat": replace(self.sampling["flat"], **asked)} if asked else None

    def ids(self, codes: np.ndarray) -> torch.Tensor:
        """Codes [Q, T] -> the token ids of `<audio>` and the frames (BOS first if the tokenizer has one)."""
        codes = torch.as_tensor(np.asarray(codes[: self.q]), dtype=torch.long, device=self.device)
        flat = self.table.gather(1, codes).T.reshape(-1)  # frame by frame
        return torch.cat([torch.tensor(self.prefix, device=self.device), flat])

    def encode(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        at_codec = resample(wav, sample_rate, self.codec.sample_rate)
        frames = int(len(at_codec) * self.codec.frame_rate / self.codec.sample_rate)
        if frames < 1:
            raise AudioError("prompt", f"shorter than one codec frame ({1000 / self.codec.frame_rate:.0f} ms)")
        with torch.no_grad():
            codes = self.codec.encode(torch.from_numpy(np.asarray(at_codec, dtype=np.float32))[None].to(self.device))
        return codes[0, :, :frames].cpu().numpy()

    @torch.no_grad()
    def continue_speech(self, wav: np.ndarray, sample_rate: int, seconds: float = 4.0, seed: int = 0,
                        include_prompt: bool = False, sampling: dict[str, SamplingConfig] | None = None) -> np.ndarray:
        """The prompt's codes continued by `seconds` of new frames (each code drawn from its codebook's
        tokens only), decoded by the codec."""
        s = (sampling or self.sampling)["flat"]
        codes = self.encode(wav, sample_rate)
        new = max(1, round(seconds * self.codec.frame_rate))
        room = getattr(self.model.config, "max_position_embeddings", 4096) - len(self.prefix) - new * self.q
        codes = codes[:, -max(1, room // self.q):]  # the prompt's end, when prompt and continuation do not fit
        generator = torch.Generator(self.device).manual_seed(int(seed))
        out = self.model(input_ids=self.ids(codes)[None], use_cache=True)
        made = torch.empty(self.q, new, dtype=torch.long, device=self.device)
        for i in range(new * self.q):
            q, t = i % self.q, i // self.q
            made[q, t] = sample_next(out.logits[:, -1, self.table[q]], 0, self.table.shape[1], s, generator)[0]
            if i + 1 < new * self.q:
                past = {self._cache_arg: cache_of(out)}
                out = self.model(input_ids=self.table[q, made[q, t]].view(1, 1), use_cache=True, **past)
        whole = torch.cat([torch.as_tensor(codes, device=self.device), made], dim=1)
        audio = self.codec.decode(whole[None])[0].float().cpu().numpy()
        start = 0 if include_prompt else round(codes.shape[1] * self.codec.sample_rate / self.codec.frame_rate)
        return audio[start:]

    def continue_speech_stream(self, wav: np.ndarray, sample_rate: int, seconds: float = 4.0, seed: int = 0,
                               sampling: dict[str, SamplingConfig] | None = None, include_prompt: bool = False,
                               **unused: Any) -> Iterator[np.ndarray]:
        """Not streamed as it is made: the whole continuation, as one chunk."""
        yield self.continue_speech(wav, sample_rate, seconds, seed, include_prompt, sampling)


class _CodeTokenizer:
    """What `score-lm` asks of a tokenizer: a sample rate and `encode` (wavs -> codes [Q, T])."""

    def __init__(self, lm: FlatCodeLM):
        self.lm, self.sample_rate = lm, lm.codec.sample_rate

    def encode(self, wavs: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = []
        for w in wavs:
            try:
                out.append(self.lm.encode(w, self.sample_rate))
            except AudioError:
                out.append(np.zeros((self.lm.q, 0), dtype=np.int64))
        return out


class _NoDedup:
    dedup = False


class FlatCodeScorer:
    """Llama-Mimi's sLM21 rule (its eval/sLM21.py): the mean log-probability of the tokens at
    positions 2, 2 + Q, 2 + 2Q, ... of `BOS <audio> codes </audio>` (from the first code on, every
    Q-th): every frame's codebook-0 token and the closing `</audio>`; whole-vocabulary softmax."""

    def __init__(self, lm: FlatCodeLM):
        self.lm, self.tokenizer, self.spec, self.device = lm, _CodeTokenizer(lm), _NoDedup(), lm.device

    @torch.no_grad()
    def scores(self, codes: Sequence[np.ndarray], reduction: str = "mean", batch_size: int = 1) -> np.ndarray:
        values = []
        for c in codes:
            ids = torch.cat([self.lm.ids(c), torch.tensor([self.lm.end], device=self.device)])
            log_p = torch.log_softmax(self.lm.model(input_ids=ids[None]).logits[0, :-1].float(), -1)
            positions = torch.arange(len(self.lm.prefix), len(ids), self.lm.q, device=self.device)
            terms = log_p[positions - 1, ids[positions]]
            values.append(float(terms.mean() if reduction == "mean" else terms.sum()))
        return np.array(values)
