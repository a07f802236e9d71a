"""Linear probe on frozen token features (paper Table 6): features, their moments and the accuracy
of a trained probe (training: `vcq.train.probe`), streamed: features are built per batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Featurizer = Callable[
    [torch.Tensor], torch.Tensor
]  # token ids (B, L) int64 -> features (B, F) float


def code_features(
    tokens: np.ndarray | torch.Tensor, codebook: torch.Tensor, k: int | None
) -> torch.Tensor:
    """Map (N, L) token ids to code vectors and flatten the first k of them: (N, k * D)."""
    tokens = torch.as_tensor(tokens).long().to(codebook.device)
    k = tokens.shape[1] if k is None else k
    return codebook[tokens[:, :k]].reshape(len(tokens), -1).float()


def ids(tokens: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """Token rows as an int64 tensor on `device` (any stored dtype)."""
    return torch.from_numpy(np.ascontiguousarray(tokens).astype(np.int64)).to(device)


@torch.no_grad()
def feature_moments(
    featurize: Featurizer, tokens: np.ndarray, batch: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (clamped at 1e-6) of token rows' (N, L) features, streamed."""
    total = sq = None
    for i in range(0, len(tokens), batch):
        x = featurize(ids(tokens[i : i + batch], device)).double()
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = x.pow(2).sum(0) if sq is None else sq + x.pow(2).sum(0)
    mu = total / len(tokens)
    var = (sq / len(tokens) - mu.pow(2)) * len(tokens) / max(len(tokens) - 1, 1)
    return mu.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-6)


def standardised(
    featurize: Featurizer, mu: torch.Tensor, sd: torch.Tensor, tokens: np.ndarray, device
) -> torch.Tensor:
    """Features of token rows (N, L), standardised by the train moments `mu`, `sd`."""
    return (featurize(ids(tokens, device)) - mu) / sd


@torch.no_grad()
def probe_accuracy(
    head: torch.nn.Linear,
    featurize: Featurizer,
    moments: tuple[torch.Tensor, torch.Tensor],
    val_tokens: np.ndarray,
    y_val: np.ndarray,
    batch: int,
    device: torch.device | str = "cpu",
) -> dict:
    """Top-1 and top-5 accuracy (percent) of a trained probe on val token rows (N, L)."""
    hits = []
    for i in range(0, len(val_tokens), batch):
        x = standardised(featurize, *moments, val_tokens[i : i + batch], device)
        top = head(x).topk(min(5, head.out_features), dim=1).indices
        hits.append(top.cpu() == torch.as_tensor(y_val[i : i + batch], dtype=torch.int64)[:, None])
    hit = torch.cat(hits)
    return {
        "top1": 100 * hit[:, 0].float().mean().item(),
        "top5": 100 * hit.any(1).float().mean().item(),
    }
