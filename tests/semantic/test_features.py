"""Feature backends. The transformers path is tested with tiny random models saved to a folder and
loaded by path: exactly the `from_pretrained` call that loads a Hub id."""

import numpy as np
import pytest
import torch
import transformers

from audiolm.audio import resample
from audiolm.semantic.features import EncoderFeatures, SpectralFeatures, build_features, num_frames


@pytest.fixture(scope="module")
def speech16k(speech):
    wav, rate = speech
    return resample(wav, rate, 16000)


@pytest.mark.parametrize("kind, base_dim", [("mfcc", 39), ("logmel", 80)])
@pytest.mark.parametrize("context", [0, 2])
def test_spectral_shapes_and_frame_grid(speech16k, kind, base_dim, context):
    feats = SpectralFeatures(kind, 16000, context)
    (f,) = feats([speech16k])
    assert feats.frame_rate == 50.0
    assert f.shape == (num_frames(len(speech16k), 16000), base_dim * (2 * context + 1)) and feats.dim == f.shape[1]
    assert torch.isfinite(f).all()
    if context:  # the centre slice of a stacked frame is the frame itself
        (plain,) = SpectralFeatures(kind, 16000, 0)([speech16k])
        assert torch.allclose(f[:, context * base_dim : (context + 1) * base_dim], plain)


def test_spectral_frame_count_matches_hubert_conv_stack():
    for n in (400, 719, 720, 16000, 16001):
        assert num_frames(n, 16000) == (n - 400) // 320 + 1
    assert num_frames(399, 16000) == 0


def _tiny_config(kind):
    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                  do_stable_layer_norm=kind == "wav2vec2")
    if kind == "wavlm":
        return transformers.WavLMConfig(**common, num_buckets=16, max_bucket_distance=40)
    if kind == "hubert":
        return transformers.HubertConfig(**common)
    return transformers.Wav2Vec2Config(**common)


@pytest.fixture(scope="module", params=["wavlm", "hubert", "wav2vec2"])
def tiny_encoder_dir(request, tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(_tiny_config(request.param)).eval()
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    extractor = transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True)
    extractor.save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("layer", [1, 2, 3])
def test_encoder_layer_is_that_blocks_output(tiny_encoder_dir, speech16k, layer):
    folder, full = tiny_encoder_dir
    feats = build_features("ssl", str(folder), layer)
    assert isinstance(feats, EncoderFeatures) and len(feats.model.encoder.layers) == layer
    (f,) = feats([speech16k])
    x = torch.from_numpy(speech16k)
    x = ((x - x.mean()) / torch.sqrt(x.var(correction=0) + 1e-7)).unsqueeze(0)  # the feature extractor's normalisation
    with torch.no_grad():
        states = full(x, output_hidden_states=True).hidden_states
    expected = states[layer][0]
    if layer == full.config.num_hidden_layers and full.config.do_stable_layer_norm:
        expected = states[layer - 1][0]  # the last entry has the final norm; compare one block earlier instead
        (f,) = build_features("ssl", str(folder), layer - 1)([speech16k])
    assert feats.frame_rate == 50.0 and f.shape == expected.shape
    assert torch.allclose(f, expected, atol=1e-4)


