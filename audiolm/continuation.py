"""`AudioLM`: the whole cascade behind one object. A prompt is tokenized (semantic ids and codec
codes), the semantic LM continues the semantic ids, the coarse LM generates the coarse codebooks
for the whole span given the semantic ids and the prompt's coarse codes, the fine LM adds the fine
codebooks, and the codec decodes.

    lm = AudioLM.from_pretrained("runs/demo")        # a run folder, a saved bundle, or a Hub id of one
    wav = lm.continue_speech(prompt, sample_rate, seconds=4)
    lm.save_pretrained("bundle"); lm.push_to_hub("user/audiolm-demo")

A bundle is one folder (or Hub repository): a subfolder per part, as in a run folder, and a
config.json that records each part's rates, codebooks, vocabulary sizes and content hash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import ModelCard

from audiolm.audio import AudioError, resample
from audiolm.card import bundle_card
from audiolm.codec import Codec
from audiolm.config import ContinuationConfig, SamplingConfig, load_config
from audiolm.devices import resolve_device
from audiolm.hub import CONFIG_NAME, HubMixin, content_hash, read_config, resolve_folder
from audiolm.interop.flat_codes import FlatCodeLM, is_flat_code_model
from audiolm.interop.language_models import load_language_model
from audiolm.lm.generate import Generators, continue_stream, extend_stream, per_row, stream_frames
from audiolm.lm.model import Decoder
from audiolm.lm.sequences import TASKS, TEXT_TASKS, TaskSpec, expand_runs
from audiolm.semantic.tokenizer import SemanticTokenizer
from audiolm.speech_text import TextTasks
from audiolm.text import TextTokenizer
from audiolm.tokens import dedup, frames_at

PARTS = {"semantic": SemanticTokenizer, "codec": Codec, **{f"lm-{t}": Decoder for t in TASKS}}  # folder -> class
# the text tasks' parts (speak, transcribe, convert), loaded where a run or bundle has them
TEXT_PARTS = {"text": TextTokenizer, **{f"lm-{t}": Decoder for t in TEXT_TASKS}}
FORMAT_VERSION = 1
# a stream's chunks after the first come once the LMs have run this many times as long as the last
# chunk's decode (which starts at the prompt's start): decoding at most ~a quarter of the time
DECODE_SHARE = 3.0


def _rows_by_length(lengths: Sequence[int]) -> list[list[int]]:
    """The rows of each length (the codec runs them together: no padding enters a row's codes or audio)."""
    groups: dict[int, list[int]] = {}
    for row, n in enumerate(lengths):
        groups.setdefault(int(n), []).append(row)
    return list(groups.values())


def _run_sampling(config_file: Path) -> dict[str, SamplingConfig] | None:
    """The sampling settings of the pipeline that trained the models (its stage-4 section)."""
    if not config_file.exists():
        return None
    continuation = load_config(config_file).continuation
    return {t: getattr(continuation, t) for t in TASKS + TEXT_TASKS}


def check_text_parts(tokenizer: dict[str, Any], text: dict[str, Any] | None, tasks: dict[str, dict[str, Any]]) -> None:
    """The text LMs against the semantic tokenizer and the text tokenizer (as `check_parts`)."""
    if tasks and text is None:
        raise ValueError(f"the {', '.join(f'lm-{t}/' for t in tasks)} need the text tokenizer (text/), which is missing")
    for t, task in tasks.items():
        spec, lm = TaskSpec.from_dict(task), f"the {t} LM (lm-{t}/)"
        for field, part, have, expected in (
                ("semantic vocabulary size", "the semantic tokenizer (semantic/)", tokenizer["num_clusters"],
                 spec.layout.semantic_size),
                ("semantic frame rate", "the semantic tokenizer (semantic/)", tokenizer["frame_rate"], spec.semantic_rate),
                ("number of phones", "the text tokenizer (text/)", len(text["phones"]), spec.layout.phone_size),
                ("number of text pieces", "the text tokenizer (text/)", text["vocab_size"], spec.layout.piece_size)):
            if have != expected:
                raise ValueError(f"{part} has {field} {have:g}, but {lm} expects {expected:g}")


def check_parts(tokenizer: dict[str, Any], codec: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> None:
    """The parts must agree on vocabulary sizes, codebooks and rates: a mismatch would otherwise give
    garbage audio, not an error. Works on the numbers in the parts' config.json (so a bundle is
    checked before any weights are read) as well as on loaded parts; names both parts and the field."""
    specs = {t: TaskSpec.from_dict(tasks[t]) for t in TASKS}
    semantic, acoustic = "the semantic tokenizer (semantic/)", "the codec (codec/)"
    checks = []
    for t in TASKS:
        spec, lm = specs[t], f"the {t} LM (lm-{t}/)"
        checks += [("semantic vocabulary size", semantic, tokenizer["num_clusters"], lm, spec.layout.semantic_size),
                   ("semantic frame rate", semantic, tokenizer["frame_rate"], lm, spec.semantic_rate)]
        if t != "semantic":  # the semantic LM's ids do not depend on the codec
            checks += [("codebook size", acoustic, codec["codebook_size"], lm, spec.layout.codebook_size),
                       ("number of codebooks", acoustic, codec["num_codebooks"], lm, spec.layout.num_codebooks),
                       ("codec frame rate", acoustic, codec["frame_rate"], lm, spec.acoustic_rate),
                       ("number of coarse codebooks", "the coarse LM (lm-coarse/)", specs["coarse"].layout.coarse_codebooks,
                        lm, spec.layout.coarse_codebooks)]
    for field, part, have, other, expected in checks:
        if have != expected:
            raise ValueError(f"{part} has {field} {have:g}, but {other} expects {expected:g}")


@dataclass
class Continuation:
    prompt: np.ndarray  # the prompt as used (whole codec frames), at the codec's rate
    continuation: np.ndarray  # the generated audio after it
    sample_rate: int

    @property
    def full(self) -> np.ndarray:
        return np.concatenate([self.prompt, self.continuation])


class AudioLM(TextTasks, HubMixin, pipeline_tag="audio-to-audio", tags=["speech", "speech-continuation", "audio-language-model"]):
    component = "audiolm"
    card_title = "AudioLM-style speech continuation: semantic tokenizer, codec, three language models"

    def __init__(self, tokenizer: SemanticTokenizer, codec: Codec, models: dict[str, Decoder], device: str = "cpu",
                 sampling: dict[str, SamplingConfig] | None = None, text: TextTokenizer | None = None):
        """`models`: the three LMs of TASKS, and any of the text tasks' (TEXT_TASKS, with `text`); all on
        `device` ("auto": the GPU where there is one)."""
        device = resolve_device(device)
        self.tokenizer, self.codec, self.text = tokenizer, codec.to(device).eval(), text
        tasks = [t for t in TASKS + TEXT_TASKS if t in models]
        self.models = {t: models[t].to(device).eval().prepare_generation() for t in tasks}  # int8 copies for small batches
        self.specs = {t: TaskSpec.from_dict(self.models[t].task) for t in tasks}
        defaults = ContinuationConfig()
        self.sampling = {t: (sampling or {}).get(t, getattr(defaults, t)) for t in tasks}  # defaults of continue_* etc.
        self.device = device
        numbers = {"num_clusters": tokenizer.num_clusters, "frame_rate": tokenizer.frame_rate}
        check_parts(numbers, {k: getattr(codec, k) for k in ("codebook_size", "num_codebooks", "frame_rate")},
                    {t: self.models[t].task for t in TASKS})
        check_text_parts(numbers, None if text is None else {"phones": text.phones, "vocab_size": text.vocab_size},
                         {t: self.models[t].task for t in TEXT_TASKS if t in self.models})

    def parts(self) -> dict[str, HubMixin]:
        parts = {"semantic": self.tokenizer, "codec": self.codec, **{f"lm-{t}": self.models[t] for t in TASKS}}
        if self.text is not None:
            parts["text"] = self.text
        return {**parts, **{f"lm-{t}": self.models[t] for t in TEXT_TASKS if t in self.models}}

    # -- persistence (audiolm.hub.HubMixin) ----------------------------------------------------
    def _write(self, folder: Path) -> dict[str, Any]:
        """Each part in its subfolder, and the record a loader checks them against."""
        record = {}
        for sub, part in self.parts().items():
            part.save_pretrained(folder / sub)
            config = json.loads((folder / sub / CONFIG_NAME).read_text())
            numbers = {k: config[k] for k in ("num_clusters", "frame_rate", "sample_rate", "num_codebooks", "codebook_size",
                                              "kind") if k in config}
            if "task" in config:
                spec = TaskSpec.from_dict(config["task"])
                numbers.update(vocab_size=spec.vocab_size, semantic_rate=spec.semantic_rate, acoustic_rate=spec.acoustic_rate,
                               layout=config["task"]["layout"], parameters=part.num_parameters())
            record[sub] = {"component": part.component, "sha256": content_hash(folder / sub), **numbers}
        return {"format_version": FORMAT_VERSION, "parts": record,
                "sampling": {t: dataclasses.asdict(s) for t, s in self.sampling.items()}}

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        token: str | bool | None = None, device: str = "cpu", **hub_kwargs: Any) -> AudioLM:
        """A run folder (`runs/<name>`), a folder written by `save_pretrained`, or a Hub id of one.
        Every part's config is read and checked against the others before any weights are; in a
        bundle, each part must also have the content hash recorded when it was saved. A released
        one-stage model (Llama-Mimi) gives a `FlatCodeLM` instead, which continues speech the same way."""
        folder = resolve_folder(name_or_path, revision=revision, token=token, **hub_kwargs)
        if is_flat_code_model(folder):
            return FlatCodeLM(folder, device)
        bundle = read_config(folder, cls.component) if (folder / CONFIG_NAME).exists() else None
        configs = {}
        for sub, part in PARTS.items():
            if not (folder / sub).is_dir():
                raise FileNotFoundError(f"{folder}: no {sub}/ (an AudioLM model folder holds {', '.join(PARTS)}; "
                                        "run stages 1-3 to make one)")
            configs[sub] = read_config(folder / sub, part.component)
        check_parts(configs["semantic"], configs["codec"], {t: configs[f"lm-{t}"].get("task", {}) for t in TASKS})
        if bundle is not None:
            if bundle.get("format_version", 1) > FORMAT_VERSION:
                raise ValueError(f"{folder}: saved by a newer audiolm (format {bundle['format_version']}); upgrade audiolm")
            for sub, recorded in bundle.get("parts", {}).items():
                if content_hash(folder / sub) != recorded.get("sha256"):
                    raise ValueError(f"{folder / sub}: its content differs from what the bundle recorded (sha256 in "
                                     f"{CONFIG_NAME}); the part was changed or replaced after the bundle was saved")
        # the text parts are optional; a run folder has them once stage 3 trained a text task
        for sub, part in TEXT_PARTS.items():
            if (folder / sub / CONFIG_NAME).exists():
                configs[sub] = read_config(folder / sub, part.component)
        check_text_parts(configs["semantic"], configs.get("text"),
                         {t: configs[f"lm-{t}"].get("task", {}) for t in TEXT_TASKS if f"lm-{t}" in configs})
        tokenizer = SemanticTokenizer._load(folder / "semantic", configs["semantic"], device=device)
        codec = Codec._load(folder / "codec", configs["codec"], token=token)
        models = {t: load_language_model(folder / f"lm-{t}", configs[f"lm-{t}"], token)
                  for t in TASKS + TEXT_TASKS if f"lm-{t}" in configs}
        text = TextTokenizer._load(folder / "text", configs["text"]) if "text" in configs else None
        if bundle is not None:
            sampling = {t: SamplingConfig(**v) for t, v in bundle.get("sampling", {}).items()}
        else:
            sampling = _run_sampling(folder / "lm-semantic" / "config.yaml")
        return cls(tokenizer, codec, models, device, sampling, text)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        return bundle_card(self, self._hub_mixin_info.model_card_data, **kwargs)

    def sampling_with(self, **changes: Any) -> dict[str, SamplingConfig] | None:
        """Every task's sampling settings with `changes` (temperature=..., top_k=..., top_p=...; None
        keeps a setting), or None when nothing changes (the methods then use `self.sampling`)."""
        asked = {k: v for k, v in changes.items() if v is not None}
        return {t: replace(s, **asked) for t, s in self.sampling.items()} if asked else None

    # -- generation ------------------------------------------------------------------------------
    def continue_speech(self, wav: np.ndarray, sample_rate: int, seconds: float = 4.0, seed: int = 0,
                        include_prompt: bool = False, sampling: dict[str, SamplingConfig] | None = None,
                        acoustic_prompt: bool = True) -> np.ndarray:
        """Mono float audio at any rate -> `seconds` of continuation at the codec's rate (after the
        prompt, re-cut to whole codec frames, with `include_prompt`)."""
        (out,) = self.continue_batch([wav], sample_rate, seconds, seed, sampling, acoustic_prompt)
        return out.full if include_prompt else out.continuation

    @property
    def max_prompt_seconds(self) -> float:
        """How much of a prompt is kept: 30 s, or the longest LM window if longer (the LMs never look
        further back). Earlier audio is dropped before tokenizing, so a long recording costs no more
        than this, and an ordinary prompt is used whole."""
        return max(30.0, *(spec.window_seconds for spec in self.specs.values()))

    def prompt_frames(self, num_samples: int, sample_rate: int) -> int:
        return int(num_samples * self.codec.frame_rate / sample_rate)

    def _generators(self, seed: int | list[int], rows: int) -> Generators:
        if not isinstance(seed, (list, tuple)):
            return torch.Generator(self.device).manual_seed(int(seed))
        if len(seed) != rows:
            raise ValueError(f"{len(seed)} seeds for {rows} prompts: give one seed, or one per prompt")
        return [torch.Generator(self.device).manual_seed(int(s)) for s in seed]

    def cut_prompts(self, wavs: list[np.ndarray], sample_rate: int) -> tuple[list[np.ndarray], list[int]]:
        """Prompts cut to `max_prompt_seconds` (their end kept) and their lengths in codec frames."""
        keep = round(self.max_prompt_seconds * sample_rate)  # the LMs never look further back than their windows
        wavs = [w[-keep:] if len(w) > keep else w for w in wavs]
        frames = [self.prompt_frames(len(w), sample_rate) for w in wavs]
        for n in frames:
            if n < 1:
                raise AudioError("prompt", f"shorter than one codec frame ({1000 / self.codec.frame_rate:.0f} ms)")
        return wavs, frames

    def continue_batch(self, wavs: list[np.ndarray], sample_rate: int, seconds: float, seed: int | list[int] = 0,
                       sampling: dict[str, SamplingConfig] | None = None,
                       acoustic_prompt: bool = True) -> list[Continuation]:
        """Several prompts at once, of any lengths, generated together (each LM's window sequences
        left-padded to the longest, `extend_stream`; a row's padding is never seen by its real positions).
        A prompt longer than `max_prompt_seconds` is cut to its end (the `prompt` of the result).
        `seed`: one for the batch, or one per prompt (each row then samples from its own generator:
        what it gets does not depend on the other prompts, up to float rounding of the batch's sums).
        With `acoustic_prompt=False` the codec codes of the prompt are withheld from the coarse and
        fine LMs (AudioLM's semantic-only condition: the voice cannot be carried over)."""
        sampling = {**self.sampling, **(sampling or {})}
        wavs, frames = self.cut_prompts(wavs, sample_rate)
        return self._continue_group(wavs, sample_rate, np.array(frames), seconds, sampling, acoustic_prompt,
                                    self._generators(seed, len(wavs)))

    def continue_speech_stream(self, wav: np.ndarray, sample_rate: int, seconds: float = 4.0, seed: int = 0,
                               sampling: dict[str, SamplingConfig] | None = None, acoustic_prompt: bool = True,
                               chunk_seconds: float = 0.5, include_prompt: bool = False) -> Iterator[np.ndarray]:
        """`continue_speech`, yielding the continuation's audio as it is generated: joined, the chunks
        are `continue_speech`'s output for the same arguments (with `include_prompt`, the first chunk
        is the prompt as used). The first chunk of new audio comes as soon as any is final, later ones
        every `chunk_seconds` (the codec runs again from the prompt's start for each, which costs
        little next to the LMs)."""
        for (chunk,) in self.stream_batch([wav], sample_rate, seconds, seed, sampling, acoustic_prompt, chunk_seconds,
                                          include_prompt):
            yield chunk

    def stream_batch(self, wavs: list[np.ndarray], sample_rate: int, seconds: float, seed: int | list[int] = 0,
                     sampling: dict[str, SamplingConfig] | None = None, acoustic_prompt: bool = True,
                     chunk_seconds: float = 0.5, include_prompt: bool = False) -> Iterator[list[np.ndarray]]:
        """`continue_speech_stream` for several prompts of any lengths, generated together (as
        `continue_batch`): yields a chunk per prompt, all of one length (the same span of new audio in
        each). The same seed gives what `continue_batch` gives them."""
        sampling = {**self.sampling, **(sampling or {})}
        wavs, frames = self.cut_prompts(wavs, sample_rate)
        known = np.array(frames)
        generator = self._generators(seed, len(wavs))
        with torch.no_grad():
            prompts, total, codes, progress = self._group_frames(wavs, sample_rate, known, seconds, sampling,
                                                                 acoustic_prompt, generator)
        if include_prompt:
            yield prompts
        hold, step = self.codec.lookahead_frames, max(1, round(chunk_seconds * self.codec.frame_rate))
        new = int(total[0] - known[0])  # every row's new frames
        emitted = 0  # new frames of audio given out, in every row
        decoding, decoded_at = 0.0, time.perf_counter()  # the last decode's seconds, and when it ended
        for done in progress:
            made = int((done - known).min())
            final = made if made >= new else made - hold  # the codec's last frames may change with more codes
            if final <= emitted or (emitted > 0 and made < new and (
                    final - emitted < step
                    # each chunk decodes from the prompt's start: with long prompts that costs as much as
                    # the LMs, so later chunks wait until the LMs have run DECODE_SHARE times as long
                    or time.perf_counter() - decoded_at < decoding * DECODE_SHARE)):
                continue
            started = time.perf_counter()
            audio = self._decode_rows(codes, known + made)
            decoded_at = time.perf_counter()
            decoding = decoded_at - started
            yield [a[self._samples(int(n) + emitted) : self._samples(int(n) + final)] for a, n in zip(audio, known, strict=True)]
            emitted = final

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
    def _prompt_tokens(self, wavs: list[np.ndarray], sample_rate: int, known: int | Sequence[int],
                       source: str = "prompt") -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """The first `known` codec frames of each prompt (one count, or one per prompt): (audio at the
        codec's rate, semantic ids up to the same time, codes [k, known] of each). The codec encodes the
        prompts of one length together (no padding enters a prompt's codes)."""
        known = per_row(known, len(wavs))
        at_codec = [resample(w, sample_rate, self.codec.sample_rate)[: self._samples(int(n))]
                    for w, n in zip(wavs, known, strict=True)]
        at_tokenizer = [resample(w, sample_rate, self.tokenizer.sample_rate) for w in wavs]
        semantic = [ids[: frames_at(int(n), self.codec.frame_rate, self.tokenizer.frame_rate)]
                    for ids, n in zip(self.tokenizer.encode(at_tokenizer), known, strict=True)]
        if min(len(s) for s in semantic) < 1:
            raise AudioError(source, "too short for the semantic tokenizer (not one frame)")
        codes: list[np.ndarray] = [np.zeros(0)] * len(wavs)
        for rows in _rows_by_length([len(a) for a in at_codec]):
            batch = torch.from_numpy(np.stack([at_codec[i] for i in rows])).float().to(self.device)
            encoded = self.codec.encode(batch).cpu().numpy()
            for j, i in enumerate(rows):
                codes[i] = encoded[j, :, : known[i]]
        return at_codec, semantic, codes

    def _acoustic_frames(self, semantic: list[np.ndarray], prompt_codes: Sequence[np.ndarray] | np.ndarray,
                         total: int | Sequence[int], sampling: dict[str, SamplingConfig], generator: Generators,
                         acoustic_prompt: bool = True, semantic_lm: Iterator[np.ndarray] | None = None
                         ) -> tuple[np.ndarray, Iterator[np.ndarray]]:
        """Semantic ids covering each row's `total` codec frames and the codes of its first `known`
        (prompt_codes: each row's [k, known], known may be 0 and differ by row) -> (codes [b, k, frames],
        an iterator that fills them frame by frame and yields each row's frames done in every codebook):
        the coarse LM and the fine LM, interleaved, and with `semantic_lm` (an `extend_stream` filling
        `semantic` in place) the semantic LM too. Each LM samples from its own generator, seeded from
        `generator`, so what they draw does not depend on the order they run in."""
        b = len(semantic)
        known = np.array([c.shape[-1] for c in prompt_codes], dtype=np.int64)
        total = per_row(total, b)
        codes = np.zeros((b, self.codec.num_codebooks, stream_frames(known, total)), dtype=np.int64)
        for i, c in enumerate(prompt_codes):
            codes[i, :, : known[i]] = c
        first = known if acoustic_prompt else np.zeros(b, dtype=np.int64)

        def seeds(g: torch.Generator) -> list[torch.Generator]:  # the coarse LM's and the fine LM's
            drawn = torch.randint(2**62, (2,), generator=g, device=g.device).tolist()
            return [torch.Generator(self.device).manual_seed(s) for s in drawn]

        if isinstance(generator, list):  # one per row: each row's pair
            coarse, fine = (list(g) for g in zip(*(seeds(g) for g in generator), strict=True))
        else:
            coarse, fine = seeds(generator)
        lms = {t: (self.models[t], self.specs[t], semantic, codes, first, total, sampling[t], g)
               for t, g in (("coarse", coarse), ("fine", fine))}
        return codes, extend_stream(*lms["fine"], upstream=extend_stream(*lms["coarse"], upstream=semantic_lm))

    @torch.no_grad()
    def _acoustic(self, semantic: list[np.ndarray], prompt_codes: Sequence[np.ndarray] | np.ndarray, total: int,
                  sampling: dict[str, SamplingConfig], generator: Generators, acoustic_prompt: bool = True) -> np.ndarray:
        """`_acoustic_frames` run to the end (one `total` for every row), then the codec -> audio [b,
        samples] of the whole span."""
        codes, frames = self._acoustic_frames(semantic, prompt_codes, total, sampling, generator, acoustic_prompt)
        return self._decode_batch(codes[:, :, :total], frames)

    @torch.no_grad()
    def _decode_batch(self, codes: np.ndarray, frames: Iterator[np.ndarray] | None = None) -> np.ndarray:
        """Codes [b, k, t] -> audio [b, samples], once `frames` (the iterator that fills the codes) has
        run out."""
        for _ in frames or ():
            pass
        return self.codec.decode(torch.from_numpy(codes).to(self.device)).float().cpu().numpy()

    def _decode_rows(self, codes: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
        """The first `lengths[i]` frames of each row's codes -> its audio; rows of one length decode
        together (no padding enters a row's audio: the codec's decoder sees past a frame's end)."""
        audio: list[np.ndarray] = [np.zeros(0, np.float32)] * len(codes)
        for rows in _rows_by_length(lengths):
            length = int(lengths[rows[0]])
            for i, wav in zip(rows, self._decode_batch(np.ascontiguousarray(codes[rows, :, :length])), strict=True):
                audio[i] = wav
        return audio

    def _group_frames(self, wavs: list[np.ndarray], sample_rate: int, known: np.ndarray, seconds: float,
                      sampling: dict[str, SamplingConfig], acoustic_prompt: bool,
                      generator: Generators) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, Iterator[np.ndarray]]:
        """Prompts of `known` codec frames each -> (their audio at the codec's rate, each row's total
        frames, and `_acoustic_frames`' codes and iterator): the semantic LM runs as the iterator is
        advanced (or has run, over deduplicated ids), the acoustic LMs too."""
        rate_s, rate_a = self.tokenizer.frame_rate, self.codec.frame_rate
        at_codec, semantic, prompt_codes = self._prompt_tokens(wavs, sample_rate, known)
        total = known + max(1, round(seconds * rate_a))
        total_s, spec = np.array([frames_at(int(t), rate_a, rate_s) for t in total]), self.specs["semantic"]
        semantic_lm = None
        if spec.dedup:  # the whole continuation first: the ids are re-expanded by their runs at the end
            semantic = self._continue_semantic(semantic, total_s, sampling["semantic"], generator)
        else:  # frame by frame, as far as the coarse LM's windows need
            known_s = np.array([len(p) for p in semantic])
            stream = np.zeros((len(semantic), stream_frames(known_s, total_s)), dtype=np.int64)
            for i, p in enumerate(semantic):
                stream[i, : len(p)] = p
            semantic = list(stream)  # rows that the semantic LM fills in place
            semantic_lm = extend_stream(self.models["semantic"], spec, semantic, stream, known_s, total_s,
                                        sampling["semantic"], generator)
        return (at_codec, total, *self._acoustic_frames(semantic, prompt_codes, total, sampling, generator, acoustic_prompt,
                                                        semantic_lm))

    @torch.no_grad()
    def _continue_group(self, wavs: list[np.ndarray], sample_rate: int, known: np.ndarray, seconds: float,
                        sampling: dict[str, SamplingConfig], acoustic_prompt: bool,
                        generator: Generators) -> list[Continuation]:
        at_codec, total, codes, frames = self._group_frames(wavs, sample_rate, known, seconds, sampling, acoustic_prompt,
                                                            generator)
        for _ in frames:
            pass
        audio = self._decode_rows(codes, total)
        return [Continuation(prompt=p, continuation=a[self._samples(int(k)) : self._samples(int(t))],
                             sample_rate=self.codec.sample_rate)
                for p, a, k, t in zip(at_codec, audio, known, total, strict=True)]

    def _continue_semantic(self, prompts: list[np.ndarray], total: np.ndarray, sampling: SamplingConfig,
                           generator: Generators) -> list[np.ndarray]:
        """A semantic LM over ids without repeats: the prompts' deduplicated ids (of different lengths)
        continued together, the new ids re-expanded by the mean run length to each row's `total` frames."""
        spec, model = self.specs["semantic"], self.models["semantic"]
        deduped = [dedup(p) for p in prompts]
        known = np.array([len(d) for d in deduped])
        new = np.array([max(1, round((int(t) - len(p)) / spec.mean_run)) for p, t in zip(prompts, total, strict=True)])
        stream = continue_stream(model, replace(spec, dedup=False), deduped, None, known, known + new, sampling, generator)
        return [np.concatenate([p, expand_runs(stream[i, known[i] : known[i] + new[i]], spec.mean_run, int(t) - len(p))])
                for i, (p, t) in enumerate(zip(prompts, total, strict=True))]
