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
