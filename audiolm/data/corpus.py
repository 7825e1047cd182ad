"""Corpora: any source -> Arrow tables on disk, split `train` and `heldout`, in shards.

Sources: "demo" (synthesized offline), a Hugging Face dataset id (or a local folder laid out
like one: parquet/arrow files; `data.streaming` reads it without downloading it whole), a folder
of audio files (LibriLight's `speaker/book/*.flac` included), or a manifest (.csv/.tsv/.jsonl).
Every clip is converted to `sample_rate` mono. A file longer than `max_seconds` with no text is
cut at silences into segments (`audiolm.data.segment`; LibriLight's audiobooks); one with a
transcript is dropped, since its text cannot be cut with it. Clips shorter than `min_seconds`,
silent or unreadable are dropped too, and every count reported.

Columns: id, speaker, text, duration (seconds), audio (16-bit FLAC bytes at `sample_rate`: about
the size of a FLAC source, a quarter of float samples), source and start (the file or row a clip
comes from and its offset there in seconds), and phones / phone_starts (time-stamped phone labels,
see `audiolm.data.phones`; empty where the source has none: the demo records eSpeak NG's).

The source's items (files, rows, demo sentences) are cut into shards of consecutive items; each
shard is built and written on its own (`build_split`), so a killed run resumes at the first
missing shard and several processes share the shards out (`shards.claim`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from audiolm import audio
from audiolm.config import DataConfig
from audiolm.data import shards
from audiolm.data.phones import frame_phones, phone_events
from audiolm.data.segment import silence_cuts
from audiolm.files import sweep_temporaries

log = logging.getLogger(__name__)

SPLITS = ("train", "heldout")
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}
COUNTS = ("kept", "too short", "too long", "silent", "unreadable", "segmented")

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "speaker": datasets.Value("string"),
        "text": datasets.Value("string"),
        "duration": datasets.Value("float32"),
        "audio": datasets.Value("binary"),
        "source": datasets.Value("string"),
        "start": datasets.Value("float64"),
        "phones": datasets.Sequence(datasets.Value("string")),
        "phone_starts": datasets.Sequence(datasets.Value("int64")),
    }
)
# 2: phone columns; 3: eSpeak phones named by a digit alone ("0", "3") kept; 4: FLAC audio, long
# untranscribed files segmented, source/start columns, sharded
FORMAT = 4
SHARD_BYTES = 256 << 20  # source audio per shard at most (long files: a few per shard)


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


# -- the source's items, in a fixed order, before any audio is read ------------------------------

def split_items(cfg: DataConfig, split: str) -> Sequence[dict] | Iterable[dict]:
    """The raw items of one split: dicts {id, speaker, text} and what to read the audio from (a
    `path`, encoded `bytes`, or a demo `voice`). A sequence where the source can be listed (its
    audio read only when a shard is built), an iterable for a streamed Hub dataset."""
    kind = describe_source(cfg)
    if kind == "demo":
        from audiolm.data.demo import demo_utterances

        items: Sequence[dict] | Iterable[dict] = [
            {"id": u.id, "speaker": u.speaker, "text": u.text, "voice": u.voice}
            for u in demo_utterances(cfg.demo) if u.split == split]
    elif kind == "hub":
        items = _hub_items(cfg, split)
    else:
        rows = _manifest_rows(Path(cfg.source)) if kind == "manifest" else _folder_rows(Path(cfg.source))
        items = [row for row in rows if _split_of(row, cfg.heldout_fraction) == split]
    if cfg.max_utterances:
        items = items[: cfg.max_utterances] if isinstance(items, Sequence) else itertools.islice(items, cfg.max_utterances)
    return items


def _split_of(row: dict, heldout_fraction: float) -> str:
    if row.get("split"):
        return "heldout" if row["split"].lower() in {"heldout", "validation", "valid", "dev", "test", "eval"} else "train"
    return "heldout" if _heldout_by_hash(row["id"], heldout_fraction) else "train"


def _heldout_by_hash(key: str, fraction: float) -> bool:
    digest = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


def _folder_rows(root: Path) -> Iterator[dict]:
    """Audio files under `root`; speaker = the first folder below `root` (LibriLight's
    speaker/book/file.flac and LibriSpeech's speaker/chapter/file.flac alike; a flat folder's
    files are "unknown"); text from a same-named .txt."""
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS):
        rel = path.relative_to(root)
        text_file = path.with_suffix(".txt")
        yield {
            "id": str(rel.with_suffix("")).replace("/", "_"),
            "speaker": rel.parts[0] if len(rel.parts) > 1 else "unknown",
            "text": text_file.read_text().strip() if text_file.exists() else "",
            "path": path,
            "size": path.stat().st_size,
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
            "size": path.stat().st_size if path.exists() else 0,
        }


def _hub_split(cfg: DataConfig, name: str) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a Hub dataset, or several joined by "+" (LibriSpeech's 960 h: "train.clean.100+
    train.clean.360+train.other.500"). Streamed, nothing is downloaded ahead; otherwise only those
    splits' data files are (`load_dataset(..., split=...)` alone would download every split)."""
    if "+" in name:
        return datasets.concatenate_datasets([_hub_split(cfg, part.strip()) for part in name.split("+")])
    if cfg.streaming:
        return datasets.load_dataset(cfg.source, cfg.hub_config or None, split=name, streaming=True)
    builder = datasets.load_dataset_builder(cfg.source, cfg.hub_config or None)
    files = builder.config.data_files or {}
    if name in files and builder.name in {"parquet", "arrow", "json", "csv", "audiofolder"}:
        return datasets.load_dataset(builder.name, data_files={name: files[name]}, split=name,
                                     cache_dir=builder._cache_dir_root)
    return datasets.load_dataset(cfg.source, cfg.hub_config or None, split=name)


