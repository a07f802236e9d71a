"""Linear probe on frozen token features (paper Table 6), streamed: features are built per batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

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


def _ids(tokens: np.ndarray, device: torch.device | str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(tokens).astype(np.int64)).to(device)


@torch.no_grad()
def feature_moments(
    featurize: Featurizer, tokens: np.ndarray, batch: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std (clamped at 1e-6) of token rows' (N, L) features, streamed."""
    total = sq = None
    for i in range(0, len(tokens), batch):
        x = featurize(_ids(tokens[i : i + batch], device)).double()
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = x.pow(2).sum(0) if sq is None else sq + x.pow(2).sum(0)
    mu = total / len(tokens)
    var = (sq / len(tokens) - mu.pow(2)) * len(tokens) / max(len(tokens) - 1, 1)
    return mu.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-6)


def train_probe(
    featurize: Featurizer,
    train_tokens: np.ndarray,
    y_train: np.ndarray,
    val_tokens: np.ndarray,
    y_val: np.ndarray,
    num_classes: int,
    probe_cfg: dict,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict:
    """Train a linear classifier with minibatch AdamW (seeded); return val {top1, top5} in percent.

    `train_tokens` is (N, V, L): every epoch visits each image once through one of its V views,
    drawn at random when `probe_cfg["train_views"]` is `all` (augmentation at no extra cost per
    epoch), else view 0. Features are standardised by the moments of one such draw and never held
    for the whole set.
    """
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    n, n_views, _ = train_tokens.shape
    bs, all_views = probe_cfg["batch_size"], probe_cfg.get("train_views", "all") == "all"

    def pick_views() -> np.ndarray:
        return rng.integers(n_views, size=n) if all_views else np.zeros(n, dtype=np.int64)

    mu, sd = feature_moments(featurize, train_tokens[np.arange(n), pick_views()], bs, device)

    def features(tokens: np.ndarray) -> torch.Tensor:
        return (featurize(_ids(tokens, device)) - mu) / sd

    head = torch.nn.Linear(mu.numel(), num_classes).to(device)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(
        head.parameters(), lr=probe_cfg["lr"], weight_decay=probe_cfg["weight_decay"]
    )
    y_train_t = torch.as_tensor(y_train, dtype=torch.int64, device=device)
    for _ in range(probe_cfg["epochs"]):
        views = pick_views()
        for idx in torch.randperm(n, generator=gen).split(bs):
            idx = idx.numpy()
            with torch.no_grad():
                x = features(train_tokens[idx, views[idx]])
            loss = F.cross_entropy(head(x), y_train_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    hits = []
    with torch.no_grad():
        for i in range(0, len(val_tokens), bs):
            top = head(features(val_tokens[i : i + bs])).topk(min(5, num_classes), dim=1).indices
            hits.append(top.cpu() == torch.as_tensor(y_val[i : i + bs], dtype=torch.int64)[:, None])
    hit = torch.cat(hits)
    return {
        "top1": 100 * hit[:, 0].float().mean().item(),
        "top5": 100 * hit.any(1).float().mean().item(),
    }
