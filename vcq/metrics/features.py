"""Demo feature network: a small CNN classifier standing in for Inception on the demo data."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

NAME = "vcq-demo"


class DemoNet(nn.Module):
    """Four stride-2 conv blocks → global average pool (the "pool" feature) → linear logits."""

    def __init__(self, num_classes: int, width: int, image_size: int):
        super().__init__()
        self.image_size = image_size
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        self.body = nn.Sequential(
            *[
                nn.Sequential(
                    nn.Conv2d(a, b, 3, stride=2, padding=1), nn.GroupNorm(8, b), nn.SiLU()
                )
                for a, b in itertools.pairwise(chans)
            ]
        )
        self.head = nn.Linear(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images in [-1, 1] (B,3,H,W) → (pool (B,D), logits (B,C))."""
        x = F.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        pool = self.body(x).mean((2, 3))
        return pool, self.head(pool)


class DemoFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity wrapper around a trained DemoNet: uint8 images in, ("pool", "logits") out."""

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kw,
    ):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError("the demo feature extractor needs feature_extractor_weights_path")
        from vcq.train.checkpoint import require_checkpoint, restore_module

        ckpt = require_checkpoint(
            feature_extractor_weights_path, ["config", "state_dict"], rule="train_feature_net"
        )
        self.net = DemoNet(**ckpt["config"])
        restore_module(self.net, ckpt["state_dict"], feature_extractor_weights_path)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("pool", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits"}.get(metric, "pool")

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """uint8 (B,3,H,W) → requested features, in features_list order."""
        pool, logits = self.net(x.float() / 127.5 - 1)
        out = {"pool": pool, "logits": logits}
        return tuple(out[name] for name in self.features_list)


def register() -> None:
    """Register the demo extractor with torch-fidelity (idempotent), for `calculate_metrics`."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, DemoFeatureExtractor)


def load_demo_extractor(path: str | Path) -> DemoFeatureExtractor:
    """The demo extractor with trained weights from `path` (a CheckpointError naming the file and
    its rule when absent or unreadable)."""
    register()
    return DemoFeatureExtractor(NAME, ["pool", "logits"], feature_extractor_weights_path=str(path))
