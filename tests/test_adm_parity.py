"""The project's FID, IS, precision and recall equal ADM's evaluator on the same features.

The port below follows openai/guided-diffusion `evaluations/evaluator.py` formula by formula
(FID from mean/covariance with scipy's sqrtm, IS over contiguous 5,000-image splits of the
softmax, precision/recall from k = 3 nearest-neighbour radii of squared distances), in numpy.
"""

import numpy as np
import pytest
import torch
from scipy import linalg

from vcq.metrics.fid import _stats, feature_metrics, inception_score

EVAL = {"is_split_size": 5000, "pr_neighborhood": 3, "kid_subset_size": 50}


def adm_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """ADM's FIDStatistics.frechet_distance."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))  # ADM passes disp=False, which SciPy deprecates
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def adm_inception_score(logits, split_size=5000):
    """ADM's Evaluator.compute_inception_score on the softmax of the (unbiased) logits."""
    e = np.exp(logits - logits.max(1, keepdims=True))
    preds = e / e.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(preds), split_size):
        part = preds[i : i + split_size]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return float(np.mean(scores))


def adm_squared_distances(u, v):
    """ADM's DistanceBlock: squared Euclidean distances, clamped at 0."""
    d = (u * u).sum(1)[:, None] - 2 * u @ v.T + (v * v).sum(1)[None, :]
    return np.maximum(d, 0.0)


def adm_manifold_radii(features, k=3):
    """ADM's ManifoldEstimator.manifold_radii: squared distance to the k-th neighbour (self 0th)."""
    d = adm_squared_distances(features, features)
    return np.partition(d, np.arange(k + 1), axis=1)[:, k]


def adm_precision_recall(ref, sample, k=3):
    """ADM's Evaluator.compute_prec_recall (evaluate_pr with features_1 = ref, 2 = samples)."""
    radii_ref, radii_sample = adm_manifold_radii(ref, k), adm_manifold_radii(sample, k)
    d = adm_squared_distances(ref, sample)
    ref_in = (d <= radii_sample[None, :]).any(1)  # recall: a reference inside some sample's ball
    sample_in = (d <= radii_ref[:, None]).any(0)  # precision: a sample inside some reference's
    return float(sample_in.mean()), float(ref_in.mean())


@pytest.mark.parametrize("n", [700, 5600])
def test_fid_is_precision_recall_equal_adm_on_the_same_features(n):
    rng = np.random.default_rng(n)
    dim = 16
    pool = rng.normal(size=(n, dim)) @ rng.normal(size=(dim, dim)) + 0.3
    ref_pool = rng.normal(size=(900, dim)) @ rng.normal(size=(dim, dim))
    logits = 3 * rng.normal(size=(n, 40))
    ref = {**_stats(torch.from_numpy(ref_pool)), "pool": torch.from_numpy(ref_pool)}
    ours = feature_metrics(torch.from_numpy(pool), torch.from_numpy(logits), ref, EVAL)

    mu, sigma = pool.mean(0), np.cov(pool, rowvar=False)
    fid = adm_frechet_distance(mu, sigma, ref["mu"], ref["sigma"])
    precision, recall = adm_precision_recall(ref_pool.astype(np.float32), pool.astype(np.float32))
    assert ours["fd"] == pytest.approx(fid, rel=1e-6)
    assert ours["is_mean"] == pytest.approx(adm_inception_score(logits), rel=1e-6)
    assert ours["precision"] == pytest.approx(precision, rel=1e-6)
    assert ours["recall"] == pytest.approx(recall, rel=1e-6)
    # more than one split where n > 5,000: the split arithmetic itself is compared
    assert 0 < precision < 1 and 0 < recall < 1


def test_is_splits_are_contiguous_in_file_order():
    # two classes, class-major: each 5,000-image split sees one class, so IS is 1 (ADM's value);
    # the same images in random order give IS near 2
    logits = np.zeros((10000, 2))
    logits[:5000, 0] = logits[5000:, 1] = 20.0
    perm = np.random.default_rng(0).permutation(10000)
    major, _ = inception_score(torch.from_numpy(logits), 5000)
    mixed, _ = inception_score(torch.from_numpy(logits[perm]), 5000)
    assert major == pytest.approx(adm_inception_score(logits), rel=1e-6)
    assert major == pytest.approx(1.0, abs=1e-6) and mixed == pytest.approx(2.0, abs=0.01)
