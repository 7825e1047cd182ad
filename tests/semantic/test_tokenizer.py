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


def test_a_local_speech_encoder_is_copied_into_the_saved_tokenizer(tmp_path, wavs):
    """An encoder from a local folder (one trained here, say) travels with the tokenizer: the
    saved tokenizer still loads, through the same transformers backend, once the folder is gone."""
    import shutil

    import transformers

    torch.manual_seed(0)
    config = transformers.HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    encoder = tmp_path / "my-encoder"
    transformers.HubertModel(config).save_pretrained(encoder)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(encoder)
    cfg = SemanticConfig(backend="ssl", model=str(encoder), layer=2, num_clusters=8, kmeans_steps=20, kmeans_batch_size=256)
    tok = SemanticTokenizer.fit(cfg, build_features("ssl", str(encoder), 2), [wavs])
    tok.save_pretrained(tmp_path / "tok")
    shutil.rmtree(encoder)
    saved = sorted(p.name for p in (tmp_path / "tok" / "encoder").iterdir())
    assert saved == ["config.json", "model.safetensors", "preprocessor_config.json"]
    again = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    for a, b in zip(tok.encode(wavs), again.encode(wavs), strict=True):
        assert np.array_equal(a, b)
    again.save_pretrained(tmp_path / "tok2")  # and again, from the copy
    assert (tmp_path / "tok2" / "encoder" / "model.safetensors").exists()


def test_long_audio_is_tokenized_in_chunks_with_the_same_ids(wavs):
    """encode_long: features of chunks with context margins, the per-utterance normalisation over
    the whole file in a first pass: the ids of a one-pass encode, in bounded memory."""
    cfg = SemanticConfig(backend="logmel", num_clusters=16, kmeans_steps=30, kmeans_batch_size=512, context_frames=8)
    tok = SemanticTokenizer.fit(cfg, build_features("logmel", context=8), [wavs])
    long = np.concatenate(wavs * 3)
    whole = tok.encode([long])[0]
    chunked = tok.encode_long(long, chunk_seconds=0.5, margin_seconds=0.3)
    assert len(chunked) == len(whole) > 3 * 50 and (chunked == whole).mean() > 0.999
    # with a duration penalty the path runs across chunk joins: the same ids again, and fewer changes
    tok.config.duration_penalty = 2000.0  # squared distances over 17 x 80 standardised dimensions
    smooth = tok.encode([long])[0]
    assert (tok.encode_long(long, chunk_seconds=0.5, margin_seconds=0.3) == smooth).mean() > 0.999
    assert np.count_nonzero(np.diff(smooth)) < 0.8 * np.count_nonzero(np.diff(whole))


def test_phone_metrics_and_auc_on_known_cases():
    from audiolm.semantic.metrics import auc, phone_metrics

    rng = np.random.default_rng(0)
    phones = rng.integers(0, 8, 5000)
    perfect = phone_metrics([phones * 3 + 1], [phones])  # a renamed copy of the phones
    assert perfect.pnmi == pytest.approx(1.0) and perfect.phone_purity == pytest.approx(1.0)
    split = phone_metrics([phones * 2 + rng.integers(0, 2, 5000)], [phones])  # each phone split over 2 tokens
    assert split.pnmi == pytest.approx(1.0) and split.phone_purity == pytest.approx(1.0)
    assert split.cluster_purity == pytest.approx(0.5, abs=0.03)
    noise = phone_metrics([rng.integers(0, 50, 5000)], [phones])
    assert noise.pnmi < 0.05 and noise.phone_purity < 0.3
    ignored = phone_metrics([np.array([1, 2, 3])], [np.array([0, -100, 0])])
    assert ignored.frames == 2
    assert auc([0.1, 0.2], [0.3, 0.4]) == 1.0 and auc([0.5], [0.1, 0.9]) == 0.5 and auc([0.3], [0.3]) == 0.5

