"""Prologue tokens: P learned discrete tokens in front of the visual tokens, trained only by the AR
loss.

A small non-causal transformer reads an image's frozen visual tokens and P learned queries; each
query picks one of Kp prologue codes. The AR model, which owns the encoder (`ARModel.prologue`,
saved with its weights), then models [class, prologue, visual tokens].
The quantised prologue vector is `code + z - sg(z)`: its value is the code (what sampling feeds
back), while the AR loss's gradient reaches both the codebook and the encoder. Nothing else trains
the prologue: the tokenizer's reconstruction loss never sees it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PrologueEncoder(nn.Module):
    """Visual token ids (B, L) -> prologue ids (B, P) and their AR embeddings (B, P, ar_dim)."""

    def __init__(
        self,
        vocab: int,
        seq_len: int,
        num_tokens: int,
        codebook_size: int,
        width: int,
        depth: int,
        heads: int,
        ar_dim: int,
    ) -> None:
        super().__init__()
        self.num_tokens, self.codebook_size = num_tokens, codebook_size
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(0.02 * torch.randn(num_tokens + seq_len, width))
        self.queries = nn.Parameter(0.02 * torch.randn(num_tokens, width))
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.to_code = nn.Linear(width, width)
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, width), dim=-1))
        self.to_ar = nn.Linear(width, ar_dim)

    def codes(self) -> torch.Tensor:
        """The (Kp, width) unit-norm prologue codebook."""
        return F.normalize(self.codebook, dim=-1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prologue ids and AR embeddings; the embeddings carry the gradient (value = the codes)."""
        b = tokens.shape[0]
        x = torch.cat([self.queries.expand(b, -1, -1), self.tok(tokens)], dim=1) + self.pos
        z = F.normalize(self.to_code(self.blocks(x)[:, : self.num_tokens]), dim=-1)
        codes = self.codes()
        ids = (z @ codes.T).argmax(-1)
        q = codes[ids] + z - z.detach()
        return ids, self.to_ar(q)

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """AR input embeddings (B, n, ar_dim) of sampled prologue ids (B, n)."""
        return self.to_ar(self.codes()[ids])


@torch.no_grad()
def prologue_features(enc: PrologueEncoder, tokens: torch.Tensor) -> torch.Tensor:
    """Flattened prologue code vectors (B, P * width) of visual token rows (B, L)."""
    ids, _ = enc(tokens)
    return enc.codes()[ids].flatten(1)
