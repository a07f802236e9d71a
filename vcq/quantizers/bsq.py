"""Binary spherical quantization (BSQ): sign of each coordinate of a unit vector, 2^d codes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from vcq.quantizers.base import Quantizer, QuantizerOutput, option


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log())


def bsq_entropy_terms(
    u: torch.Tensor, tau: float, live: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-sample entropy, codebook entropy) of the factorised soft assignment, u (N, d) unit.

    Per coordinate, q(+|u) = sigmoid(4·u_i / (τ·√d)) is the softmax over the two signs of
    -||u_i - s/√d||²/τ; the joint over 2^d codes factorises, so entropies are sums over coordinates.
    `live` (N, d) bool keeps only the coordinates a sample may choose (fixed bits carry no entropy).
    """
    p = torch.sigmoid(4 * u / (tau * u.shape[-1] ** 0.5))
    if live is None:
        return _binary_entropy(p).sum(-1).mean(), _binary_entropy(p.mean(0)).sum(-1)
    w = live.to(p.dtype)
    p_mean = (p * w).sum(0) / w.sum(0).clamp_min(1)
    h_codebook = (_binary_entropy(p_mean) * (w.sum(0) > 0)).sum(-1)
    return (_binary_entropy(p) * w).sum(-1).mean(), h_codebook


def live_bits(k_sizes: torch.Tensor) -> torch.Tensor:
    """Bits b_t = floor(log2 K_t) position t may choose: K_t rounded down to a power of two."""
    # integer floor(log2): exact where float log2 of a power of two could round below it
    return torch.tensor([int(k).bit_length() - 1 for k in k_sizes.tolist()], dtype=torch.long)


class BinarySphericalQuantizer(Quantizer):
    """BSQ on code_dim = d latents: l2-normalise, snap each coordinate to ±1/√d, straight-through.

    Under a VCQ schedule position t chooses only its first b_t = floor(log2 K_t) bits (K_t rounded
    down to a power of two, so every index stays < K_t); the other coordinates are fixed at −1/√d
    (bit 0), which makes its codes exactly the first 2^b_t codes in index order.
    """

    options = {
        "dim": option(
            18,
            "Number of bits d (the latent size; K_max <= 2^d).",
            type="integer",
            minimum=1,
            maximum=62,
        ),
        "tau": option(
            1.0,
            "Soft-assignment temperature of the entropy terms.",
            type="number",
            exclusiveMinimum=0,
        ),
        "sample_entropy_weight": option(
            0.1, "Weight of the per-sample entropy (minimised).", type="number", minimum=0
        ),
        "codebook_entropy_weight": option(
            0.1, "Weight of the codebook entropy (maximised).", type="number", minimum=0
        ),
    }

    @classmethod
    def latent_dim(cls, options: dict) -> int:
        """d: one latent coordinate per bit."""
        return int(options.get("dim", cls.options["dim"]["default"]))

    @classmethod
    def capacity(cls, options: dict) -> int | None:
        """2^d codes."""
        return 2 ** cls.latent_dim(options)

    def __init__(
        self,
        k_sizes: Sequence[int] | torch.Tensor,
        dim: int = 18,
        tau: float = 1.0,
        sample_entropy_weight: float = 0.1,
        codebook_entropy_weight: float = 0.1,
    ) -> None:
        super().__init__(k_sizes)
        if self.k_max > 2**dim:
            raise ValueError(f"K_max={self.k_max} exceeds the 2^{dim} BSQ codes")
        self.dim, self.tau = dim, tau
        self.w_sample, self.w_codebook = sample_entropy_weight, codebook_entropy_weight
        self.register_buffer("bit_weights", 2 ** torch.arange(dim), persistent=False)
        # (L, d): coordinate i is chosen at position t iff i < b_t
        live = torch.arange(dim) < live_bits(self.k_sizes)[:, None]
        self.register_buffer("live", live, persistent=False)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (B, L, d); loss = w_s·H(per sample) − w_c·H(codebook)."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"BSQ needs code_dim {self.dim}, got {z.shape[-1]}")
        if z.shape[1] != self.num_tokens:
            raise ValueError(f"BSQ built for {self.num_tokens} positions, got {z.shape[1]}")
        u = F.normalize(z, dim=-1)
        bits = ((u > 0) & self.live).long()
        q = (2 * bits - 1).to(u) / self.dim**0.5
        live = self.live.expand(z.shape[0], -1, -1).reshape(-1, self.dim)
        h_sample, h_codebook = bsq_entropy_terms(u.reshape(-1, self.dim), self.tau, live)
        loss = self.w_sample * h_sample - self.w_codebook * h_codebook
        stats = {"entropy_sample": h_sample.detach(), "entropy_codebook": h_codebook.detach()}
        return QuantizerOutput(u + (q - u).detach(), (bits * self.bit_weights).sum(-1), loss, stats)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes ±1/√d from packed indices (bit i of the index = sign of coordinate i)."""
        bits = (indices[..., None] >> torch.arange(self.dim, device=indices.device)) & 1
        return (2 * bits - 1).float() / self.dim**0.5

    def codebook_vectors(self) -> torch.Tensor:
        """The first K_max codes in index order."""
        return self.lookup(torch.arange(self.k_max, device=self.bit_weights.device))
