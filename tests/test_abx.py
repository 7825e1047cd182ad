"""ABX as Libri-light computes it: DTW with path-length normalisation, the averaging over contexts,
speakers and phone pairs, and the two limits (identical phones: 0%, random features: about 50%)."""

import math

import numpy as np
import pytest

from audiolm.eval.abx import ABX, Item, _normalize, dtw_distances, item_frames, one_hot, read_items, write_items


def _angles(*degrees):
    """Frames of unit 2-D vectors at these angles."""
    r = np.radians(degrees)
    return np.stack([np.cos(r), np.sin(r)], 1)


def test_dtw_is_the_mean_angle_along_the_path():
    # [0, 90] against [45]: both frames 45 degrees away, path of 2 -> 0.25
    # [0, 0, 0] against [90]: 3 x 0.5 over a path of 3 -> 0.5; [0, 90] against [0, 0, 90]: 0
    got = dtw_distances([(_normalize(_angles(0, 90)), _normalize(_angles(45))),
                         (_normalize(_angles(0, 0, 0)), _normalize(_angles(90))),
                         (_normalize(_angles(0, 90)), _normalize(_angles(0, 0, 90)))])
    np.testing.assert_allclose(got, [0.25, 0.5, 0.0], atol=1e-7)
    # a zero frame is as far as it gets from any frame
    assert dtw_distances([(_normalize(np.zeros((1, 2))), _normalize(_angles(30)))])[0] > 0.99


def test_item_frames_follow_libri_light():
    feats = np.arange(10)[:, None].astype(float)  # frames of 10 ms
    item = Item("f", 0.021, 0.058, "a", "x+y", "s")
    # ceil(2.1 - 0.5) = 2 to floor(5.8 - 0.5) = 5, exclusive
    assert item_frames(feats, item, 0.01)[:, 0].tolist() == [2, 3, 4]


def _case():
    """Two speakers, two contexts, phones a and b; each item a one-frame file at a given angle."""
    spec = [("x+y", "s1", "a", 0), ("x+y", "s1", "a", 10), ("x+y", "s1", "b", 90),
            ("x+z", "s1", "a", 0), ("x+z", "s1", "a", 80), ("x+z", "s1", "b", 40),
            ("x+y", "s2", "a", 0), ("x+y", "s2", "a", 5), ("x+y", "s2", "b", 40)]
    items, features = [], {}
    for k, (context, speaker, phone, angle) in enumerate(spec):
        items.append(Item(f"f{k}", 0.0, 0.015, phone, context, speaker))
        features[f"f{k}"] = _angles(angle)
    return items, features


def test_abx_averages_contexts_then_speakers_then_phone_pairs():
    """By hand. Within: (s1, a, b) is right in x+y (0 and 10 are nearer each other than 90) and
    wrong in x+z (0 and 80 are each nearer 40): 0.5 over contexts; (s2, a, b): 0; (b, a) has no
    group of two b's. Mean over speakers 0.25 -> 25%. Across: (a, b) right for either speaker's X;
    (b, a) with A = s1's b at 90, X = s2's b at 40, B = s1's a at 0 and 10: both wrong (1.0); with
    s2's A at 40, X = s1's b at 90, B at 0 and 5: right (0) -> 0.5; mean over (a, b) and (b, a): 25%."""
    items, features = _case()
    abx = ABX(items, features, frame_shift=0.01)
    assert abx.error("within") == pytest.approx(25.0)
    assert abx.error("across") == pytest.approx(25.0)


def test_ties_count_half():
    items = [Item("a1", 0, 0.015, "a", "x+y", "s"), Item("a2", 0, 0.015, "a", "x+y", "s"),
             Item("b1", 0, 0.015, "b", "x+y", "s")]
    same = {name: _angles(0) for name in ("a1", "a2", "b1")}
    assert ABX(items, same, 0.01).error("within") == pytest.approx(50.0)


def _phone_corpus(rng, noise, speakers=4, per_group=4):
    """Items of 5 phones in 3 contexts by several speakers; each phone a fixed direction in 16-D, each
    frame that direction plus `noise` (None: random frames that know nothing of the phone)."""
    phones = [rng.standard_normal(16) for _ in range(5)]
    items, features = [], {}
    for s in range(speakers):
        for c in range(3):
            for p in range(5):
                for k in range(per_group):
                    name = f"s{s}c{c}p{p}k{k}"
                    frames = rng.integers(3, 7)
                    jitter = rng.standard_normal((frames, 16))
                    features[name] = jitter if noise is None else phones[p] + noise * jitter
                    items.append(Item(name, 0.0, frames * 0.02, f"p{p}", f"c{c}+c{c}", f"s{s}"))
    return items, features


