"""Residual vector quantization: one small wrapper over `vector_quantize_pytorch.ResidualVQ`.

Training goes through ResidualVQ (k-means init, EMA codebook updates, dead-code replacement,
quantizer dropout). Encoding and decoding whole corpora take a lean path over the same codebooks,
argmin(|c|^2 - 2 z.c) level by level and a gather-sum back: the same codes, several times faster
on CPU (see ../shared/design/AUDIOLM.md). A test checks the two paths agree.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from vector_quantize_pytorch import ResidualVQ, VectorQuantize

DEAD_CODE = 2  # a codeword whose EMA cluster size falls below this is replaced by a batch vector


def _dead_code_setting(codebook_size: int) -> dict[str, float]:
    """`DEAD_CODE` as the installed vector-quantize-pytorch takes it: 1.34 replaced the absolute
    `threshold_ema_dead_code` by `dead_code_threshold_ratio` (of the mean cluster size; it converts the
    old one by dividing by the codebook size, as here) and warns on stderr at the old name."""
    if "dead_code_threshold_ratio" in inspect.signature(VectorQuantize.__init__).parameters:
        return {"dead_code_threshold_ratio": DEAD_CODE / codebook_size}
    return {"threshold_ema_dead_code": DEAD_CODE}


class ResidualQuantizer(nn.Module):
    def __init__(self, dim: int, num_codebooks: int, codebook_size: int, dropout: bool = True,
                 commitment_weight: float = 1.0, ema_decay: float = 0.99):
        super().__init__()
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        self.rvq = ResidualVQ(
            dim=dim, num_quantizers=num_codebooks, codebook_size=codebook_size,
            kmeans_init=True, kmeans_iters=10, decay=ema_decay, **_dead_code_setting(codebook_size),
            quantize_dropout=dropout and num_codebooks > 1, commitment_weight=commitment_weight,
        )

    def forward(self, z: torch.Tensor, dropout_seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [b, d, t] -> (quantized [b, d, t], codes [b, k, t] (-1 where dropped), commitment loss)."""
        quantized, codes, commit = self.rvq(z.transpose(1, 2), rand_quantize_dropout_fixed_seed=dropout_seed)
        return quantized.transpose(1, 2), codes.transpose(1, 2), commit.sum()

    @property
    def codebooks(self) -> torch.Tensor:
        return self.rvq.codebooks  # [k, c, d]

    @torch.no_grad()
    def encode(self, z: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """z [b, d, t] -> codes [b, k, t], nearest codeword level by level on the residual."""
        k = num_codebooks or self.num_codebooks
        residual = z.transpose(1, 2).reshape(-1, z.shape[1])  # [b t, d]
        codes = []
        for book in self.codebooks[:k]:
            ids = ((book * book).sum(-1) - 2 * residual @ book.T).argmin(-1)
            residual = residual - book[ids]
            codes.append(ids)
        return torch.stack(codes, 0).view(k, z.shape[0], z.shape[2]).transpose(0, 1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [b, k, t] -> quantized [b, d, t]: the sum of each level's codeword."""
        books = self.codebooks[: codes.shape[1]]  # [k, c, d]
        picked = books[torch.arange(codes.shape[1]).view(1, -1, 1), codes]  # [b, k, t, d]
        return picked.sum(1).transpose(1, 2)
