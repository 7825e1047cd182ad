"""Every corpus source goes through `datasets` and comes out the same: 16 kHz mono, filtered, split."""

import json

import datasets
import numpy as np
import pytest
import soundfile as sf

from audiolm import audio
from audiolm.config import DataConfig, DemoCorpusConfig
from audiolm.data.corpus import build_corpus, describe_source


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
    total = {k: report["train"][k] + report["heldout"][k] for k in report["train"]}
    # 24 clips + 1 stereo 44.1 kHz clip kept; the 1000-sample clip is too short; the broken file unreadable
    assert total == {"kept": 25, "too short": 1, "too long": 0, "unreadable": 1}
    rows = datasets.concatenate_datasets([ds["train"], ds["heldout"]])
    assert set(rows["speaker"]) == {"alice", "bob"}
    row = rows.filter(lambda r: r["id"] == "alice_stereo44k")[0]
    assert abs(len(row["audio"]) / 16000 - row["duration"]) < 1e-3
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
    for split, ids in (("train", range(0, 8)), ("validation", range(8, 11))):
        rows = {"id": [f"u{i}" for i in ids], "speaker_id": [i % 2 for i in ids], "text": [f"text {i}" for i in ids],
                "audio": [{"bytes": (audio_folder / "alice" / f"alice_{i}.wav").read_bytes(), "path": f"alice_{i}.wav"}
                          for i in ids]}
        table = datasets.Dataset.from_dict(rows).cast_column("audio", datasets.Audio(decode=False))
        table.to_parquet(str(hub / f"{split}-00000-of-00001.parquet"))
    cfg = DataConfig(source=str(hub), min_seconds=0.1)
    assert describe_source(cfg) == "hub"
    ds, report = build_corpus(cfg, tmp_path / "cache")
    assert ds["train"].num_rows == 8 and ds["heldout"]["id"] == ["u8", "u9", "u10"]
    assert ds["train"][1]["speaker"] == "1" and report["train"]["kept"] == 8


def test_demo_corpus_is_16k_and_deterministic(tmp_path):
    cfg = DataConfig(demo=DemoCorpusConfig(voices=2, sentences=6, heldout_sentences=2, voices_per_train_sentence=1))
    a, _ = build_corpus(cfg, tmp_path / "a")
    b, _ = build_corpus(cfg, tmp_path / "b")
    assert a["heldout"].num_rows == 4 and a["train"].num_rows == 4
    assert a["train"]["audio"] == b["train"]["audio"]
    assert abs(len(a["train"][0]["audio"]) / 16000 - a["train"][0]["duration"]) < 1e-3


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
    for row in ds["train"].with_format("numpy"):
        starts, phones = row["phone_starts"], list(row["phones"])
        assert len(phones) == len(starts) > 10 and (np.diff(starts) > 0).all()
        assert 0 <= starts[0] and starts[-1] <= len(row["audio"]) + 1
        # stress marks and variant digits folded away; a phone named by a digit ("0", "3", "3:") stays
        assert not any(p[0] in "',;" or (p[-1].isdigit() and len(p) > 1) for p in phones)
        wav = row["audio"]
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
