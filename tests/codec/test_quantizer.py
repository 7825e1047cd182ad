"""The residual vector quantizer our codec codes with: quantizer dropout while training, and the lean
encode/decode path agreeing with vector_quantize_pytorch's ResidualVQ on the same codebooks."""

import torch

from audiolm.codec.quantizer import ResidualQuantizer


def _latents(batch, frames, seed):
    """Latents with structure (a few clusters plus noise), [b, d=16, t]."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, 16, generator=g)
    picks = torch.randint(12, (batch * frames,), generator=g)
    z = centres[picks] + 0.3 * torch.randn(batch * frames, 16, generator=g)
    return z.view(batch, frames, 16).transpose(1, 2).contiguous()


def test_quantizer_dropout_changes_the_number_of_codebooks_used():
    torch.manual_seed(0)
    rvq = ResidualQuantizer(16, num_codebooks=6, codebook_size=64)
    z = _latents(4, 50, 0)
    used = {int((rvq(z, dropout_seed=s)[1][0, :, 0] >= 0).sum()) for s in range(40)}
    assert len(used) > 2 and max(used) == 6 and min(used) < 6
    no_drop = ResidualQuantizer(16, num_codebooks=6, codebook_size=64, dropout=False)
    assert {int((no_drop(z)[1][0, :, 0] >= 0).sum()) for _ in range(5)} == {6}


def test_lean_path_matches_residual_vq_and_more_codebooks_reconstruct_better():
    torch.manual_seed(0)
    rvq = ResidualQuantizer(16, num_codebooks=4, codebook_size=64, dropout=False)
    for s in range(3):  # k-means init (on enough distinct frames: no duplicate codewords) and EMA updates
        rvq(_latents(8, 100, 10 + s))
    rvq.eval()
    z = _latents(2, 100, 1)
    quantized, codes, _ = rvq(z)
    lean = rvq.encode(z)
    # Same codes but for near-ties, which the two distance formulas round differently (~1% of frames);
    # the lean argmin is exact, so its error is never larger.
    assert (lean == codes).float().mean() > 0.97
    assert torch.allclose(rvq.decode(codes), quantized, atol=1e-5)
    assert (rvq.decode(lean) - z).pow(2).sum() <= (quantized - z).pow(2).sum() * 1.0001
    errors = [float((rvq.decode(rvq.encode(z, k)) - z).pow(2).mean()) for k in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2]