class _HubRows(Sequence):
    """The rows of a Hub split as items, each read (with its encoded audio) only when asked for."""

    def __init__(self, ds: datasets.Dataset, cfg: DataConfig, name: str):
        self.ds, self.cfg, self.name = ds, cfg, name

    def __len__(self) -> int:
        return self.ds.num_rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            positions = range(*index.indices(len(self)))
            return [_hub_item(row, i, self.cfg, self.name) for i, row in zip(positions, self.ds.select(positions), strict=True)]
        return _hub_item(self.ds[index], index, self.cfg, self.name)


def _hub_item(row: dict, index: int, cfg: DataConfig, name: str) -> dict:
    item = row[cfg.audio_column]
    return {"id": str(row.get(cfg.id_column, f"{name}_{index:07d}")), "speaker": str(row.get(cfg.speaker_column, "unknown")),
            "text": str(row.get(cfg.text_column, "")), "bytes": item.get("bytes"), "path": item.get("path")}


def _hub_items(cfg: DataConfig, split: str) -> Sequence[dict] | Iterable[dict]:
    name = cfg.train_split if split == "train" else cfg.heldout_split
    ds = _hub_split(cfg, name)
    if cfg.audio_column not in ds.column_names:
        raise ValueError(f"{cfg.source}: no audio column '{cfg.audio_column}' (has {ds.column_names})")
    # Decode ourselves with soundfile: datasets' own decoder would need torchcodec.
    ds = ds.cast_column(cfg.audio_column, datasets.Audio(decode=False))
    if isinstance(ds, datasets.IterableDataset):
        return (_hub_item(row, i, cfg, name) for i, row in enumerate(ds))
    return _HubRows(ds, cfg, name)


def plan_shards(items: Sequence[dict] | Iterable[dict], shard_items: int) -> Iterator[tuple[int, Callable[[], list[dict]]]]:
    """(index, items) of consecutive shards, at most `shard_items` items and SHARD_BYTES of source
    files each; the items of a listed source are read only when asked for (a process skips the
    shards that are done or another's). The plan depends on the source alone."""
    if not isinstance(items, Sequence):
        stream = iter(items)
        for index in itertools.count():
            chunk = list(itertools.islice(stream, shard_items))
            if not chunk:
                return
            yield index, lambda chunk=chunk: chunk
        return
    bounds, start, size = [], 0, 0
    sizes = [item.get("size", 0) for item in items] if isinstance(items, list) else None
    for i in range(len(items)):
        extra = sizes[i] if sizes else 0
        if i > start and (i - start >= shard_items or size + extra > SHARD_BYTES):
            bounds.append((start, i))
            start, size = i, 0
        size += extra
    if len(items) > start:
        bounds.append((start, len(items)))
    for index, (a, b) in enumerate(bounds):
        yield index, lambda a=a, b=b: list(items[a:b])


# -- audio of a shard's items ----------------------------------------------------------------

