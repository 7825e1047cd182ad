"""Text for the text tasks (issue 16): subword pieces of a corpus' text, and phonemes of any text.

`TextTokenizer` is a `sentencepiece` model trained on the training split's sentences (stage 1), the
target vocabulary of transcription (semantic ids -> text pieces, AudioPaLM's ASR task). It is saved
like every part (`save_pretrained` / `from_pretrained` / `push_to_hub`); the serialized model goes
into a safetensors file as bytes, since Hub loading reads only JSON and safetensors.

`phonemize` is eSpeak NG's own grapheme-to-phoneme conversion (`Synthesizer.phonemes`) folded onto
the corpus' phone set (`audiolm.data.phones`), with a word-boundary symbol: the input of the reading
task (text -> semantic ids, SPEAR-TTS's first stage), for any English sentence, not only the words a
corpus has.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from audiolm.config import TextConfig
from audiolm.hub import HubMixin, config_from, weights_file
from audiolm.tokens import WORD_PHONE  # noqa: F401 (the id of WORD among `TextTokenizer.phones`)

TEXT_WEIGHTS = "text.safetensors"
WORD = "|"  # the word boundary in phoneme sequences
UNKNOWN_PHONE = "<unk>"  # a phone the corpus' text never had (another language's rules, a rare vowel)


class TextTokenizer(HubMixin):
    component = "text-tokenizer"
    card_title = "sentencepiece tokenizer of the corpus' text"

    def __init__(self, model_proto: bytes, config: TextConfig, phones: Sequence[str] = ()):
        import sentencepiece

        self.config = config
        self.model_proto = bytes(model_proto)
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
        # the phoneme vocabulary of the reading task: <unk>, the word boundary, the corpus' phones
        self.phones = [UNKNOWN_PHONE, WORD] + sorted(set(phones) - {UNKNOWN_PHONE, WORD})
        self._phone_index = {p: i for i, p in enumerate(self.phones)}

    @classmethod
    def train(cls, texts: Iterable[str], config: TextConfig | None = None) -> TextTokenizer:
        """A model of these sentences (deterministic for the same sentences in the same order)."""
        import sentencepiece

        config = config or TextConfig()
        sentences = [t.strip() for t in texts if t and t.strip()]
        if not sentences:
            raise ValueError("no text to train a text tokenizer on (the corpus has an empty 'text' column)")
        out = io.BytesIO()
        # hard_vocab_limit off: a small corpus may not have `vocab_size` pieces; it gets fewer. Byte
        # fallback: a character the corpus never had is spelt as its UTF-8 bytes, not <unk>
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=out, vocab_size=config.vocab_size,
            model_type=config.model_type, character_coverage=config.character_coverage, hard_vocab_limit=False,
            byte_fallback=True, num_threads=1, minloglevel=2)
        phones = {p for text in sentences for p in phonemize(text, config.language)}
        return cls(out.getvalue(), config, sorted(phones))

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text))

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.processor.decode([int(i) for i in ids])

    def pieces(self, text: str) -> list[str]:
        return list(self.processor.encode(text, out_type=str))

    @property
    def end_piece(self) -> int:
        """The piece that ends a transcription (sentencepiece's </s>)."""
        return self.processor.eos_id()

    def phone_ids(self, phones: Sequence[str]) -> np.ndarray:
        """Phone labels (`phonemize`'s) -> ids in `phones`; one the corpus never had is <unk> (0)."""
        return np.array([self._phone_index.get(p, 0) for p in phones], dtype=np.int64)

    def phonemes(self, text: str) -> np.ndarray:
        """The phone ids of any text, by eSpeak NG's rules for `config.language` (the reading task's input)."""
        return self.phone_ids(phonemize(text, self.config.language))

    def _write(self, folder: Path) -> dict[str, Any]:
        proto = torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8)
        save_file({"model_proto": proto}, str(folder / TEXT_WEIGHTS))
        return {"text_tokenizer": asdict(self.config), "vocab_size": self.vocab_size, "phones": self.phones}

    @classmethod
    def _load(cls, folder: Path, config: dict[str, Any], **kwargs: Any) -> TextTokenizer:
        proto = load_file(weights_file(folder, TEXT_WEIGHTS))["model_proto"].numpy().tobytes()
        return cls(proto, config_from(TextConfig, config["text_tokenizer"]), config.get("phones", ()))


def phonemize(text: str, language: str = "en-us") -> list[str]:
    """The phones of `text` as eSpeak NG reads it with `language`'s rules, folded like the corpus'
    phone labels (stress and length marks away), words separated by `WORD`."""
    from audiolm.data.espeak import Synthesizer
    from audiolm.data.phones import normalize_phone

    out: list[str] = []
    for word in Synthesizer.get().phonemes(text, language):
        phones = [p for p in (normalize_phone(name) for name in word) if p]
        if phones:
            out += ([WORD] if out else []) + phones
    return out
