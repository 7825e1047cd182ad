"""Corpora: any source -> one Arrow `DatasetDict` on disk with splits `train` and `heldout`.

Sources: "demo" (synthesized offline), a Hugging Face dataset id (or a local folder laid out
like one: parquet/arrow files), a folder of audio files, or a manifest (.csv/.tsv/.jsonl).
Every clip is converted to `sample_rate` mono; clips outside [min_seconds, max_seconds] and
unreadable files are dropped, and the counts reported.

Columns: id, speaker, text, duration (seconds), audio (float32 samples at `sample_rate`), and
phones / phone_starts (time-stamped phone labels, see `audiolm.data.phones`; empty where the
source has none: the demo corpus records eSpeak NG's phoneme events).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.config import DataConfig
from audiolm.data.phones import frame_phones, phone_events

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout")
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "speaker": datasets.Value("string"),
        "text": datasets.Value("string"),
        "duration": datasets.Value("float32"),
        "audio": datasets.Sequence(datasets.Value("float32")),
        "phones": datasets.Sequence(datasets.Value("string")),
        "phone_starts": datasets.Sequence(datasets.Value("int64")),
    }
)
FORMAT = 3  # 2: phone columns; 3: eSpeak phones named by a digit alone ("0", "3") kept


def describe_source(cfg: DataConfig) -> str:
    path = Path(cfg.source)
    if cfg.source == "demo":
        return "demo"
    if path.is_file():
        return "manifest"
    if path.is_dir():
        has_tables = any(path.glob("**/*.parquet")) or any(path.glob("**/*.arrow"))
        return "hub" if has_tables else "folder"
    return "hub"


def _raw_utterances(cfg: DataConfig, split: str) -> Iterator[dict]:
    """Yield {id, speaker, text, and either wav+rate, or path, or bytes} for one split."""
    kind = describe_source(cfg)
    if kind == "demo":
        from audiolm.data.demo import demo_utterances
        from audiolm.data.espeak import synthesize

        utts = [u for u in demo_utterances(cfg.demo) if u.split == split]
        for utt, out in zip(utts, synthesize([(u.text, u.voice) for u in utts]), strict=True):
            phones, starts = phone_events(out.phonemes, out.sample_rate, cfg.sample_rate)
            yield {"id": utt.id, "speaker": utt.speaker, "text": utt.text, "wav": out.wav, "rate": out.sample_rate,
                   "phones": phones, "phone_starts": starts}
    elif kind == "hub":
        yield from _hub_utterances(cfg, split)
    else:
        rows = _manifest_rows(Path(cfg.source)) if kind == "manifest" else _folder_rows(Path(cfg.source))
        for row in rows:
            if row.get("split"):
                row_split = _normalize_split(row["split"])
            else:
                row_split = "heldout" if _heldout_by_hash(row["id"], cfg.heldout_fraction) else "train"
            if row_split == split:
                yield row


def _normalize_split(name: str) -> str:
    return "heldout" if name.lower() in {"heldout", "validation", "valid", "dev", "test", "eval"} else "train"


def _heldout_by_hash(key: str, fraction: float) -> bool:
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def _folder_rows(root: Path) -> Iterator[dict]:
    """Audio files under `root`; speaker = the parent folder; text from a same-named .txt."""
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        rel = path.relative_to(root)
        text_file = path.with_suffix(".txt")
        yield {
            "id": str(rel.with_suffix("")).replace("/", "_"),
            "speaker": rel.parent.name if rel.parent != Path(".") else "unknown",
            "text": text_file.read_text().strip() if text_file.exists() else "",
            "path": path,
        }


def _manifest_rows(manifest: Path) -> Iterator[dict]:
    suffix = manifest.suffix.lower()
    if suffix in {".csv", ".tsv"}:
        table = datasets.load_dataset("csv", data_files=str(manifest), delimiter="\t" if suffix == ".tsv" else ",")["train"]
    elif suffix in {".jsonl", ".json"}:
        table = datasets.load_dataset("json", data_files=str(manifest))["train"]
    else:
        raise ValueError(f"{manifest}: a manifest must be .csv, .tsv or .jsonl")
    if "path" not in table.column_names:
        raise ValueError(f"{manifest}: a manifest needs a 'path' column (has {table.column_names})")
    for i, row in enumerate(table):
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        yield {
            "id": str(row.get("id") or path.stem or i),
            "speaker": str(row.get("speaker") or "unknown"),
            "text": str(row.get("text") or ""),
            "split": row.get("split") or "",
            "path": path,
        }


def _hub_utterances(cfg: DataConfig, split: str) -> Iterator[dict]:
    name = cfg.train_split if split == "train" else cfg.heldout_split
    ds = datasets.load_dataset(cfg.source, cfg.hub_config or None, split=name)
    if cfg.audio_column not in ds.column_names:
        raise ValueError(f"{cfg.source}: no audio column '{cfg.audio_column}' (has {ds.column_names})")
    # Decode ourselves with soundfile: datasets' own decoder would need torchcodec.
    ds = ds.cast_column(cfg.audio_column, datasets.Audio(decode=False))
    for i, row in enumerate(ds):
        item = row[cfg.audio_column]
        yield {
            "id": str(row.get(cfg.id_column, f"{name}_{i:07d}")),
            "speaker": str(row.get(cfg.speaker_column, "unknown")),
            "text": str(row.get(cfg.text_column, "")),
            "bytes": item.get("bytes"),
            "path": item.get("path"),
        }


def _decode(row: dict, rate: int) -> np.ndarray:
    if "wav" in row:
        return audio.prepare(row["wav"], row["rate"], rate, row["id"])
    if row.get("bytes"):
        return audio.decode_bytes(row["bytes"], str(row.get("path") or row["id"]), rate)[0]
    return audio.load(row["path"], rate)[0]


def _split_rows(cfg: DataConfig, split: str, counts: Counter, failures: list[str]) -> Iterator[dict]:
    kept = 0
    for row in tqdm(_raw_utterances(cfg, split), desc=f"corpus {split}", unit="utt", leave=False):
        if cfg.max_utterances and kept >= cfg.max_utterances:
            break
        try:
            wav = _decode(row, cfg.sample_rate)
        except audio.AudioError as err:
            counts["unreadable"] += 1
            failures.append(str(err))
            continue
        duration = wav.shape[0] / cfg.sample_rate
        if duration < cfg.min_seconds:
            counts["too short"] += 1
            continue
        if duration > cfg.max_seconds:
            counts["too long"] += 1
            continue
        counts["kept"] += 1
        kept += 1
        yield {"id": row["id"], "speaker": row["speaker"], "text": row["text"], "duration": duration, "audio": wav,
               "phones": row.get("phones", []), "phone_starts": row.get("phone_starts", [])}


def build_corpus(cfg: DataConfig, cache_dir: Path) -> tuple[datasets.DatasetDict, dict[str, dict[str, int]]]:
    """Read, convert and filter the source; returns the dataset and per-split counts."""
    parts, report = {}, {}
    for split in SPLITS:
        counts: Counter = Counter()
        failures: list[str] = []
        try:
            parts[split] = datasets.Dataset.from_generator(
                _split_rows,
                gen_kwargs={"cfg": cfg, "split": split, "counts": counts, "failures": failures},
                features=FEATURES,
                cache_dir=str(cache_dir),
            )
        except ValueError:
            if counts["kept"]:
                raise
        report[split] = {k: counts.get(k, 0) for k in ("kept", "too short", "too long", "unreadable")}
        for line in failures[:5]:
            log.warning("skipped %s", line)
        if not counts["kept"]:
            raise ValueError(f"{cfg.source}: split '{split}' has no usable clips ({report[split]})")
    return datasets.DatasetDict(parts), report


def has_phones(ds: datasets.Dataset) -> bool:
    return "phones" in ds.column_names and any(len(p) for p in ds["phones"])


def read_frame_phones(ds: datasets.Dataset, frames: list[int], rate: int, frame_rate: float = 50.0) -> list[list[str]]:
    """Each row's phone label per frame (`frames[i]` frames for row i), from its phone alignment."""
    rows = ds.select_columns(["phones", "phone_starts"])
    return [frame_phones(r["phones"], r["phone_starts"], n, rate, frame_rate) for r, n in zip(rows, frames, strict=True)]