def _decoded(cfg: DataConfig, items: list[dict], failures: list[str]) -> Iterator[tuple[dict, np.ndarray | None]]:
    """(item, wav at cfg.sample_rate) in order; None where the audio cannot be read (the reason in
    `failures`)."""
    if items and "voice" in items[0]:  # the demo: synthesized, a chunk per fresh process
        from audiolm.data.espeak import synthesize

        for item, out in zip(items, synthesize([(u["text"], u["voice"]) for u in items]), strict=True):
            phones, starts = phone_events(out.phonemes, out.sample_rate, cfg.sample_rate)
            yield {**item, "phones": phones, "phone_starts": starts}, audio.prepare(out.wav, out.sample_rate,
                                                                                   cfg.sample_rate, item["id"])
        return
    for item in items:
        try:
            if item.get("bytes"):
                wav = audio.decode_bytes(item["bytes"], str(item.get("path") or item["id"]), cfg.sample_rate)[0]
            else:
                wav = audio.load(item["path"], cfg.sample_rate)[0]
        except audio.AudioError as err:
            failures.append(str(err))
            yield item, None
            continue
        yield item, wav


def clips(cfg: DataConfig, items: Sequence[dict], counts: Counter, failures: tuple[list[str]]) -> Iterator[dict]:
    """The corpus rows of some source items: decoded, cut, filtered, FLAC-encoded; `counts` and
    `failures[0]` say what was dropped and why."""
    rate = cfg.sample_rate
    for item, wav in _decoded(cfg, list(items), failures[0]):
        if wav is None:
            counts["unreadable"] += 1
            continue
        pieces = [(0, len(wav))]
        if len(wav) > cfg.max_seconds * rate:
            if item["text"] or not cfg.segment:
                counts["too long"] += 1
                continue
            pieces = silence_cuts(wav, rate, cfg.max_seconds)
            counts["segmented"] += 1
        source = str(item.get("path") or item["id"])
        for k, (a, b) in enumerate(pieces):
            piece = wav[a:b]
            if len(piece) < cfg.min_seconds * rate:
                counts["too short"] += 1
                continue
            if float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) < audio.SILENT_RMS:
                counts["silent"] += 1
                continue
            counts["kept"] += 1
            yield {"id": item["id"] if len(pieces) == 1 else f"{item['id']}-{k:04d}", "speaker": item["speaker"],
                   "text": item["text"], "duration": len(piece) / rate, "audio": audio.encode_flac(piece, rate),
                   "source": source, "start": a / rate, "phones": item.get("phones", []),
                   "phone_starts": item.get("phone_starts", [])}


def build_shard(cfg: DataConfig, items: list[dict], path: Path) -> dict:
    """Write the rows of `items` as one shard at `path` (Arrow written in batches: memory holds a
    batch and one decoded file, whatever the shard's size); returns its counts."""
    counts: Counter = Counter()
    failures: list[str] = []
    sweep_temporaries(path.parent, f".cache-{path.name}.")
    cache = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".cache-{path.name}."))
    try:
        try:
            table = datasets.Dataset.from_generator(
                clips, features=FEATURES, cache_dir=str(cache), writer_batch_size=64,
                # tuples: datasets would read lists as data sources to split over processes
                gen_kwargs={"cfg": cfg, "items": tuple(items), "counts": counts, "failures": (failures,)})
        except ValueError:  # nothing kept: datasets refuses an empty generator
            if counts["kept"]:
                raise
            table = datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)  # written as info alone
        info = {"counts": {k: counts.get(k, 0) for k in COUNTS}, "seconds": float(sum(table["duration"])),
                "failures": failures[:5], "items": len(items)}
        shards.write_shard(path, table, info)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return info


def build_split(cfg: DataConfig, split: str, folder: Path, progress: bool = True) -> None:
    """Build the missing shards of one split under `folder/split/`; under `accelerate launch` the
    processes claim the shards in turn (`shards.claim`), and each shard is the same whoever builds it;
    `progress`: a bar of this process' items (the main process')."""
    shards.bound_heap()
    items = split_items(cfg, split)
    total = len(items) if isinstance(items, Sequence) else None
    (Path(folder) / split).mkdir(parents=True, exist_ok=True)
    with tqdm(total=total, desc=f"corpus {split}", unit="item", leave=False, disable=None if progress else True) as bar:
        for index, read in plan_shards(items, cfg.shard_size):
            if shards.build(folder, split, index):
                got = read()
                build_shard(cfg, got, shards.shard_path(folder, split, index))
                bar.update(len(got))


