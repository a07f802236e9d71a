"""Schedules reproduce Table 2 of the paper and the theoretical t* of Table 1 / SPEC §2."""

import numpy as np
import pytest

from vcq.schedules import (
    bits_per_pixel,
    cliff_position_vcq,
    cumulative_information,
    mean_codebook_size,
    remaining_budget,
    schedule_k_sizes,
)

IMAGENET = 1_281_167

# (kind, k_min, k_max, K̄ as printed, BPP as printed, theoretical t*_vcq for ImageNet)
TABLE2 = [
    ("constant", 16384, 16384, 16384, 0.055, 2),
    ("constant", 8192, 8192, 8192, 0.051, 2),
    ("linear", 2, 16384, 8193, 0.049, 4),
    ("cosine", 2, 16384, 5964, 0.044, 9),
    ("power", 2, 16384, 4696, 0.041, 12),
    ("cosine", 2, 11264, 4100, 0.042, 9),
]


@pytest.mark.parametrize("kind,kmin,kmax,kbar,bpp,tstar", TABLE2)
def test_table2_row(kind, kmin, kmax, kbar, bpp, tstar):
    k_sizes = schedule_k_sizes(kind, kmin, kmax, length=256, alpha=2.5)
    assert round(mean_codebook_size(k_sizes)) == kbar
    assert round(bits_per_pixel(k_sizes, 256), 3) == bpp
    assert cliff_position_vcq(k_sizes, IMAGENET) == tstar


def test_unrounded_means_match_spec():
    got = [
        mean_codebook_size(schedule_k_sizes(k, a, b))
        for k, a, b in [
            ("linear", 2, 16384),
            ("cosine", 2, 16384),
            ("power", 2, 16384),
            ("cosine", 2, 11264),
        ]
    ]
    np.testing.assert_allclose(got, [8193.0, 5963.7, 4696.3, 4100.4], atol=0.05)


def test_schedule_endpoints_and_monotone():
    for kind in ("linear", "cosine", "power"):
        s = schedule_k_sizes(kind, 2, 16384, 256)
        assert s[0] == 2 and s[-1] == 16384
        assert np.all(np.diff(s) >= 0)
        assert s.dtype == np.int64


def test_eq3_early_values_not_prose():
    # The paper's prose quotes cosine K1=3, K2=6; Eq. 3 (which Table 2 follows) gives 2, 3.
    s = schedule_k_sizes("cosine", 2, 16384, 256)
    assert s[:3].tolist() == [2, 2, 3]
    assert schedule_k_sizes("linear", 2, 16384, 256)[1:3].tolist() == [66, 130]


def test_information_budget():
    k_sizes = schedule_k_sizes("constant", 16384, 16384, 4)
    np.testing.assert_allclose(cumulative_information(k_sizes), [0, 14, 28, 42, 56])
    rem = remaining_budget(k_sizes, IMAGENET)
    assert rem[0] == pytest.approx(np.log2(IMAGENET))
    assert rem[1] > 0 > rem[2]


def test_bad_bounds_rejected():
    with pytest.raises(ValueError, match="k_min"):
        schedule_k_sizes("linear", 10, 5)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_k_sizes("exp", 2, 16)
