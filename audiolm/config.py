"""One config system for the library, the stages and the CLI.

Dataclasses hold the defaults, one per concern. A pipeline YAML overrides them, and
`key=value` pairs from the command line override the YAML (`semantic.num_clusters=200`).
An unknown key or a value of the wrong type is a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key or file."""


@dataclass
class AugmentConfig:
    """Voice-changing augmentation (audiolm/augment.py), shared by the encoder and the codec."""

    speed: tuple[float, float] = (0.85, 1.18)  # playback-rate factor: pitch, formants and tempo together
    formants: tuple[float, float] = (0.88, 1.14)  # envelope factor, pitch and tempo kept
    eq_peaks: int = 3
    eq_db: float = 8.0
    tilt_db_per_octave: float = 3.0
    lowpass_hz: tuple[float, float] = (3400.0, 8000.0)
    highpass_hz: tuple[float, float] = (0.0, 300.0)
    noise_snr_db: tuple[float, float] = (15.0, 40.0)
    noise_prob: float = 0.5
    pitch: tuple[float, float] = (0.8, 1.25)  # F0 factor (formants and tempo kept), log-uniform
    pitch_prob: float = 0.0  # WORLD costs ~90 ms per second of audio on one core: off unless asked
    rt60_s: tuple[float, float] = (0.15, 0.7)
    direct_to_reverb_db: tuple[float, float] = (0.0, 12.0)
    reverb_prob: float = 0.0


@dataclass
class DemoCorpusConfig:
    """The built-in corpus, synthesized offline with eSpeak NG (see audiolm.data.demo)."""

    # "classic": up to 10 hand-picked voices (v00..); "many": a bank of generated voices (accent x
    # eSpeak variant x pitch, range, speed, formant scale; audiolm.data.voices) for training, and
    # `unseen_voices` of a family absent from training (the Klatt-synthesis variants, u00..) that
    # read held-out sentences only
    bank: str = "classic"
    voices: int = 8  # distinct training voices
    unseen_voices: int = 0  # "many" only: voices that no model trains on
    heldout_voices: int = 0  # training voices that also read the held-out sentences (0 = all of them)
    sentences: int = 360  # distinct sentences in total (train + held-out)
    heldout_sentences: int = 40  # each read by every held-out voice
    # sentences read as one held-out utterance: 2 makes them long enough (~7 s) for a prompt, its true
    # next seconds (the speaker judge's calibration) and other utterances of the voice to enrol it
    sentences_per_heldout_utterance: int = 1
    voices_per_train_sentence: int = 2
    seed: int = 0


@dataclass
class DataConfig:
    """Where the corpus comes from and how clips are filtered."""

    # "demo" (synthesized offline), a Hugging Face dataset id, a folder of audio files,
    # or a manifest (.csv/.tsv/.jsonl with a `path` column, optional `text`, `speaker`, `split`).
    source: str = "demo"
    sample_rate: int = 16000  # every clip is converted to this rate, mono
    min_seconds: float = 0.5
    max_seconds: float = 20.0
    # a longer file without text is cut at silences into pieces of at most max_seconds (LibriLight's
    # audiobooks); one with text is dropped (its transcript cannot be cut with it)
    segment: bool = True
    max_utterances: int = 0  # source files (rows) per split, before cutting and filtering; 0 = all
    heldout_fraction: float = 0.05  # for folders/manifests without a split column
    # source items per corpus shard (stage 0; fewer for long files: 256 MB of source at most) and
    # utterances per token shard (stages 1-2): what a killed stage redoes at most, and what processes share out
    shard_size: int = 256
    # Hugging Face datasets only:
    streaming: bool = False  # read the splits as streams (nothing downloaded ahead: corpora larger than the disk)
    hub_config: str = ""
    train_split: str = "train"
    heldout_split: str = "validation"
    audio_column: str = "audio"
    text_column: str = "text"
    speaker_column: str = "speaker_id"
    id_column: str = "id"
    demo: DemoCorpusConfig = field(default_factory=DemoCorpusConfig)