def split_report(folder: Path, split: str) -> dict:
    """The counts of a built split, summed over its shards, with a few reasons files were unreadable."""
    infos = shards.shard_infos(folder, split)
    counts = {k: sum(info["counts"].get(k, 0) for info in infos) for k in COUNTS}
    for line in [f for info in infos for f in info.get("failures", [])][:5]:
        log.warning("skipped %s", line)
    return {**counts, "seconds": sum(info["seconds"] for info in infos)}


def check_split(cfg: DataConfig, split: str, report: dict) -> None:
    if not report["kept"]:
        counts = {k: v for k, v in report.items() if k in COUNTS}
        raise ValueError(f"{cfg.source}: split '{split}' has no usable clips ({counts})")


def build_corpus(cfg: DataConfig, folder: Path) -> tuple[datasets.DatasetDict, dict[str, dict]]:
    """Read, convert and filter the source into sharded splits under `folder` in this process;
    returns the dataset and per-split counts (stage 0 does the same over several processes)."""
    report = {}
    for split in SPLITS:
        build_split(cfg, split, folder)
        shards.clear_claims(folder)
        report[split] = split_report(folder, split)
        check_split(cfg, split, report[split])
    return shards.load_splits(folder, SPLITS), report


# -- reading a corpus ------------------------------------------------------------------------

def has_text(ds: datasets.Dataset) -> bool:
    """Whether any row has a transcript (LibriLight's audiobooks have none)."""
    return any(bool(t) for batch in ds.select_columns(["text"]).iter(batch_size=4096) for t in batch["text"])


def has_phones(ds: datasets.Dataset) -> bool:
    return "phones" in ds.column_names and any(len(p) for p in ds["phones"])


def read_frame_phones(ds: datasets.Dataset, frames: list[int], rate: int, frame_rate: float = 50.0) -> list[list[str]]:
    """Each row's phone label per frame (`frames[i]` frames for row i), from its phone alignment."""
    rows = ds.select_columns(["phones", "phone_starts"])
    return [frame_phones(r["phones"], r["phone_starts"], n, rate, frame_rate) for r, n in zip(rows, frames, strict=True)]


def read_wavs(ds: datasets.Dataset, indices: list[int], from_rate: int, to_rate: int) -> list[np.ndarray]:
    """The `audio` of the given rows as float32 arrays, resampled from the corpus rate to `to_rate`."""
    return list(CorpusAudio(ds, indices, from_rate, to_rate))


def wav_batches(ds: datasets.Dataset, indices: list[int], from_rate: int, to_rate: int,
                batch_seconds: float, sort: bool = True) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """Batches of (row indices, wavs at `to_rate`), at most `batch_seconds` of padded audio each;
    sorted by length within the given indices so little of a batch is padding."""
    durations = ds.select_columns(["duration"])[indices]["duration"] if indices else []
    order = sorted(range(len(indices)), key=lambda i: durations[i]) if sort else range(len(indices))
    batch: list[int] = []
    longest = 0.0
    for pos in order:
        if batch and max(longest, durations[pos]) * (len(batch) + 1) > batch_seconds:
            yield batch, read_wavs(ds, batch, from_rate, to_rate)
            batch, longest = [], 0.0
        batch.append(indices[pos])
        longest = max(longest, durations[pos])
    if batch:
        yield batch, read_wavs(ds, batch, from_rate, to_rate)


RELEASE_EVERY = 256  # reads of a corpus between unmappings of its pages (`shards.release_mapped`)


class CorpusAudio(Sequence):
    """Rows of a corpus split as a list of waveforms, each decoded from the memory-mapped table when
    read: a trainer takes crops of a corpus of any size without holding it in memory."""

    def __init__(self, ds: datasets.Dataset, rows: list[int], from_rate: int, to_rate: int):
        self.table, self.rows, self.from_rate, self.to_rate = ds.select_columns(["audio", "id"]), rows, from_rate, to_rate
        self.reads = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> np.ndarray:
        self.reads += 1
        if self.reads % RELEASE_EVERY == 0:  # a training's crops, over the whole corpus: its pages unmapped
            shards.release_mapped()
        row = self.table[self.rows[index]]
        return audio.resample(audio.decode_bytes(row["audio"], row["id"])[0], self.from_rate, self.to_rate)


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
