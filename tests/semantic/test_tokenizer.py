import numpy as np
import pytest
import torch

from audiolm.audio import resample
from audiolm.config import SemanticConfig
from audiolm.semantic.features import build_features
from audiolm.semantic.tokenizer import SemanticTokenizer


@pytest.fixture(scope="module")
def wavs(speech):
    wav, rate = speech
    wav = resample(wav, rate, 16000)
    return [wav, wav[: len(wav) // 2], 0.5 * wav[len(wav) // 3 :]]


@pytest.mark.parametrize("backend", ["mfcc", "logmel"])
def test_fit_encode_save_load_round_trip(tmp_path, wavs, backend):
    cfg = SemanticConfig(backend=backend, num_clusters=16, kmeans_steps=50, kmeans_batch_size=512, context_frames=1)
    features = build_features(backend, context=cfg.context_frames)
    tok = SemanticTokenizer.fit(cfg, features, [wavs])
    ids = tok.encode(wavs)
    assert [len(x) for x in ids] == [f.shape[0] for f in features(wavs)]
    assert all(x.dtype == np.int64 and x.min() >= 0 and x.max() < 16 for x in ids)
    assert len(np.unique(np.concatenate(ids))) > 8  # the clusters are used
    tok.save_pretrained(tmp_path / "tok")
    again = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    assert again.config == tok.config and again.frame_rate == 50.0
    for a, b in zip(ids, again.encode(wavs), strict=True):
        assert np.array_equal(a, b)
    # batching does not change the ids
    assert np.array_equal(tok.encode([wavs[1]])[0], ids[1])


def test_centroids_must_fit_the_features(wavs):
    cfg = SemanticConfig(backend="mfcc", num_clusters=4, kmeans_steps=5, context_frames=0)
    tok = SemanticTokenizer.fit(cfg, build_features("mfcc", context=0), [wavs])
    with pytest.raises(ValueError, match="do not fit"):
        SemanticTokenizer(tok.config, build_features("logmel", context=0), tok.centroids, tok.mean, tok.std)
    assert torch.isfinite(tok.std).all()


def test_from_pretrained_on_a_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved semantic tokenizer"):
        SemanticTokenizer.from_pretrained(tmp_path)