@dataclass
class TrainConfig:
    """The one trainer's settings (codec now, the language models later)."""

    steps: int = 2000
    batch_size: int = 8
    learning_rate: float = 3e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (accelerate)
    ema_decay: float = 0.0  # 0 = no EMA of weights
    checkpoint_every: int = 200
    keep_checkpoints: int = 3  # the last N checkpoints stay (older ones go once a newer is complete); 0 = all
    eval_every: int = 200
    log_every: int = 10
    # stop (and checkpoint) after this much wall time; 0 = no limit. The cosine schedule then runs on
    # whichever ends first, steps or minutes, so a run cut short by the clock still ends annealed.
    max_minutes: float = 0.0
    # processes building the next batches while the model trains (a DataLoader's workers, for tasks
    # that build their own rows: the LMs); -1 = 2 with a GPU, 0 on a CPU (a worker would take a core
    # from the model's matrix products)
    data_workers: int = -1
    seed: int = 0


def _train(**defaults: Any) -> Any:
    """A default factory for a section's own training defaults."""
    return lambda: TrainConfig(**defaults)


@dataclass
class EncoderConfig:
    """Stage 1 with `semantic.backend: trained`: a small HuBERT (transformers `HubertModel`) trained
    from scratch on the corpus, then used like a Hub encoder (see audiolm/semantic/pretrain.py)."""

    # "hubert": masked prediction of k-means targets (iteration 1: MFCC k-means; iteration 2: k-means
    # of the iteration-1 model's `target_layer`); "phones": frame-wise phone classification from the
    # corpus' phone alignments (the demo corpus records eSpeak NG's; with unmasked_weight 1 every
    # frame is scored, as the demo does).
    objective: str = "hubert"
    iterations: int = 2  # hubert only
    target_clusters: int = 100  # K of the k-means targets (HuBERT: 100 for MFCC, 500 after)
    target_context: int = 4  # MFCC targets: +-N stacked frames
    target_layer: int = 3  # iteration-2 targets: output of this block of the previous iteration's model
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    ffn_dim: int = 1024
    conv_dim: int = 128  # channels of the 7-layer waveform front end (HuBERT's kernels and strides: 320 hop)
    mask_prob: float = 0.65  # masked share of frames before spans overlap (about half masked at 0.65)
    mask_length: int = 10  # frames per span
    # loss on unmasked frames, relative to masked ones: HuBERT uses 0 (alpha = 1); with minutes of CPU
    # instead of days of GPU, predicting the visible frames too gives the front end a signal early.
    unmasked_weight: float = 0.0
    crop_seconds: float = 3.0  # training crop (a batch is cut to its shortest utterance)
    augment: bool = True  # voice-changing augmentation: speed/pitch, formant-like EQ, band limits, noise
    # with augment: also move the formants 0.88-1.14x with pitch and tempo kept, so pitch and formants
    # vary apart (demo, 340 steps: PNMI 0.565 vs 0.568 without, unheard voices 0.511 vs 0.521, voice
    # probe 62% vs 66%: off by default)
    formant_shift: bool = False
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)  # the ranges and odds, with augment
    exclude_speakers: list[str] = field(default_factory=list)  # held out of encoder training entirely
    train: TrainConfig = field(default_factory=_train(
        steps=600, batch_size=8, learning_rate=1e-3, warmup_steps=60, weight_decay=0.01, mixed_precision="bf16",
        checkpoint_every=200, eval_every=200))


