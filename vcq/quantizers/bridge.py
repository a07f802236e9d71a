"""VQBridge: a training-time projector over the whole codebook so every code receives gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vcq.quantizers.base import register_quantizer
from vcq.quantizers.vcq import SharedCodebookQuantizer


class VQBridge(nn.Module):
    """Compress groups of p codes to tokens, mix with ViT blocks, expand back to (K, D)."""

    def __init__(self, code_dim: int, group: int, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.group = group
        self.compress = nn.Sequential(nn.Linear(group * code_dim, width), nn.LayerNorm(width))
        block = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.expand = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, group * code_dim))

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        """Projected codebook with the shape of `codebook` (K, D); K must be a multiple of p."""
        k, d = codebook.shape
        tokens = self.compress(codebook.reshape(1, k // self.group, self.group * d))
        return self.expand(self.blocks(tokens)).reshape(k, d)


@register_quantizer("vcq_bridge")
class BridgedSharedCodebookQuantizer(SharedCodebookQuantizer):
    """Shared-codebook quantizer searching VQBridge(embedding); export() drops the bridge."""

    def __init__(
        self,
        k_sizes: Sequence[int] | torch.Tensor,
        bridge_group: int = 8,
        bridge_width: int = 256,
        bridge_depth: int = 2,
        bridge_heads: int = 4,
        **kwargs,
    ) -> None:
        if kwargs.get("update", "loss") != "loss":
            raise ValueError("vcq_bridge needs update='loss': the bridge is trained by gradient")
        super().__init__(k_sizes, **kwargs)
        if self.k_max % bridge_group:
            raise ValueError(
                f"K_max={self.k_max} must be a multiple of bridge_group={bridge_group}"
            )
        self.bridge = VQBridge(
            self.code_dim, bridge_group, bridge_width, bridge_depth, bridge_heads
        )

    def codebook_vectors(self) -> torch.Tensor:
        """The projected (Kmax, D) codebook used for search and lookup."""
        projected = self.bridge(self.embedding)
        return F.normalize(projected, dim=-1) if self.l2_norm else projected

    @torch.no_grad()
    def export(self) -> torch.Tensor:
        """Projected codebook as a plain tensor: a SharedCodebookQuantizer's embedding."""
        return self.codebook_vectors().detach().clone()
