"""Spherical Leech quantization (Λ24-SQ): Golay code, first-shell Leech vectors, nearest search."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
from torch import nn
from torch.nn import functional as F

from vcq.numerics import full_precision
from vcq.quantizers.base import ARHead, Quantizer, QuantizerOutput, option

# Generator polynomial of the cyclic [23,12,7] Golay code (a divisor of x^23 - 1 over GF(2)).
_GOLAY_POLY = (1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1)  # coefficients of x^0..x^11
SHAPES = ("4^2", "2^8", "3^1 1^23")  # code order: shape blocks in this order (see docs)
DIM = 24
SHELL_NORM = 32**0.5  # Euclidean norm of the unscaled first-shell vectors
COORDINATES = 9  # a first-shell coordinate is one of -4..4


def golay_codewords() -> torch.Tensor:
    """All 4096 codewords of the extended binary Golay code [24,12,8] as a (4096, 24) 0/1 tensor."""
    gen = torch.zeros(12, 24, dtype=torch.long)
    for row in range(12):
        gen[row, row : row + 12] = torch.tensor(_GOLAY_POLY)
    gen[:, 23] = gen[:, :23].sum(1) % 2  # parity bit extends [23,12,7] to [24,12,8]
    msgs = (torch.arange(4096)[:, None] >> torch.arange(12)) & 1
    return (msgs @ gen) % 2


def octads() -> torch.Tensor:
    """The 759 weight-8 Golay codewords as a (759, 24) 0/1 tensor."""
    words = golay_codewords()
    return words[words.sum(1) == 8]


def leech_shell() -> torch.Tensor:
    """All 196,560 minimal Leech vectors (norm² 32, unscaled) as int8 (196560, 24), fixed order."""
    pairs = torch.tensor(list(combinations(range(24), 2)))  # 276 pairs, lexicographic
    signs2 = torch.tensor([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    a = torch.zeros(276, 4, 24, dtype=torch.long)
    a.scatter_(2, pairs[:, None, :].expand(-1, 4, -1), 4 * signs2[None].expand(276, -1, -1))
    octs = octads()
    pos = octs.nonzero()[:, 1].reshape(759, 8)
    bits = (torch.arange(256)[:, None] >> torch.arange(8)) & 1
    even = bits[bits.sum(1) % 2 == 0]  # 128 sign patterns with an even number of minus signs
    b = torch.zeros(759, 128, 24, dtype=torch.long)
    b.scatter_(2, pos[:, None, :].expand(-1, 128, -1), (2 - 4 * even)[None].expand(759, -1, -1))
    s = 1 - 2 * golay_codewords()  # +1 off the codeword, -1 on it
    c = s[:, None, :].repeat(1, 24, 1)
    eye = torch.eye(24, dtype=torch.bool)[None].expand(4096, -1, -1)
    c[eye] = -3 * s.reshape(-1)
    return torch.cat([a.reshape(-1, 24), b.reshape(-1, 24), c.reshape(-1, 24)]).to(torch.int8)


def lattice_coordinates(codes: torch.Tensor) -> torch.Tensor:
    """Integer coordinates (..., 24) in -4..4 of unit-norm first-shell codes (norm² 32 unscaled)."""
    return (codes * SHELL_NORM).round().long()


def shape_slices() -> dict[str, slice]:
    """Index range of each shape block in `leech_shell()` order."""
    return {"4^2": slice(0, 1104), "2^8": slice(1104, 98256), "3^1 1^23": slice(98256, 196560)}


def codebook_size(shapes: Sequence[str]) -> int:
    """Number of codes in the chosen shape blocks (without building them)."""
    return sum(sl.stop - sl.start for s, sl in shape_slices().items() if s in shapes)


def leech_codebook(shapes: Sequence[str] = SHAPES, size: int | None = None) -> torch.Tensor:
    """Unit-norm codebook from the chosen shape blocks (in `SHAPES` order), optionally truncated."""
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        raise ValueError(f"unknown Leech shapes {sorted(unknown)}; known: {SHAPES}")
    shell, sl = leech_shell(), shape_slices()
    codes = torch.cat([shell[sl[s]] for s in SHAPES if s in shapes]).float() / SHELL_NORM
    if size is not None:
        if not 1 <= size <= len(codes):
            raise ValueError(f"size {size} outside 1..{len(codes)} for shapes {list(shapes)}")
        codes = codes[:size]
    return codes


def nearest_code(
    z: torch.Tensor, codes: torch.Tensor, limit: torch.Tensor | None = None, chunk: int = 16384
) -> torch.Tensor:
    """Index of max inner product per row of z (N, D) over codes (K, D), chunked over codes.

    `limit` (N,) restricts row n to codes[:limit[n]] (nested prefixes); never builds an N×K matrix.
    """
    best = torch.full((z.shape[0],), -float("inf"), device=z.device, dtype=z.dtype)
    idx = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    for start in range(0, codes.shape[0], chunk):
        block = codes[start : start + chunk].to(z)
        sims = z @ block.T
        if limit is not None:
            cols = torch.arange(start, start + block.shape[0], device=z.device)
            sims = sims.masked_fill(cols[None, :] >= limit[:, None], -float("inf"))
        val, arg = sims.max(1)
        better = val > best
        best = torch.where(better, val, best)
        idx = torch.where(better, arg + start, idx)
    return idx


class FactorizedLeechHead(ARHead):
    """24 nine-way classifiers, one per coordinate of the unscaled code in {-4..4} (Leech paper Eq.
    12).

    The joint log-probability of a code is the sum of its 24 coordinate log-probabilities; the head
    keeps the coordinate labels of every vocabulary entry so it can score and train on code indices.
    """

    name = "leech_factorized"
    needs_codes = True

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, DIM * COORDINATES)
        # saved with the weights so a checkpoint samples without rebuilding the tokenizer's codebook
        self.register_buffer("code_labels", torch.zeros(vocab_size, DIM, dtype=torch.uint8))

    @staticmethod
    def labels(codes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Per-coordinate class labels (..., 24) in 0..8 for code indices into unit-norm `codes`."""
        return lattice_coordinates(codes[indices]) + COORDINATES // 2

    def set_codes(self, codes: torch.Tensor) -> None:
        """Record the coordinate labels of the (vocab_size, 24) unit-norm codebook of the tokens."""
        if codes.shape != (self.code_labels.shape[0], DIM):
            raise ValueError(
                f"codebook {tuple(codes.shape)} does not match "
                f"vocab {self.code_labels.shape[0]} x {DIM}"
            )
        self.code_labels.copy_(self.labels(codes, torch.arange(len(codes))).to(torch.uint8))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (..., 24, 9) from hidden states (..., dim)."""
        return self.proj(h).unflatten(-1, (DIM, COORDINATES))

    def cross_entropy(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """−log p(code) per token (...): the sum of the 24 coordinate cross-entropies."""
        target = self.code_labels[tokens].long()
        return -out.float().log_softmax(-1).gather(-1, target[..., None])[..., 0].sum(-1)

    def vocab_logits(self, out: torch.Tensor) -> torch.Tensor:
        """Joint log-probability (..., vocab_size) of every code from logits (..., 24, 9)."""
        lead = out.shape[:-2]
        flat = out.float().log_softmax(-1).reshape(-1, DIM * COORDINATES)
        cols = self.code_labels.long() + COORDINATES * torch.arange(DIM, device=out.device)
        # a (vocab, 24) gather-and-sum without materialising (N, vocab, 24)
        joint = F.embedding_bag(cols, flat.T.contiguous(), mode="sum")
        return joint.T.reshape(*lead, -1)


class LeechQuantizer(Quantizer):
    """Λ24-SQ: l2-normalise z (D=24), snap to the nearest Leech code among codes[:K_t]."""

    options = {
        "shapes": option(
            list(SHAPES),
            "First-shell shape blocks of the ordered codebook (1,104 + 97,152 + 98,304 codes).",
            type="array",
            items={"enum": list(SHAPES)},
            minItems=1,
        ),
        "chunk": option(
            16384, "Codes per block of the chunked nearest search.", type="integer", minimum=1
        ),
    }
    ar_head = FactorizedLeechHead

    @classmethod
    def latent_dim(cls, options: dict) -> int:
        """Always 24: the Leech lattice's dimension."""
        return DIM

    @classmethod
    def capacity(cls, options: dict) -> int | None:
        """The codes of the chosen shape blocks."""
        return codebook_size(options.get("shapes", SHAPES))

    def __init__(
        self,
        k_sizes: Sequence[int] | torch.Tensor,
        shapes: Sequence[str] = SHAPES,
        chunk: int = 16384,
    ) -> None:
        super().__init__(k_sizes)
        codes = leech_codebook(shapes)
        if self.k_max > len(codes):
            raise ValueError(
                f"K_max={self.k_max} exceeds the {len(codes)} codes of shapes {shapes}"
            )
        self.register_buffer("codes", codes[: self.k_max], persistent=False)
        self.chunk = chunk

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (B, L, 24); straight-through, no auxiliary loss."""
        if z.shape[-1] != 24:
            raise ValueError(f"Leech quantizer needs code_dim 24, got {z.shape[-1]}")
        zn = F.normalize(z, dim=-1)
        b, length, _ = z.shape
        limit = self.k_sizes.to(z.device).repeat(b)
        with torch.no_grad(), full_precision(z.device):  # bf16 inner products reassign codes
            idx = nearest_code(zn.reshape(-1, 24).detach().float(), self.codes, limit, self.chunk)
        idx = idx.reshape(b, length)
        q = self.codes[idx].to(z)
        return QuantizerOutput(zn + (q - zn).detach(), idx, z.new_zeros(()))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors for indices (B, L)."""
        return self.codes[indices]

    def codebook_vectors(self) -> torch.Tensor:
        """The K_max unit-norm codes."""
        return self.codes