@dataclass
class SemanticConfig:
    """Stage 1: features from a speech encoder (or a spectral front end), then k-means."""

    # "mfcc" / "logmel": spectral front ends that need no download (offline demo);
    # "ssl": a transformers speech encoder (WavLM, HuBERT, Wav2Vec2, Wav2Vec2-BERT);
    # "trained": a HuBERT-style encoder trained from scratch in stage 1 (`encoder`), then as "ssl".
    backend: str = "logmel"
    model: str = ""  # Hub id or local folder, for backend "ssl"
    revision: str = ""  # Hub revision (branch, tag or commit) of `model`; "" = main
    layer: int = 6  # output of this transformer block (1-based)
    utterance_norm: bool = True  # per-utterance mean/variance normalisation (removes channel, some voice)
    context_frames: int = 4  # spectral backends: stack +-N neighbouring frames (+-80 ms at 4)
    # "kmeans": k-means of `layer`'s features (K = num_clusters); "classifier": the classes of the
    # encoder's frame classifier (a ...ForCTC model: stage 1's phone-supervised encoder), K = its classes.
    units: str = "kmeans"
    num_clusters: int = 100  # k-means units only
    # a released k-means instead of fitting one (textlesslib/slamkit joblib file, read without running the
    # pickle: docs/pretrained.md), over `model`'s block `layer`; K is the file's
    kmeans_file: str = ""
    # Price of a change of id, in squared (standardised) distance: the ids minimise distance +
    # penalty x changes, so brief flickers between neighbouring units merge into the segment around
    # them. 0 = nearest unit per frame. Scale: classifier units' distances are 2 x probability
    # margins (0.5: a switch must gain 0.25 probability summed over the new segment); k-means ones are
    # sums over all standardised dimensions (hundreds).
    duration_penalty: float = 0.0
    kmeans_frames: int = 100_000  # frames sampled from the train split to fit k-means
    kmeans_steps: int = 300
    kmeans_batch_size: int = 8192
    batch_seconds: float = 60.0  # audio per feature-extraction batch
    dedup: bool = False  # also store ids with consecutive repeats removed
    device: str = "auto"
    # the encoder's forward: fp32, or bf16 / fp16 autocast (GPUs; docs/semantic.md has how far the ids move)
    precision: str = "fp32"
    seed: int = 0
    # a bundle (run folder, saved bundle or Hub id) whose semantic tokenizer (and text tokenizer) this run
    # uses as it is, instead of fitting one: `audiolm finetune` (docs/finetune.md)
    init_from: str = ""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass
class CodecConfig:
    """Stage 2: the acoustic codec, ours (`source-filter`) or a pretrained one by Hub id or folder."""

    # Ours, trained in stage 2: "source-filter" (frame-rate ConvNeXt encoder and decoder, harmonic +
    # noise excitation filtered per STFT bin: audiolm/codec/source_filter.py); or a pretrained
    # transformers codec ("facebook/encodec_24khz", "descript/dac_16khz", "kyutai/mimi", or a local
    # folder of one).
    model: str = "source-filter"
    revision: str = ""
    num_codebooks: int = 8  # codebooks used when encoding (a pretrained codec's bandwidth)
    # our codec's architecture: samples per code frame, STFT hop and window, backbone width and depths
    sample_rate: int = 16000
    hop_length: int = 320
    stft_hop: int = 160
    n_fft: int = 640
    dim: int = 256
    ffn_dim: int = 768
    encoder_layers: int = 4
    decoder_layers: int = 6
    latent_dim: int = 128
    codebook_size: int = 1024
    pitch_steps: int = 0  # log-F0 steps of the pitch codebook (0 = codebook_size - 1: 4-cent steps at 1024)
    quantizer_dropout: bool = True  # train with a random number of codebooks: one model, several bitrates
    commitment_weight: float = 1.0
    segment_seconds: float = 1.0
    batch_seconds: float = 60.0  # padded audio per encoding batch (stage 2's codes of the corpus)
    augment: bool = False  # change each training crop's voice (speed, formants, EQ, band limits, noise)
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)  # the ranges and odds, with augment
    exclude_speakers: list[str] = field(default_factory=list)  # never in codec training (codec-eval reports them apart)
    # a bundle whose codec this run starts from (`audiolm finetune`): trained on for `train.steps` (ours only),
    # or used as it is with steps 0
    init_from: str = ""
    lora: int = 0  # with init_from: LoRA adapters of this rank on the decoder's linear layers, merged when saved
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class LMConfig:
    """One decoder-only LM (the same class for the three tasks) and its training."""

    dim: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 0  # fewer than heads: grouped-query attention; 0 = heads
    ffn_dim: int = 0  # 0 = 8/3 * dim (SwiGLU)
    dropout: float = 0.0
    # acoustic LMs: a voice vector pooled from the known frames of the window's first half (the prompt's)
    # and added at every position (DecoderConfig.voice_pool)
    voice_pool: bool = False
    # acoustic LMs: one position per codec frame, its codebooks' embeddings summed; a frame's first
    # codebook comes from the transformer, the others from a small depth head given the ones before
    # (TaskSpec.frame_positions): a transformer step per frame instead of one per codebook
    frame_positions: bool = False
    depth_layers: int = 2  # the depth head's residual MLPs (frame_positions)
    window_seconds: float = 4.0  # training crop and generation context, in seconds of audio
    # semantic LM only: a released unit LM (TWIST, SLAM; a Hub id or a folder) used instead of training
    # one; stage 3 writes a reference to it over the run's units and measures it (docs/pretrained.md)
    released: str = ""
    released_revision: str = ""
    released_context: int = 1024  # ids per window of the released LM (slamkit trains SLAM with 1024)
    # a bundle whose LM of this task this run starts from (`audiolm finetune`; docs/finetune.md): trained on
    # for `train.steps`, or, with steps 0, referenced as it is; its shape and task come from the bundle
    init_from: str = ""
    lora: int = 0  # with init_from: train LoRA adapters of this rank (PEFT) on the projections instead of all weights
    train: TrainConfig = field(default_factory=_train(
        steps=2000, batch_size=16, learning_rate=1e-3, warmup_steps=100, weight_decay=0.1, mixed_precision="bf16",
        checkpoint_every=250, eval_every=250))