def test_encoder_batches_with_attention_masks(tiny_encoder_dir, speech16k):
    folder, _ = tiny_encoder_dir
    feats = build_features("ssl", str(folder), 2)
    short = speech16k[: len(speech16k) // 2]
    batched = feats([speech16k, short])
    alone = [feats([speech16k])[0], feats([short])[0]]
    for b, a in zip(batched, alone, strict=True):
        assert b.shape == a.shape
        assert torch.allclose(b, a, atol=1e-4)


def test_encoder_rejects_a_layer_it_does_not_have(tiny_encoder_dir):
    folder, _ = tiny_encoder_dir
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        build_features("ssl", str(folder), 7)


def test_unknown_backend_and_missing_model():
    with pytest.raises(ValueError, match="unknown semantic.backend"):
        build_features("fbank")
    with pytest.raises(ValueError, match="needs semantic.model"):
        build_features("ssl", "")


@pytest.mark.network
def test_hub_wavlm_base_plus_loads(speech16k):
    """The real Hub path (AUDIOLM_TEST_NETWORK=1 to run it)."""
    feats = build_features("ssl", "microsoft/wavlm-base-plus", 6)
    (f,) = feats([speech16k])
    assert f.shape[1] == 768 and abs(f.shape[0] - len(speech16k) / 320) <= 1


def test_w2v_bert_takes_filterbanks_and_keeps_the_50hz_grid(tmp_path, speech16k):
    """Wav2Vec2-BERT's processor gives stacked filterbanks (input_features), not raw samples."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                             intermediate_size=64, conv_depthwise_kernel_size=5, add_adapter=False)
    transformers.Wav2Vec2BertModel(config).save_pretrained(tmp_path)
    transformers.SeamlessM4TFeatureExtractor().save_pretrained(tmp_path)
    feats = build_features("ssl", str(tmp_path), 2)
    short = speech16k[:16000]
    both = feats([speech16k, short])
    assert feats.frame_rate == 50.0 and feats.dim == 32
    assert abs(both[0].shape[0] - num_frames(len(speech16k), 16000)) <= 1 and both[1].shape[0] == 49
    assert torch.allclose(feats([short])[0], both[1], atol=1e-4)


@pytest.fixture(scope="module")
def tiny_whisper_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=32, encoder_layers=3, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    model = transformers.WhisperModel(config).eval()
    folder = tmp_path_factory.mktemp("whisper")
    model.save_pretrained(folder)
    transformers.WhisperFeatureExtractor().save_pretrained(folder)
    return folder, model


@pytest.mark.parametrize("layer", [1, 2])
def test_whisper_encoder_block_on_the_50hz_grid(tiny_whisper_dir, speech16k, layer):
    """The Whisper backend is that block of the encoder (decoder dropped), 50 Hz, cut to the HuBERT grid's count."""
    folder, full = tiny_whisper_dir
    feats = build_features("ssl", str(folder), layer)
    assert feats.frame_rate == 50.0 and feats.dim == 32 and not hasattr(feats.model, "decoder")
    (f,) = feats([speech16k])
    mel = transformers.WhisperFeatureExtractor()(speech16k, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        expected = full.encoder(mel, output_hidden_states=True).hidden_states[layer][0]
    assert f.shape == (num_frames(len(speech16k), 16000), 32)
    assert torch.allclose(f, expected[: f.shape[0]], atol=1e-4)


def test_whisper_takes_audio_longer_than_its_30_s_window(tiny_whisper_dir, speech16k):
    """Past 30 s the audio goes in 30 s pieces whose frames follow one another; batching changes nothing."""
    folder, _ = tiny_whisper_dir
    feats = build_features("ssl", str(folder), 2)
    long = np.tile(speech16k, int(np.ceil(35 * 16000 / len(speech16k))))[: 35 * 16000]
    short = speech16k[:16000]
    f_long, f_short = feats([long, short])
    assert f_long.shape[0] == num_frames(len(long), 16000) and f_short.shape[0] == 49
    assert torch.allclose(f_long[:1499], feats([long[: 30 * 16000]])[0], atol=1e-4)  # alone: the grid's 1499
    assert torch.allclose(f_long[1500:], feats([long[30 * 16000 :]])[0][: f_long.shape[0] - 1500], atol=1e-4)
    assert torch.allclose(f_short, feats([short])[0], atol=1e-4)
    with pytest.raises(ValueError, match="frame classifier"):
        build_features("ssl", str(folder), 2, units="classifier")


@pytest.mark.network
def test_hub_whisper_tiny_encoder_loads(speech16k):
    """The real Hub path for the Whisper backend (AUDIOLM_TEST_NETWORK=1 to run it)."""
    (f,) = build_features("ssl", "openai/whisper-tiny", 3)([speech16k])
    assert f.shape == (num_frames(len(speech16k), 16000), 384)


def _extractor(normalize: bool, mask: bool):
    return transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=normalize, return_attention_mask=mask)


def _group_norm_hubert(folder):
    """HuBERT-base's front end and preprocessor, tiny: group norm in the first convolution, no attention
    mask, per-utterance waveform normalization."""
    config = transformers.HubertConfig(**{**_tiny_config("hubert").to_dict(), "feat_extract_norm": "group",
                                          "do_stable_layer_norm": False})
    transformers.HubertModel(config).save_pretrained(folder)
    _extractor(normalize=True, mask=False).save_pretrained(folder)


def _group_norm_wavlm(folder):
    """WavLM-base-plus' layout: group norm, and a preprocessor that does return attention masks."""
    config = transformers.WavLMConfig(**{**_tiny_config("wavlm").to_dict(), "feat_extract_norm": "group",
                                         "do_stable_layer_norm": False})
    transformers.WavLMModel(config).save_pretrained(folder)
    _extractor(normalize=False, mask=True).save_pretrained(folder)


def _layer_norm_wav2vec2(folder):
    """A large model's layout (layer norm in the front end, stable layer norm) with a mask-less preprocessor."""
    transformers.Wav2Vec2Model(_tiny_config("wav2vec2")).save_pretrained(folder)
    _extractor(normalize=True, mask=False).save_pretrained(folder)


def _w2v_bert(folder):
    config = transformers.Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                             intermediate_size=64, conv_depthwise_kernel_size=5, add_adapter=False)
    transformers.Wav2Vec2BertModel(config).save_pretrained(folder)
    transformers.SeamlessM4TFeatureExtractor().save_pretrained(folder)


