"""Stage 3: train the semantic, coarse and fine language models on the token dataset.

Outputs per task: `runs/<name>/lm-<task>/` (the model, loadable with `Decoder.from_pretrained`,
with its `TaskSpec` inside) and `runs/<name>/lm-<task>-train/` (checkpoints, TensorBoard,
log.jsonl; a killed run resumes from the last checkpoint). The held-out perplexity and the unigram
perplexity of the same tokens are recorded in each model's stage.json.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import numpy as np
import psutil  # accelerate's own dependency
import torch
from tqdm.auto import tqdm

from audiolm.config import LMConfig, PipelineConfig, config_hash, to_dict
from audiolm.data import shards
from audiolm.data.token_rows import TextRows, TokenRows, table_rows
from audiolm.hub import part_hash
from audiolm.lm.model import Decoder, DecoderConfig
from audiolm.lm.sequences import TASKS, TEXT_TASKS, TaskSpec, mean_run_length, unigram_perplexity, unit_runs
from audiolm.pipeline import rundir
from audiolm.text import TextTokenizer
from audiolm.tokens import TokenLayout
from audiolm.train import distributed
from audiolm.train.lm_task import LMTask, Utterance
from audiolm.train.trainer import Trainer


def tokens_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "tokens"


def read_tokens(cfg: PipelineConfig) -> tuple[datasets.DatasetDict, dict]:
    """Stage 1's token table with stage 2's acoustic codes beside it, row for row (both memory-mapped:
    nothing is copied), and their markers in one (the codes' keys start with `acoustic_`)."""
    folder, codes_folder = tokens_dir(cfg), cfg.run_dir / "acoustic"
    marker, codes_marker = rundir.read_marker(folder), rundir.read_marker(codes_folder)
    if marker is None or codes_marker is None:
        raise FileNotFoundError(f"{folder}, {codes_folder}: no semantic and acoustic tokens yet; run stages 1 and 2 "
                                "first (make stage-2)")
    tokens, codes = shards.load_splits(folder), shards.load_splits(codes_folder)
    joined = {}
    for split, table in tokens.items():
        # compared as Arrow columns (in C; a list of Python strings per table took 68 s at 1,000 h)
        if split not in codes or not table.data.table.column("id").equals(codes[split].data.table.column("id")):
            raise ValueError(f"{codes_folder}: split '{split}' does not list the utterances of {folder}; rerun stage 2")
        joined[split] = datasets.concatenate_datasets([table, codes[split].remove_columns(["id"])], axis=1)
    info = {k: v for k, v in codes_marker.items() if k.startswith("acoustic_") or k in ("codec", "codec_config")}
    return datasets.DatasetDict(joined), {**marker, **info}


def layout_of(cfg: PipelineConfig, marker: dict) -> TokenLayout:
    return TokenLayout(semantic_size=marker["semantic_vocab_size"], codebook_size=marker["acoustic_codebook_size"],
                       num_codebooks=marker["acoustic_num_codebooks"], coarse_codebooks=cfg.lm.coarse_codebooks)


# rows read for the statistics a task is set up with (mean run length, median pitch, unigram
# perplexity): spread over the training split, the same few thousand whatever its size
STATS_ROWS = 4000


def utterances(ds: datasets.Dataset, indices: list[int] | None = None) -> TokenRows:
    """The (semantic ids, codes) of a split's rows, read from the memory-mapped table when indexed."""
    return TokenRows(ds, None if indices is None else np.asarray(indices))


def sample(rows: Sequence[Utterance], wanted: int = STATS_ROWS, runs: int = 40) -> list[Utterance]:
    """`wanted` rows (all, if there are fewer), in `runs` runs of consecutive rows spread over the
    split: as representative as rows spread one by one, and a few pages of the mapped table read
    instead of one (with the kernel's read-around, 64 KB or more) per row: at 1,000 h, 0.5 GB."""
    if len(rows) <= wanted:
        return list(rows)
    size = wanted // runs
    starts = np.linspace(0, len(rows) - size, runs).round().astype(int)
    return [rows[i] for start in starts for i in range(start, start + size)]


def speaker_codes(ds: datasets.Dataset) -> np.ndarray:
    """Each row's speaker as a small integer (Arrow's dictionary encoding: no Python string per row)."""
    column = ds.data.table.column("speaker").dictionary_encode().combine_chunks()
    codes, rows = column.indices.to_numpy(zero_copy_only=False), table_rows(ds)
    return codes if rows is None else codes[rows]


def text_dir(cfg: PipelineConfig) -> Path:
    return cfg.run_dir / "text"


def read_text_tokenizer(cfg: PipelineConfig) -> TextTokenizer:
    folder = text_dir(cfg)
    if rundir.read_marker(folder) is None:
        raise FileNotFoundError(f"{folder}: no text tokenizer yet; run stage 1 first (make stage-1)")
    return TextTokenizer.from_pretrained(folder)


def text_utterances(ds: datasets.Dataset, text: TextTokenizer, indices: list[int] | None = None) -> TextRows:
    """The text tasks' utterances: the rows with text, read from the mapped table and tokenized when
    indexed (`positions`: their rows in `ds`)."""
    if "phonemes" not in ds.column_names:
        raise ValueError("the token dataset has no 'phonemes' column (made before the text tasks); run stage 1 "
                         "again with force=true")
    return TextRows(ds, text, None if indices is None else np.asarray(indices))


def text_task_spec(cfg: PipelineConfig, task: str, marker: dict, text: TextTokenizer, train: Sequence[Utterance]) -> TaskSpec:
    """A text task over deduplicated semantic ids, with the text tokenizer's phones and pieces; run
    lengths counted on a spread of the training utterances."""
    layout = dataclasses.replace(layout_of(cfg, marker), phone_size=len(text.phones), piece_size=text.vocab_size)
    semantic = [s for s, _ in sample(train)]
    return TaskSpec(task=task, layout=layout, semantic_rate=marker["semantic_frame_rate"],
                    acoustic_rate=marker["acoustic_frame_rate"], window_seconds=getattr(cfg.lm, task).window_seconds,
                    dedup=True, mean_run=mean_run_length(semantic), unit_runs=unit_runs(semantic, layout.semantic_size),
                    end_piece=text.end_piece, phones_first=task == "transcription" and cfg.lm.transcribe_phones_first)


def task_spec(cfg: PipelineConfig, task: str, marker: dict, train: Sequence[Utterance]) -> TaskSpec:
    lm: LMConfig = getattr(cfg.lm, task)
    if lm.voice_pool and task == "semantic":
        raise ValueError("lm.semantic.voice_pool: the semantic LM has no acoustic prompt to pool a voice from")
    if lm.frame_positions and task == "semantic":
        raise ValueError("lm.semantic.frame_positions: the semantic LM has one id per frame already")
    dedup = task == "semantic" and cfg.lm.semantic_dedup
    relative = task == "coarse" and cfg.lm.relative_pitch
    rows = sample(train)  # read once for both statistics
    return TaskSpec(task=task, layout=layout_of(cfg, marker), semantic_rate=marker["semantic_frame_rate"],
                    acoustic_rate=marker["acoustic_frame_rate"], window_seconds=lm.window_seconds, dedup=dedup,
                    mean_run=mean_run_length([s for s, _ in rows]), relative_pitch=relative,
                    default_pitch=median_pitch(rows) if relative else 0, frame_positions=lm.frame_positions)


def median_pitch(rows: Sequence[Utterance]) -> int:
    """The median voiced id of codebook 0 (a pitch scale, 0 = unvoiced) over these (training) codes."""
    pitch = np.concatenate([c[0] for _, c in rows])
    return int(np.median(pitch[pitch > 0])) if (pitch > 0).any() else 0


RELEASED_KEYS = ("released", "released_revision", "released_context")


def _lm_section(lm: LMConfig) -> dict:
    """An LM's config as its hash sees it: without the released-model keys when none is named, nor
    the fine-tuning ones when it starts from nothing, so runs made before those keys existed stay up
    to date. Starting from a bundle, the parent's content hash stands in for the shape keys."""
    values = to_dict(lm)
    if not lm.released:
        values = {k: v for k, v in values.items() if k not in RELEASED_KEYS}
    if not lm.init_from:
        return {k: v for k, v in values.items() if k not in ("init_from", "lora")}
    return values


def lm_hash(cfg: PipelineConfig, task: str, marker: dict) -> str:
    lm = getattr(cfg.lm, task)
    parent = [part_hash(lm.init_from, f"lm-{task}")] if lm.init_from else []
    return config_hash("lm", task, _lm_section(lm), *parent, cfg.lm.coarse_codebooks, cfg.lm.eval_utterances,
                       cfg.lm.pack_speakers,
                       cfg.lm.semantic_dedup if task == "semantic" else None, marker["config_hash"], marker["acoustic_hash"],
                       *([True] if cfg.lm.ordinal_pitch and task != "semantic" else []),
                       *(["relative_pitch"] if cfg.lm.relative_pitch and task == "coarse" else []),
                       *([rundir.read_marker(text_dir(cfg))["config_hash"]] if task in TEXT_TASKS else []),
                       *(["phones_first"] if task == "transcription" and cfg.lm.transcribe_phones_first else []))


def build_model(spec: TaskSpec, lm: LMConfig, ordinal_pitch: bool = False) -> Decoder:
    model = Decoder(DecoderConfig(vocab_size=spec.vocab_size, dim=lm.dim, layers=lm.layers, heads=lm.heads,
                                  kv_heads=lm.kv_heads, ffn_dim=lm.ffn_dim, dropout=lm.dropout,
                                  max_positions=spec.max_length(), voice_pool=lm.voice_pool, group=spec.group,
                                  depth_layers=lm.depth_layers), task=spec.to_dict())
    if ordinal_pitch and spec.is_acoustic:  # id 0 of codebook 0 is "unvoiced": not on the scale
        model.init_ordinal(spec.layout.codebook_offset(0) + 1, spec.layout.codebook_offset(1))
    return model


def train_lm(cfg: PipelineConfig, task: str, marker: dict, train: Sequence[Utterance], heldout: Sequence[Utterance],
             speakers: Sequence | np.ndarray | None, out: Path, spec: TaskSpec | None = None, model: Decoder | None = None,
             save: Callable[[Decoder, Path], None] | None = None) -> dict:
    """Trains a new model (or `model`, a bundle's: audiolm.pipeline.adapt) and saves it to `out` (or
    with `save`)."""
    lm: LMConfig = getattr(cfg.lm, task)
    spec = spec or task_spec(cfg, task, marker, train)
    torch.manual_seed(lm.train.seed)
    model = model if model is not None else build_model(spec, lm, cfg.lm.ordinal_pitch)
    work = cfg.run_dir / f"lm-{task}-train"
    distributed.on_main(rundir.prepare_partial, work, lm_hash(cfg, task, marker), f"lm-{task}-train")
    lm_task = LMTask(model, spec, lm.train, train, heldout, speakers)
    distributed.print_main(f"stage 3 ({task} LM): {model.num_parameters() / 1e6:.1f}M parameters, vocabulary {spec.vocab_size}, "
          f"windows of {lm.window_seconds:g} s (up to {spec.max_length()} tokens), {lm.train.steps} steps")
    trainer = Trainer(lm_task, lm.train, work, betas=(0.9, 0.95))
    start = time.monotonic()
    last: dict[str, float] = {}

    def report(m: dict[str, float]) -> None:
        last.update(m)
        tqdm.write(f"  step {trainer.step}: held-out loss {m['loss']:.3f}, perplexity {m['perplexity']:.1f}")

    trainer.fit(on_eval=report)
    seconds = time.monotonic() - start
    model = trainer.accelerator.unwrap_model(lm_task.models["lm"]).cpu().eval()

    def export() -> dict:  # the main process' (under `accelerate launch`, the others wait for it)
        lm_task.models["lm"] = model
        # the trainer evaluates at its last step (or when its time is up); a run resumed finished has not
        metrics = dict(last) if last else lm_task.evaluate()
        # the unigram baseline counts a spread of the training utterances (all of the demo's)
        unigram = unigram_perplexity(spec, [spec.targets(*u) for u in sample(train)], [spec.targets(*u) for u in heldout])
        (save or type(model).save_pretrained)(model, out)
        print(f"stage 3 ({task} LM): held-out perplexity {metrics['perplexity']:.2f} vs unigram {unigram:.2f}")
        return {"task": task, "parameters": model.num_parameters(), "steps": trainer.step,
                "heldout_loss": metrics["loss"], "heldout_perplexity": metrics["perplexity"],
                "unigram_perplexity": unigram, "heldout_utterances": len(heldout),
                "train_seconds": round(seconds, 1), "steps_this_run": trainer.step - trainer.start_step,
                # from the process' start to the first step: reading the token table, building the model
                "startup_seconds": round(trainer.started - psutil.Process().create_time(), 1),
                "processes": trainer.world}

    return distributed.on_main(export)


def use_released(cfg: PipelineConfig, marker: dict, train: Sequence[Utterance], heldout: Sequence[Utterance],
                 out: Path) -> dict:
    """`lm.semantic.released`: a reference to the released unit LM over the run's units (re-expanded by
    their mean run in the training split), and its held-out perplexity on them (no training)."""
    from audiolm.eval.lm_score import SpeechLMScorer
    from audiolm.interop.language_models import write_reference

    lm = cfg.lm.semantic
    semantic = [s for s, _ in sample(train)]
    model = write_reference(out, lm.released, marker["semantic_vocab_size"], marker["semantic_frame_rate"],
                            lm.released_revision, dedup=True, mean_run=mean_run_length(semantic), context=lm.released_context)
    spec = TaskSpec.from_dict(model.task)
    pairs = SpeechLMScorer(None, model, device="auto").log_likelihoods([s for s, _ in heldout])
    perplexity = float(np.exp(-sum(t for t, _ in pairs) / max(1, sum(n for _, n in pairs))))
    unigram = unigram_perplexity(spec, [spec.targets(s, None) for s in semantic], [spec.targets(s, None) for s, _ in heldout])
    print(f"stage 3 (semantic LM): the released {lm.released} ({model.num_parameters() / 1e6:.1f}M parameters): held-out "
          f"perplexity {perplexity:.2f} vs unigram {unigram:.2f}, on the run's deduplicated units")
    return {"task": "semantic", "released": lm.released, "parameters": model.num_parameters(), "steps": 0,
            "heldout_perplexity": perplexity, "unigram_perplexity": unigram, "heldout_utterances": len(heldout),
            "train_seconds": 0.0}


def train_text_lm(cfg: PipelineConfig, task: str, marker: dict, ds: datasets.DatasetDict, out: Path) -> dict:
    """A text task: whole utterances no longer than its window (the longer ones are counted out)."""
    text = read_text_tokenizer(cfg)
    train = text_utterances(ds["train"], text)
    heldout = text_utterances(ds["heldout"], text, rundir.spread_indices(ds["heldout"].num_rows, cfg.lm.eval_utterances))
    if not len(train):
        raise ValueError(f"the {task} LM needs text: the corpus' training split has none")
    spec = text_task_spec(cfg, task, marker, text, train)
    fits = train.lengths() <= spec.window
    if not fits.all():
        distributed.print_main(f"stage 3 ({task} LM): {int((~fits).sum())} of {len(train)} training utterances are "
                               f"longer than lm.{task}.window_seconds ({spec.window_seconds:g} s) and are left out")
    kept = train.keep(fits)
    speakers = speaker_codes(ds["train"])[kept.positions] if cfg.lm.pack_speakers else None
    return train_lm(cfg, task, marker, kept, list(heldout.keep(heldout.lengths() <= spec.window)), speakers, out, spec)


def run(cfg: PipelineConfig, force: bool = False, tasks: list[str] | None = None) -> Path:
    if not tasks:
        tasks = list(TASKS)
        if cfg.lm.text and rundir.read_marker(text_dir(cfg)) is None:  # stage 1 found no text in the corpus
            distributed.print_main("stage 3: the corpus has no text (stage 1 made no text tokenizer): the reading and "
                                   "transcription LMs are skipped")
        elif cfg.lm.text:
            tasks += list(TEXT_TASKS)
    for task in tasks:
        if task not in TASKS + TEXT_TASKS:
            raise ValueError(f"unknown task '{task}' (known: {', '.join(TASKS + TEXT_TASKS)})")
    ds, marker = read_tokens(cfg)
    codec_model = marker.get("codec_config", {}).get("model")
    for key in ("ordinal_pitch", "relative_pitch"):
        if getattr(cfg.lm, key) and codec_model != "source-filter" and not cfg.codec.init_from:
            raise ValueError(f"lm.{key} needs a codec whose codebook 0 is a pitch scale (ours, source-filter); "
                             f"the tokens in {tokens_dir(cfg)} come from '{codec_model}'")
    speakers = speaker_codes(ds["train"]) if cfg.lm.pack_speakers else None
    split_rows: list = []  # the training and held-out rows, read once for all tasks that need them

    def rows() -> tuple[TokenRows, list[Utterance]]:
        if not split_rows:
            split_rows.extend([utterances(ds["train"]), list(utterances(
                ds["heldout"], rundir.spread_indices(ds["heldout"].num_rows, cfg.lm.eval_utterances)))])
        return split_rows[0], split_rows[1]

    for task in tasks:
        out = cfg.run_dir / f"lm-{task}"
        digest = lm_hash(cfg, task, marker)
        if not force and rundir.is_up_to_date(out, digest, saved_part=True):
            distributed.print_main(f"stage 3 ({task} LM): {out} is up to date")
            continue
        if getattr(cfg.lm, task).init_from:
            if task in TEXT_TASKS:
                raise ValueError(f"lm.{task}.init_from: the text LMs are not fine-tuned (docs/finetune.md); train "
                                 "them on the fine-tuned run's tokens instead")
            from audiolm.pipeline import adapt  # it builds on this module

            info = adapt.adapt_lm(cfg, task, marker, *rows(), speakers, out)
        elif task in TEXT_TASKS:
            info = train_text_lm(cfg, task, marker, ds, out)
        elif getattr(cfg.lm, task).released:
            if task != "semantic":
                raise ValueError(f"lm.{task}.released: only the semantic LM can be a released unit LM")
            info = distributed.on_main(use_released, cfg, marker, *rows(), out)
        else:
            info = train_lm(cfg, task, marker, *rows(), speakers, out)
        if distributed.is_main():
            rundir.write_marker(out, digest, stage=f"lm-{task}", **info)
            rundir.write_resolved_config(cfg, out)
    return cfg.run_dir