@dataclass
class LanguageModelsConfig:
    """Stage 3: AudioLM's semantic, coarse and fine language models over the token dataset."""

    coarse_codebooks: int = 4  # the first Qc codebooks are "coarse", the others "fine"
    semantic_dedup: bool = False  # semantic LM on ids with repeats removed (re-expanded by mean run length)
    pack_speakers: bool = True  # training windows run on into the same speaker's next utterances
    # the codec's codebook 0 is an ordered pitch scale (our source-filter codec): its ids' embeddings and
    # output rows start as smooth functions of the step (Decoder.init_ordinal)
    ordinal_pitch: bool = False
    # the coarse LM reads and writes that pitch as steps from the register of its window's first half
    # (TaskSpec.relative_pitch): the prompt's register carries over by construction
    relative_pitch: bool = False
    eval_utterances: int = 96  # held-out utterances for perplexities (0 = all)
    semantic: LMConfig = field(default_factory=lambda: LMConfig(window_seconds=10.0))
    coarse: LMConfig = field(default_factory=lambda: LMConfig(window_seconds=4.0))
    fine: LMConfig = field(default_factory=lambda: LMConfig(window_seconds=2.0))
    # the text tasks (TEXT_TASKS), trained by stage 3 when `text` is on or asked for by name
    # (`make stage-3 TASK=reading`): whole utterances up to window_seconds long
    text: bool = False
    reading: LMConfig = field(default_factory=lambda: LMConfig(window_seconds=20.0))  # phones -> semantic ids
    transcription: LMConfig = field(default_factory=lambda: LMConfig(window_seconds=20.0))  # semantic ids -> pieces
    # the transcription LM first spells the phones it hears, then the text (TaskSpec.phones_first)
    transcribe_phones_first: bool = False


@dataclass
class SamplingConfig:
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1 = no nucleus cut