def read_wavs(ds: datasets.Dataset, indices: list[int], from_rate: int, to_rate: int) -> list[np.ndarray]:
    """The `audio` of the given rows as float32 arrays, resampled from the corpus rate to `to_rate`."""
    table = ds.select_columns(["audio"]).with_format("numpy")
    return [audio.resample(table[i]["audio"], from_rate, to_rate) for i in indices]


def select_speakers(ds: datasets.Dataset, speakers: list[str] | set[str]) -> datasets.Dataset:
    """The rows of `ds` read by one of `speakers` (in their order)."""
    keep = set(speakers)
    return ds.select([i for i, s in enumerate(ds["speaker"]) if s in keep])


def voice_groups(corpus: datasets.DatasetDict, never_trained: list[str] | tuple[str, ...] = ()) -> dict[str, list[str]]:
    """The held-out split's speakers in two groups: "training voices", which also read train-split
    utterances, and "unseen voices", which read none (or are in `never_trained`, speakers a stage
    kept out of its training). Empty groups are left out; every figure is reported per group."""
    train = set(corpus["train"]["speaker"]) - set(never_trained) if "train" in corpus else set()
    speakers = sorted(set(corpus["heldout"]["speaker"]))
    groups = {"training voices": [s for s in speakers if s in train], "unseen voices": [s for s in speakers if s not in train]}
    return {name: members for name, members in groups.items() if members}
