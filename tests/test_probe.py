"""Linear probe: code-vector features and a seeded classifier that separates easy classes."""

from functools import partial

import numpy as np
import torch

from vcq.metrics.probe import code_features, feature_moments
from vcq.train.probe import train_probe

PCFG = {"epochs": 30, "lr": 0.05, "weight_decay": 0.0, "batch_size": 32}


def test_code_features_shape_and_values():
    codebook = torch.arange(12.0).reshape(6, 2)
    tokens = np.array([[0, 5, 3], [1, 2, 4]], dtype=np.uint16)
    f = code_features(tokens, codebook, 2)
    assert f.shape == (2, 4)
    assert torch.equal(f[0], torch.tensor([0.0, 1.0, 10.0, 11.0]))
    assert code_features(tokens, codebook, None).shape == (2, 6)


def _data(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    tokens = np.stack([y * 2 + rng.integers(0, 2, n), rng.integers(0, 6, n)], 1)
    return tokens, y


CODEBOOK = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))


def test_probe_learns_first_token_and_is_seeded():
    (tr, ytr), (va, yva) = _data(200, 1), _data(100, 2)
    first = partial(code_features, codebook=CODEBOOK, k=1)
    res = train_probe(first, tr[:, None], ytr, va, yva, 3, PCFG, seed=0)
    assert res["top1"] == 100.0 and res["top5"] == 100.0
    assert res == train_probe(first, tr[:, None], ytr, va, yva, 3, PCFG, seed=0)
    noise = train_probe(first, tr[:, None, 1:], ytr, va[:, 1:], yva, 3, PCFG)
    assert noise["top1"] < 70


def test_all_views_augment_while_first_uses_view_zero_only():
    (tr, ytr), (va, yva) = _data(200, 1), _data(100, 2)
    views = np.stack(
        [np.full_like(tr, 6), tr], 1
    )  # view 0 is one code for every image: no label information
    first = partial(
        code_features, codebook=torch.eye(7), k=1
    )  # one-hot: any per-code logits are linear
    assert train_probe(first, views, ytr, va, yva, 3, {**PCFG, "train_views": "all"})["top1"] > 90
    assert train_probe(first, views, ytr, va, yva, 3, {**PCFG, "train_views": "first"})["top1"] < 70


def test_streamed_moments_equal_the_full_feature_statistics():
    tokens, _ = _data(101, 4)
    full = code_features(tokens, CODEBOOK, None)
    mu, sd = feature_moments(partial(code_features, codebook=CODEBOOK, k=None), tokens, batch=16)
    assert torch.allclose(mu, full.mean(0), atol=1e-5) and torch.allclose(
        sd, full.std(0), atol=1e-5
    )