@dataclass
class ContinuationConfig:
    """Stage 4: continue held-out prompts (semantic -> coarse -> fine -> codec decoder)."""

    prompt_seconds: float = 3.0
    seconds: float = 4.0  # generated after the prompt
    prompts: int = 32  # held-out prompts, spread over the voices (0 = all)
    batch_size: int = 16  # prompts generated together
    seed: int = 0
    report_examples: int = 4  # spectrogram figures in the report
    # where stage 4 and the scoreboard run the models: auto = the GPU where there is one (not hashed:
    # it changes the speed, not the results beyond float rounding)
    device: str = "auto"
    judge_utterances: int = 1000  # train-split utterances the speaker judges learn from (spread over it)
    semantic: SamplingConfig = field(default_factory=SamplingConfig)
    coarse: SamplingConfig = field(default_factory=SamplingConfig)
    fine: SamplingConfig = field(default_factory=SamplingConfig)
    # the text tasks (`audiolm speak`, `transcribe`): a transcription is the most likely text
    reading: SamplingConfig = field(default_factory=SamplingConfig)
    transcription: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))


@dataclass
class ShareConfig:
    """What the model card of a shared run says about it (`audiolm push`, `audiolm save`)."""

    license: str = "mit"  # of the trained weights; mind the corpus' license
    language: list[str] = field(default_factory=lambda: ["en"])
    datasets: list[str] = field(default_factory=list)  # Hub dataset ids; data.source is added when it is one
    tags: list[str] = field(default_factory=list)


@dataclass
class TextConfig:
    """Text for the text tasks: the sentencepiece tokenizer stage 1 trains on the corpus' text
    (`audiolm.text.TextTokenizer`), and the eSpeak NG voice whose rules turn text into phonemes."""

    vocab_size: int = 512  # pieces, with <unk>, <s>, </s> and the 256 byte pieces; fewer if the text has fewer
    model_type: str = "unigram"  # sentencepiece: "unigram", "bpe" or "char"
    character_coverage: float = 1.0
    language: str = "en-us"  # grapheme-to-phoneme rules (an eSpeak NG voice)


@dataclass
class PipelineConfig:
    name: str = "demo"
    runs_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    semantic: SemanticConfig = field(default_factory=SemanticConfig)
    text: TextConfig = field(default_factory=TextConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    lm: LanguageModelsConfig = field(default_factory=LanguageModelsConfig)
    continuation: ContinuationConfig = field(default_factory=ContinuationConfig)
    share: ShareConfig = field(default_factory=ShareConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def from_dict(cls: type, values: dict[str, Any], prefix: str = "", base: Any = None) -> Any:
    """Build dataclass `cls` from a (nested) dict, checking every key and type. Keys not given keep
    their value in `base` (by default `cls()`): a section's own defaults, as its parent set them."""
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}' (known: {', '.join(sorted(names))})")
    base = cls() if base is None else base
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _convert(hints[key], value, prefix + key, getattr(base, key))
    return dataclasses.replace(base, **kwargs)


def _convert(hint: Any, value: Any, key: str, default: Any = None) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key + ".", default)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError:
                pass
        raise ConfigError(f"config key '{key}' expects {hint}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return origin(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}' expects true/false, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"config key '{key}' expects {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """'semantic.num_clusters=200' -> (['semantic', 'num_clusters'], 200). Values are YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def merge_override(tree: dict, path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A pipeline YAML as a tree; `base: other.yaml` (relative to the file) is read first and this
    file's keys override it, section by section."""
    if not path.exists():
        raise ConfigError(f"{path}: no such pipeline config")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: a pipeline config must be a mapping")
    base = tree.pop("base", None)
    if base is None:
        return tree
    base_path = (path.parent / base).resolve()
    if base_path in seen:
        raise ConfigError(f"{path}: 'base: {base}' refers back to itself")
    merged = read_yaml(base_path, (*seen, path.resolve()))
    merged.pop("name", None)  # a run is named after its own file unless it says otherwise

    def merge(into: dict, other: dict) -> None:
        for key, value in other.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    merge(merged, tree)
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] = (), cls: type = PipelineConfig) -> Any:
    """Defaults <- YAML file <- key=value overrides, validated."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        tree = read_yaml(path)
        if cls is PipelineConfig:
            tree.setdefault("name", path.stem)
    for text in overrides:
        merge_override(tree, *parse_override(text))
    return from_dict(cls, tree)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(*parts: Any) -> str:
    """A stable short hash of config sections; a stage is up to date when its hash matches."""
    blob = json.dumps([to_dict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