def _trained_encoder(folder):
    """Stage 1's own encoder, as it saves it."""
    from audiolm.config import EncoderConfig
    from audiolm.semantic.pretrain import feature_extractor, new_encoder

    new_encoder(EncoderConfig(hidden_size=32, layers=3, heads=2, ffn_dim=64, conv_dim=16)).save_pretrained(folder)
    feature_extractor().save_pretrained(folder)


@pytest.mark.parametrize("make", [_group_norm_hubert, _group_norm_wavlm, _layer_norm_wav2vec2, _w2v_bert, _trained_encoder],
                         ids=["hubert-group-norm", "wavlm-group-norm", "wav2vec2-layer-norm", "w2v-bert", "trained"])
def test_an_utterance_gets_the_same_ids_alone_in_a_padded_batch_and_in_a_corpus_batch(make, tmp_path, speech16k):
    """A 1 s utterance alone, beside a 3 s one, and in a batch of four (two of its own length): the same
    features and the same nearest-centroid ids (stage 1 fits k-means on unsorted batches, tokenizes the
    corpus in length-sorted ones and a stage-4 prompt alone)."""
    from audiolm.semantic.kmeans import assign

    torch.manual_seed(0)
    make(tmp_path)
    feats = build_features("ssl", str(tmp_path), 2)
    short, long = speech16k[:16000], np.tile(speech16k, 2)[:48000]
    other = speech16k[-16000:]
    (alone,) = feats([short])
    beside = feats([long, short])[1]
    corpus = feats([short, long, other, speech16k[:20000]])[0]
    centroids = alone[torch.randperm(alone.shape[0], generator=torch.Generator().manual_seed(0))[:12]]
    for f in (beside, corpus):
        assert f.shape == alone.shape
        torch.testing.assert_close(f, alone, atol=1e-4, rtol=1e-4)
        assert torch.equal(assign(f, centroids), assign(alone, centroids))


def test_a_naive_padded_batch_through_a_group_norm_encoder_changes_the_features(tmp_path, speech16k):
    """What the test above guards against: the same utterance padded beside a longer one, through the
    processor's padding and the model in one call, gets other features (so a batch must not pad it)."""
    torch.manual_seed(0)
    _group_norm_hubert(tmp_path)
    feats = build_features("ssl", str(tmp_path), 2)
    assert not feats.pads_safely
    short, long = speech16k[:16000], np.tile(speech16k, 2)[:48000]
    inputs = feats.processor([long, short], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        padded = feats._frames(dict(inputs))[1, : feats([short])[0].shape[0]]
    assert (padded - feats([short])[0]).abs().max() > 1e-2


def test_half_precision_forward_stays_close_and_a_wrong_precision_is_refused(tmp_path, speech16k):
    """bf16 autocast (what a GPU run may ask for with semantic.precision): the features move by
    bf16's rounding, not more; benchmarks/semantic_precision.py measures how many ids move."""
    torch.manual_seed(0)
    _trained_encoder(tmp_path)
    (full,) = build_features("ssl", str(tmp_path), 2)([speech16k])
    (half,) = build_features("ssl", str(tmp_path), 2, precision="bf16")([speech16k])
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert (half - full).abs().max() <= 0.05 * full.abs().max()
    assert (half - full).abs().max() > 0  # it did run in bf16
    with pytest.raises(ValueError, match="semantic.precision 'int8'"):
        build_features("ssl", str(tmp_path), 2, precision="int8")