def test_identical_phones_give_no_error_and_random_features_about_half():
    rng = np.random.default_rng(0)
    items, features = _phone_corpus(rng, noise=0.0)
    clean = ABX(items, features, frame_shift=0.02)
    assert clean.error("within") == 0.0 and clean.error("across") == 0.0
    items, features = _phone_corpus(rng, noise=None)
    noisy = ABX(items, features, frame_shift=0.02)
    for mode in ("within", "across"):
        assert 40 < noisy.error(mode) < 60, mode


def test_units_as_one_hot_frames_and_the_item_file_round_trip(tmp_path):
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    items, _ = _case()
    write_items(tmp_path / "dev.item", items)
    assert tmp_path.joinpath("dev.item").read_text().startswith("#file onset offset #phone prev-phone next-phone speaker\n")
    assert read_items(tmp_path / "dev.item") == items
    (tmp_path / "bad.item").write_text("#file onset offset #phone prev-phone next-phone speaker\nf0 0 1 a x\n")
    with pytest.raises(ValueError, match="bad.item, line 2"):
        read_items(tmp_path / "bad.item")
    with pytest.raises(ValueError, match="no features for 'f0'"):
        ABX(items, {}, 0.01)
    assert math.isnan(ABX(items[:3], dict(_case()[1]), 0.01).error("across"))  # one speaker: no across triplet


@pytest.mark.slow  # 12-16 s of command-line processes on 2 slow cores; ABX itself: the tests above and test_scoreboard.py
def test_feature_files_and_abx_from_the_command_line(tiny_run, tmp_path):
    """`audiolm tokenize features` writes one 2-D array per wav and the frame shift; `audiolm abx`
    scores them on an item file made from the held-out phone alignments; units scored through the
    files equal the library's ABX of the same units."""
    import json

    import soundfile as sf

    from audiolm import audio
    from audiolm.eval.abx import items_from_alignment, read_features
    from audiolm.pipeline import corpus_stage
    from audiolm.semantic.tokenizer import SemanticTokenizer
    from tests.conftest import run_cli

    heldout = corpus_stage.load(tiny_run)["heldout"]
    wavs, items = [], []
    for row in heldout.select(range(min(12, heldout.num_rows))):
        wav, rate = audio.decode_bytes(row["audio"], row["id"])
        path = tmp_path / "wavs" / f"{row['id']}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, wav, rate)
        wavs.append(path)
        items += items_from_alignment(row["id"], row["phones"], row["phone_starts"], len(wav), rate, row["speaker"])
    write_items(tmp_path / "heldout.item", items)
    semantic = tiny_run.run_dir / "semantic"
    for kind, extra in (("units", ["--units"]), ("features", ["--format", "txt"])):
        made = run_cli("tokenize", "features", "--model", semantic, *wavs, "-o", tmp_path / kind, *extra)
        assert made.returncode == 0, made.stderr
        assert json.loads((tmp_path / kind / "features.json").read_text())["frame_shift"] == pytest.approx(0.02)
        scored = run_cli("abx", tmp_path / kind, tmp_path / "heldout.item", "--json", tmp_path / f"{kind}.json")
        assert scored.returncode == 0 and "across speakers" in scored.stdout, scored.stderr
        errors = json.loads((tmp_path / f"{kind}.json").read_text())
        assert all(0 <= errors[m] < 50 for m in ("within", "across")), errors  # better than chance on this corpus
    features, shift = read_features(tmp_path / "units")
    tokenizer = SemanticTokenizer.from_pretrained(semantic)
    direct = {p.stem: one_hot(tokenizer.encode([audio.load(p, tokenizer.sample_rate)[0]])[0], tokenizer.num_clusters)
              for p in wavs}
    assert all(np.array_equal(features[k], direct[k]) for k in direct)
    assert ABX(items, direct, shift).error("within") == pytest.approx(json.loads((tmp_path / "units.json").read_text())["within"])
