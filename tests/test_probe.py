"""Linear probe: code-vector features and a seeded classifier that separates easy classes."""

import numpy as np
import torch

from vcq.metrics.probe import code_features, train_probe

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


def test_probe_learns_first_token_and_is_seeded():
    codebook = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    (tr, ytr), (va, yva) = _data(200, 1), _data(100, 2)
    xtr, xva = code_features(tr, codebook, 1), code_features(va, codebook, 1)
    res = train_probe(xtr, torch.as_tensor(ytr), xva, torch.as_tensor(yva), 3, PCFG, seed=0)
    assert res["top1"] == 100.0 and res["top5"] == 100.0
    assert res == train_probe(xtr, torch.as_tensor(ytr), xva, torch.as_tensor(yva), 3, PCFG, seed=0)
    noise = train_probe(code_features(tr[:, 1:], codebook, 1), torch.as_tensor(ytr),
                        code_features(va[:, 1:], codebook, 1), torch.as_tensor(yva), 3, PCFG)
    assert noise["top1"] < 70
