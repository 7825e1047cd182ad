import pytest
import torch

from audiolm.codec import load_codec
from audiolm.codec.model import SEANetCodec, SEANetCodecConfig


def _codec(strides=(2, 4, 5, 8), k=4, size=64, dropout=True):
    torch.manual_seed(0)
    return SEANetCodec(SEANetCodecConfig(strides=list(strides), num_filters=4, latent_dim=16, lstm_layers=1,
                                         num_codebooks=k, codebook_size=size, quantizer_dropout=dropout))


@pytest.mark.parametrize("strides, rate", [((2, 4, 5, 8), 50.0), ((4, 5, 8), 100.0), ((2, 4, 5, 8, 2), 25.0)])
def test_shapes_for_several_strides(strides, rate):
    codec = _codec(strides)
    wav = torch.randn(2, 16000 + 123) * 0.1
    out = codec(wav)
    assert codec.frame_rate == rate
    assert out.wav.shape == wav.shape and out.codes.shape == (2, 4, codec.num_frames(wav.shape[1]))
    codec.eval()
    codes = codec.encode(wav)
    assert codes.dtype == torch.int64 and codes.shape == (2, 4, codec.num_frames(wav.shape[1]))
    assert 0 <= codes.min() and codes.max() < 64
    assert codec.decode(codes).shape[1] - wav.shape[1] < 16000 / rate


def test_quantizer_dropout_changes_the_number_of_codebooks_used():
    codec = _codec(k=6)
    wav = torch.randn(4, 8000) * 0.1
    used = {int((codec(wav, dropout_seed=s).codes[0, :, 0] >= 0).sum()) for s in range(40)}
    assert len(used) > 2 and max(used) == 6 and min(used) < 6
    no_drop = _codec(k=6, dropout=False)
    assert {int((no_drop(wav).codes[0, :, 0] >= 0).sum()) for _ in range(5)} == {6}


def test_lean_path_matches_residual_vq_and_more_codebooks_reconstruct_better():
    codec = _codec(k=4, size=64)
    g = torch.Generator().manual_seed(1)
    for s in range(3):  # k-means init (on enough distinct frames: no duplicate codewords) and EMA updates
        codec(torch.randn(8, 16000, generator=g) * 0.1, dropout_seed=10_000 + s)
    codec.eval()
    z = codec.encoder(codec._pad(torch.randn(2, 16000, generator=g) * 0.1))
    quantized, codes, _ = codec.quantizer(z)
    lean = codec.quantizer.encode(z)
    # Same codes but for near-ties, which the two distance formulas round differently (~1% of frames);
    # the lean argmin is exact, so its error is never larger.
    assert (lean == codes).float().mean() > 0.97
    assert torch.allclose(codec.quantizer.decode(codes), quantized, atol=1e-5)
    assert (codec.quantizer.decode(lean) - z).pow(2).sum() <= (quantized - z).pow(2).sum() * 1.0001
    errors = [float((codec.quantizer.decode(codec.quantizer.encode(z, k)) - z).pow(2).mean()) for k in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]


def test_save_and_load(tmp_path):
    codec = _codec().eval()
    codec.save_pretrained(tmp_path / "c")
    again = load_codec(tmp_path / "c")
    wav = torch.randn(1, 4000) * 0.1
    assert torch.equal(again.encode(wav), codec.encode(wav))
    assert torch.allclose(again.decode(codec.encode(wav)), codec.decode(codec.encode(wav)))
    with pytest.raises(ValueError, match="codes must lie"):
        codec.decode(torch.full((1, 2, 5), 64))


def test_long_audio_is_encoded_and_decoded_in_chunks_like_at_once():
    """encode_long / decode_long: bounded memory for any length; with a second of context on either
    side of each chunk the codes and audio match the one-pass result."""
    codec = _codec()
    codec(torch.randn(2, 8000) * 0.1)  # k-means-initialise the codebooks
    codec.eval()
    wav = torch.randn(1, 16000 * 7) * 0.1
    with torch.inference_mode():
        whole = codec.encode(wav)[..., : codec.num_frames(wav.shape[-1])]
        chunked = codec.encode_long(wav, chunk_seconds=2.0)
        assert chunked.shape == whole.shape and (chunked == whole).float().mean() > 0.97  # the LSTM restarts per chunk
        assert torch.equal(codec.encode_long(wav, chunk_seconds=10.0), whole)  # one chunk: encode itself
        audio = codec.decode(whole)
        torch.testing.assert_close(codec.decode_long(whole, chunk_seconds=2.0), audio, atol=1e-4, rtol=0)
