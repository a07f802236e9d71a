"""Linear probe on frozen tokenizer code vectors of the first k tokens (paper Table 6)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def code_features(tokens: np.ndarray | torch.Tensor, codebook: torch.Tensor, k: int | None) -> torch.Tensor:
    """Map (N, L) token ids to code vectors and flatten the first k of them: (N, k * D)."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    k = tokens.shape[1] if k is None else k
    return codebook[tokens[:, :k]].reshape(len(tokens), -1).float()


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale every set by the train set's per-dimension mean and std."""
    mu, sd = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mu) / sd for x in (train, *others)]


def train_probe(
    x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
    num_classes: int, pcfg: dict, seed: int = 0,
) -> dict:
    """Train a linear classifier with minibatch AdamW (seeded); return val {top1, top5} in percent."""
    gen = torch.Generator().manual_seed(seed)
    x_train, x_val = standardise(x_train, x_val)
    head = torch.nn.Linear(x_train.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=pcfg["lr"], weight_decay=pcfg["weight_decay"])
    y_train = torch.as_tensor(y_train, dtype=torch.int64)
    for _ in range(pcfg["epochs"]):
        for idx in torch.randperm(len(x_train), generator=gen).split(pcfg["batch_size"]):
            loss = F.cross_entropy(head(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        top = head(x_val).topk(min(5, num_classes), dim=1).indices
    hit = top == torch.as_tensor(y_val, dtype=torch.int64)[:, None]
    return {"top1": 100 * hit[:, 0].float().mean().item(), "top5": 100 * hit.any(1).float().mean().item()}
