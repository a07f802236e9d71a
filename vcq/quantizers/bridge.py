"""VQBridge: a training-time projector over the whole codebook so every code receives gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vcq.quantizers.base import Quantizer, option
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


class BridgedSharedCodebookQuantizer(SharedCodebookQuantizer):
    """Shared-codebook quantizer searching VQBridge(embedding); export() drops the bridge."""

    options = {
        # the shared-codebook options less the EMA update's, which the bridge cannot use
        **{k: v for k, v in SharedCodebookQuantizer.options.items() if not k.startswith("ema_")},
        "update": option(
            "loss", "Codebook learning rule: the bridge is trained by gradient.", enum=["loss"]
        ),
        "group": option(8, "Codes per bridge token p (divides K_max).", type="integer", minimum=1),
        "width": option(256, "Bridge token width.", type="integer", minimum=1),
        "depth": option(2, "ViT blocks of the bridge.", type="integer", minimum=1),
        "heads": option(4, "Attention heads per bridge block.", type="integer", minimum=1),
    }

    def __init__(
        self,
        k_sizes: Sequence[int] | torch.Tensor,
        group: int = 8,
        width: int = 256,
        depth: int = 2,
        heads: int = 4,
        **kwargs,
    ) -> None:
        if kwargs.get("update", "loss") != "loss":
            raise ValueError("vcq_bridge needs update='loss': the bridge is trained by gradient")
        super().__init__(k_sizes, **kwargs)
        if self.k_max % group:
            raise ValueError(f"K_max={self.k_max} must be a multiple of group={group}")
        self.bridge = VQBridge(self.code_dim, group, width, depth, heads)

    @classmethod
    def check_k_max(cls, options: dict, k_max: int) -> str | None:
        """K_max must be a multiple of the bridge's group size p."""
        group = options.get("group", cls.options["group"]["default"])
        return f"{k_max} is not a multiple of vcq_bridge.group = {group}" if k_max % group else None

    def codebook_vectors(self) -> torch.Tensor:
        """The projected (Kmax, D) codebook used for search and lookup."""
        projected = self.bridge(self.embedding)
        return F.normalize(projected, dim=-1) if self.l2_norm else projected

    @torch.no_grad()
    def export(self, spec: dict) -> tuple[dict, Quantizer]:
        """A plain shared-codebook quantizer whose codebook is the projected one (no bridge)."""
        own = spec[spec["kind"]]
        options = {k: v for k, v in own.items() if k in SharedCodebookQuantizer.options}
        plain = SharedCodebookQuantizer(self.k_sizes, **options).to(self.embedding.device)
        plain.embedding.data.copy_(self.codebook_vectors())
        return {"kind": "vcq", "vcq": options}, plain.train(self.training)
