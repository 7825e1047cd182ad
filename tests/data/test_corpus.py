"""Every corpus source goes through `datasets` and comes out the same: 16 kHz mono, filtered, split."""

import json
import shutil
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf

from audiolm import audio
from audiolm.config import DataConfig, DemoCorpusConfig
from audiolm.data.corpus import COUNTS, build_corpus, describe_source, read_wavs


@pytest.fixture
def audio_folder(tmp_path, speech):
    wav, rate = speech
    root = tmp_path / "folder"
    for spk in ("alice", "bob"):
        (root / spk).mkdir(parents=True)
        for i in range(12):
            sf.write(root / spk / f"{spk}_{i}.wav", wav[: len(wav) * (i + 4) // 16], rate)
            (root / spk / f"{spk}_{i}.txt").write_text(f"utterance {i}\n")
    stereo = np.stack([audio.resample(wav, rate, 44100)] * 2, axis=1)
    sf.write(root / "alice" / "stereo44k.wav", stereo, 44100)
    sf.write(root / "bob" / "tiny.wav", wav[:1000], rate)  # too short
    (root / "bob" / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    return root


def test_folder_corpus_converts_filters_and_reports(tmp_path, audio_folder):
    cfg = DataConfig(source=str(audio_folder), min_seconds=0.5, heldout_fraction=0.2)
    assert describe_source(cfg) == "folder"
    ds, report = build_corpus(cfg, tmp_path / "cache")
    total = {k: report["train"][k] + report["heldout"][k] for k in COUNTS}
    # 24 clips + 1 stereo 44.1 kHz clip kept; the 1000-sample clip is too short; the broken file unreadable
    assert total == {"kept": 25, "too short": 1, "too long": 0, "silent": 0, "unreadable": 1, "segmented": 0}
    rows = datasets.concatenate_datasets([ds["train"], ds["heldout"]])
    assert set(rows["speaker"]) == {"alice", "bob"}
    index = rows["id"].index("alice_stereo44k")
    (wav,) = read_wavs(rows, [index], 16000, 16000)
    assert abs(len(wav) / 16000 - rows[index]["duration"]) < 1e-3 and rows[index]["source"].endswith("stereo44k.wav")
    assert all(t.startswith("utterance") for t in rows.filter(lambda r: r["id"] != "alice_stereo44k")["text"])
    assert min(rows["duration"]) >= 0.5


def test_manifest_with_split_column(tmp_path, audio_folder):
    manifest = tmp_path / "m.jsonl"
    lines = [{"path": str(audio_folder / "alice" / f"alice_{i}.wav"), "text": f"t{i}", "speaker": "a",
              "split": "validation" if i < 3 else "train"} for i in range(8)]
    manifest.write_text("\n".join(json.dumps(x) for x in lines))
    ds, _ = build_corpus(DataConfig(source=str(manifest), min_seconds=0.1), tmp_path / "cache")
    assert ds["heldout"].num_rows == 3 and ds["train"].num_rows == 5
    assert ds["heldout"]["text"] == ["t0", "t1", "t2"]


def test_hub_layout_folder_goes_through_load_dataset(tmp_path, audio_folder):
    """A folder of parquet files loads through `datasets.load_dataset`, the code that loads a Hub id."""
    hub = tmp_path / "hub"
    hub.mkdir()
    for split, ids in (("train", range(0, 8)), ("validation", range(8, 11)), ("test", range(11, 13))):
        rows = {"id": [f"u{i}" for i in ids], "speaker_id": [i % 2 for i in ids], "text": [f"text {i}" for i in ids],
                "audio": [{"bytes": (audio_folder / "alice" / f"alice_{i % 12}.wav").read_bytes(), "path": f"alice_{i}.wav"}
                          for i in ids]}
        table = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
        table.to_parquet(str(hub / f"{split}-00000-of-00001.parquet"))
    cfg = DataConfig(source=str(hub), min_seconds=0.1)
    assert describe_source(cfg) == "hub"
    ds, report = build_corpus(cfg, tmp_path / "cache")
    assert ds["train"].num_rows == 8 and ds["heldout"]["id"] == ["u8", "u9", "u10"]
    assert ds["train"][1]["speaker"] == "1" and report["train"]["kept"] == 8
    joined, _ = build_corpus(DataConfig(source=str(hub), min_seconds=0.1, train_split="train+test"), tmp_path / "joined")
    assert joined["train"]["id"] == [f"u{i}" for i in [*range(8), 11, 12]]  # LibriSpeech's 960 h are three splits


def test_demo_corpus_is_16k_and_deterministic(tmp_path):
    cfg = DataConfig(demo=DemoCorpusConfig(voices=2, sentences=6, heldout_sentences=2, voices_per_train_sentence=1))
    a, _ = build_corpus(cfg, tmp_path / "a")
    b, _ = build_corpus(cfg, tmp_path / "b")
    assert a["heldout"].num_rows == 4 and a["train"].num_rows == 4
    assert a["train"]["audio"] == b["train"]["audio"]
    assert abs(len(read_wavs(a["train"], [0], 16000, 16000)[0]) / 16000 - a["train"][0]["duration"]) < 1e-3


def test_max_utterances_and_empty_split_error(tmp_path, audio_folder):
    ds, _ = build_corpus(DataConfig(source=str(audio_folder), heldout_fraction=0.3, max_utterances=2), tmp_path / "c")
    assert ds["train"].num_rows == 2 and ds["heldout"].num_rows == 2  # the cap holds in each split
    with pytest.raises(ValueError, match="no usable clips"):
        build_corpus(DataConfig(source=str(audio_folder), min_seconds=100, max_seconds=200), tmp_path / "d")


def test_demo_corpus_records_phone_alignments(tmp_path, audio_folder):
    """eSpeak NG's phoneme events become time-stamped phone labels that line up with the audio:
    frames labelled silence are far quieter than frames labelled vowels."""
    from audiolm.data.phones import SILENCE, frame_phones, normalize_phone
    from audiolm.semantic.features import num_frames

    cfg = DataConfig(demo=DemoCorpusConfig(voices=2, sentences=6, heldout_sentences=2, voices_per_train_sentence=1))
    ds, _ = build_corpus(cfg, tmp_path / "a")
    quiet, vowels = [], []
    for i, row in enumerate(ds["train"].with_format("numpy", columns=["phones", "phone_starts"])):
        starts, phones = row["phone_starts"], list(row["phones"])
        (wav,) = read_wavs(ds["train"], [i], 16000, 16000)
        assert len(phones) == len(starts) > 10 and (np.diff(starts) > 0).all()
        assert 0 <= starts[0] and starts[-1] <= len(wav) + 1
        # stress marks and variant digits folded away; a phone named by a digit ("0", "3", "3:") stays
        assert not any(p[0] in "',;" or (p[-1].isdigit() and len(p) > 1) for p in phones)
        labels = frame_phones(phones, starts, num_frames(len(wav), 16000), 16000)
        for i, label in enumerate(labels):
            rms = float(np.sqrt(np.mean(wav[320 * i : 320 * i + 400] ** 2)))
            if label == SILENCE:
                quiet.append(rms)
            elif label[0] in "aeiouAEIOU@3":
                vowels.append(rms)
    assert len(quiet) > 20 and len(vowels) > 100
    assert np.median(quiet) < 0.1 * np.median(vowels)
    assert normalize_phone("'oU") == "oU" and normalize_phone(";") is None and normalize_phone("_:") == SILENCE
    folder, _ = build_corpus(DataConfig(source=str(audio_folder), heldout_fraction=0.3, min_seconds=0.1), tmp_path / "f")
    assert folder["train"][0]["phones"] == [] and folder["train"][0]["phone_starts"] == []


def _long_recording(speech: tuple[np.ndarray, int], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Clips of real speech one after another with pauses of 0.2-1 s (and a little noise): an audiobook."""
    wav, rate = speech
    parts, total = [], 0
    while total < seconds * rate:
        a = int(rng.integers(0, len(wav) // 2))
        piece = wav[a : a + int(rng.integers(rate, 4 * rate))]
        pause = np.zeros(int(rng.uniform(0.2, 1.0) * rate), np.float32)
        parts += [piece, pause]
        total += len(piece) + len(pause)
    out = np.concatenate(parts)[: int(seconds * rate)]
    return (out + rng.normal(0, 1e-3, len(out))).astype(np.float32)


def test_long_untranscribed_files_are_cut_at_silences(tmp_path, speech):
    """LibriLight's layout (speaker/book/file.flac, no text): each long file becomes segments of at
    most max_seconds that cover it end to end, cut where it is quiet, each knowing its file and
    offset; a long file with a transcript is dropped (its text cannot be cut with it)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "librilight"
    for speaker in ("100", "200"):
        (root / speaker / "book").mkdir(parents=True)
        sf.write(root / speaker / "book" / f"{speaker}_long.flac", _long_recording(speech, 95, rng), speech[1])
    sf.write(root / "200" / "book" / "told.flac", _long_recording(speech, 30, rng), speech[1])
    (root / "200" / "book" / "told.txt").write_text("a transcript")
    from audiolm.data import shards
    from audiolm.data.corpus import build_split, split_report

    cfg = DataConfig(source=str(root), max_seconds=12.0, min_seconds=0.5, heldout_fraction=0.0)
    build_split(cfg, "train", tmp_path / "corpus")
    train, report = shards.load_split(tmp_path / "corpus", "train"), split_report(tmp_path / "corpus", "train")
    assert report["segmented"] == 2 and report["too long"] == 1
    assert set(train["speaker"]) == {"100", "200"}
    for name in ("100", "200"):
        rows = sorted((r["start"], r["duration"], i) for i, r in enumerate(train) if r["speaker"] == name)
        assert all(r["source"].endswith(f"{name}_long.flac") for r in train if r["speaker"] == name)
        assert 95 / 12 <= len(rows) <= 2 * 95 / 12 + 1
        ends = [start + duration for start, duration, _ in rows]
        assert all(abs(end - start) < 1e-3 for end, (start, _, _) in zip(ends[:-1], rows[1:], strict=True))  # end to end
        assert max(d for _, d, _ in rows) <= 12.0 and abs(ends[-1] - 95) < 0.02
        original, rate = audio.load(root / name / "book" / f"{name}_long.flac", 16000)
        for start, duration, _ in rows[:-1]:  # each cut in a pause: the 50 ms around it are near silent
            cut = round((start + duration) * rate)
            assert np.abs(original[cut - 400 : cut + 400]).max() < 0.02
        # a segment's audio is the file's, 16-bit
        start, duration, i = rows[1]
        got = read_wavs(train, [i], 16000, 16000)[0]
        want = original[round(start * rate) : round(start * rate) + len(got)]
        assert np.abs(got - want).max() <= 0.5 / 32768 + 1e-7
    build_split(cfg, "train", tmp_path / "again")
    again = shards.load_split(tmp_path / "again", "train")
    assert again["id"] == train["id"] and again["audio"] == train["audio"]  # reproducible


def test_corpus_shards_resume_and_split_between_processes(tmp_path, audio_folder):
    """A process builds only the shards it claims, and a finished shard is never rebuilt: a build that
    another process's claims left with gaps, then a rerun after a kill, give the table of one
    uninterrupted build."""
    from audiolm.data import shards
    from audiolm.data.corpus import SPLITS, build_split

    cfg = DataConfig(source=str(audio_folder), heldout_fraction=0.2, shard_size=4)
    whole, _ = build_corpus(cfg, tmp_path / "whole")
    assert len(shards.shard_paths(tmp_path / "whole", "train")) >= 4
    assert not (tmp_path / "whole" / shards.CLAIMS).exists()
    assert shards.claim(tmp_path / "two", "train", 1) and shards.claim(tmp_path / "two", "train", 3)  # "the other process"
    assert not shards.claim(tmp_path / "two", "train", 1)
    for split in SPLITS:
        build_split(cfg, split, tmp_path / "two")
    built = [p.name for p in shards.shard_paths(tmp_path / "two", "train")]
    assert "00001" not in built and "00003" not in built and "00000" in built and "00002" in built
    first = shards.shard_paths(tmp_path / "two", "train")[0]
    stamp = first.stat().st_mtime_ns
    shutil.rmtree(shards.shard_paths(tmp_path / "two", "train")[-1])  # a shard a killed run had not finished
    shards.clear_claims(tmp_path / "two")  # what a stage's start does
    again, _ = build_corpus(cfg, tmp_path / "two")
    assert first.stat().st_mtime_ns == stamp
    for split in SPLITS:
        assert again[split].to_dict() == whole[split].to_dict()


def test_flac_storage_is_lossless_at_16_bits():
    rng = np.random.default_rng(1)
    wav = np.clip(rng.normal(0, 0.3, 16000), -0.99, 0.99).astype(np.float32)
    back, rate = audio.decode_bytes(audio.encode_flac(wav, 16000), "x")
    assert rate == 16000 and np.abs(back - wav).max() <= 0.5 / 32768 + 1e-7
    assert np.array_equal(audio.decode_bytes(audio.encode_flac(back, 16000), "x")[0], back)


def _rss_file_kb() -> int:
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssFile:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and madvise: Linux")
def test_a_corpus_read_through_leaves_its_pages_in_the_page_cache_not_in_the_process(tiny_run):
    """Every row of the memory-mapped corpus read (stage 2's encoding pass, a training's crops): the
    pages it mapped are handed back (`shards.release_mapped`), so the resident memory does not grow
    with the corpus (issue 40: 0.71 h -> 7.1 h took stage 2 from 900 to 1,287 MB)."""
    from audiolm.data import shards
    from audiolm.data.corpus import CorpusAudio
    from audiolm.pipeline import corpus_stage, rundir

    folder = corpus_stage.corpus_dir(tiny_run)
    ds = shards.load_split(folder, "train")
    rate = rundir.read_marker(folder)["sample_rate"]
    arrow_kb = sum(p.stat().st_size for p in (folder / "train").rglob("*.arrow")) // 1024
    shards.release_mapped()
    before = _rss_file_kb()
    wavs = [w for w in CorpusAudio(ds, list(range(ds.num_rows)), rate, rate)]
    assert len(wavs) == ds.num_rows and ds.num_rows < 256  # no release on the way (every 256 reads)
    mapped = _rss_file_kb()
    assert mapped - before >= arrow_kb // 2, (before, mapped, arrow_kb)  # the audio's pages, mapped
    assert shards.release_mapped() > 0
    assert _rss_file_kb() - before < arrow_kb // 4, (before, _rss_file_kb(), arrow_kb)
    again = [w for w in CorpusAudio(ds, list(range(ds.num_rows)), rate, rate)]  # read again: the same audio
    assert all(np.array_equal(a, b) for a, b in zip(wavs, again, strict=True))
