"""EnCodec, DAC and Mimi through our adapter: tiny random models saved to a folder and loaded by path
(the `from_pretrained` that loads a Hub id), checked against calling the transformers model directly."""

import pytest
import torch
import transformers

from audiolm.codec import load_codec
from audiolm.codec.pretrained import TransformersCodec


def _tiny(kind: str):
    if kind == "encodec":
        return transformers.EncodecConfig(sampling_rate=24000, num_filters=4, hidden_size=16, num_lstm_layers=1,
                                          codebook_size=1024, target_bandwidths=[1.5, 3.0, 6.0])
    if kind == "dac":
        return transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=16,
                                      n_codebooks=4, codebook_size=64, codebook_dim=4, hidden_size=32, sampling_rate=16000)
    return transformers.MimiConfig(hidden_size=32, num_filters=4, num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=2, intermediate_size=64, head_dim=16, codebook_size=64,
                                   codebook_dim=16, num_quantizers=4, num_semantic_quantizers=1,
                                   vector_quantization_hidden_dimension=16, sliding_window=25, upsample_groups=32)


@pytest.fixture(scope="module", params=["encodec", "dac", "mimi"])
def tiny_codec(request, tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(_tiny(request.param)).eval()
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return request.param, folder, model


def test_adapter_codes_equal_the_transformers_model(tiny_codec):
    kind, folder, model = tiny_codec
    codec = load_codec(folder)
    assert isinstance(codec, TransformersCodec) and codec.model_type == kind
    wav = torch.randn(2, codec.sample_rate // 2) * 0.1
    codes = codec.encode(wav)
    assert codes.dtype == torch.int64 and codes.shape[:2] == (2, codec.num_codebooks)
    assert codes.shape[2] == codec.num_frames(wav.shape[1])
    assert 0 <= int(codes.min()) and int(codes.max()) < codec.codebook_size
    with torch.no_grad():
        x = wav.unsqueeze(1)
        if kind == "encodec":
            direct = model.encode(x, bandwidth=6.0).audio_codes[0]
        elif kind == "dac":
            direct = model.encode(x).audio_codes
        else:
            direct = model.encode(x).audio_codes
    assert torch.equal(codes, direct)
    out = codec.decode(codes)
    assert out.ndim == 2 and abs(out.shape[1] - wav.shape[1]) <= codec.sample_rate / codec.frame_rate


def test_fewer_codebooks_are_a_prefix(tiny_codec):
    kind, folder, _ = tiny_codec
    codec = load_codec(folder)
    k = 2
    wav = torch.randn(1, codec.sample_rate // 4) * 0.1
    low = codec.encode(wav, k)
    assert low.shape[1] == k
    assert torch.equal(low, codec.encode(wav)[:, :k])  # residual quantization: the first levels do not depend on k
    assert codec.decode(low).shape[0] == 1
    with pytest.raises(ValueError):
        codec.encode(torch.zeros(1, 1000), codec.num_codebooks + 1)


def test_saved_folder_round_trip_copies_a_local_model_along(tiny_codec, tmp_path):
    """A Hub codec is saved as a reference (id + revision); a local one is copied into the folder,
    safetensors only, so that the saved codec still loads where the original folder does not exist."""
    kind, folder, _ = tiny_codec
    codec = load_codec(folder, num_codebooks=2)
    codec.save_pretrained(tmp_path / "ref")
    assert sorted(p.name for p in (tmp_path / "ref" / "pretrained").iterdir()) == ["config.json", "model.safetensors"]
    again = load_codec(tmp_path / "ref")
    assert again.num_codebooks == 2 and again.model_id == str(tmp_path / "ref" / "pretrained")
    wav = torch.randn(1, codec.sample_rate // 4) * 0.1
    assert torch.equal(again.encode(wav), codec.encode(wav))


def test_not_a_codec(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a codec"):
        load_codec(tmp_path)
