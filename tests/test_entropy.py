"""Entropy cliff: Prop. 1 against Table 1, plug-in estimates against sequences of known entropy."""

import json
import math
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from vcq.data.tokens import TokenWriter
from vcq.entropy import cliff_position, conditional_entropy, measured_cliff, read_token_matrix

IMAGENET = 1281167


def naive_conditional_entropy(tokens: np.ndarray) -> np.ndarray:
    """H(x_t | x_<t) from dictionaries of prefix tuples: the obvious reference implementation."""
    n, length = tokens.shape
    out = []
    for t in range(length):
        joint = Counter(map(tuple, tokens[:, : t + 1]))
        prev = Counter(map(tuple, tokens[:, :t]))
        h = lambda c: -sum(v / n * math.log2(v / n) for v in c.values())  # noqa: E731
        out.append(h(joint) - h(prev))
    return np.array(out)


@pytest.mark.parametrize("n, k, t_star", [(50000, 16384, 2), (118287, 16384, 2), (IMAGENET, 16384, 2),
                                          (12_000_000, 16384, 2), (400_000_000, 16384, 3),
                                          (5_000_000_000, 16384, 3)])
def test_prop1_reproduces_table1(n, k, t_star):
    assert cliff_position(n, k) == t_star


def test_table1_thresholds_are_where_t_star_steps():
    for m in (2, 3, 4, 5):
        n_m = 16384 ** (m - 1)
        assert cliff_position(n_m, 16384) == m - 1 and cliff_position(n_m + 1, 16384) == m


def test_uniform_first_token_then_deterministic():
    rng = np.random.default_rng(0)
    x0 = np.repeat(np.arange(16), 64)  # exactly uniform over 16 values
    tokens = np.stack([x0, (x0 * 3) % 16, x0 // 2], axis=1)
    r = conditional_entropy(tokens)
    np.testing.assert_allclose(r.cond_entropy, [4.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(r.marginal_entropy, [4.0, 4.0, 3.0], atol=1e-12)
    assert list(r.distinct_prefixes) == [16, 16, 16] and r.distinct_values.tolist() == [16, 16, 8]
    del rng


def test_mixture_has_its_known_entropy():
    # x1 = x0 with probability 1/2, else x0 XOR 1 (binary): H(x1 | x0) = 1 bit exactly in counts.
    x0 = np.repeat([0, 1], 400)
    flip = np.tile(np.repeat([0, 1], 200), 2)
    r = conditional_entropy(np.stack([x0, x0 ^ flip], axis=1))
    np.testing.assert_allclose(r.cond_entropy, [1.0, 1.0], atol=1e-12)


def test_agrees_with_naive_dictionary_implementation():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 5, size=(3000, 8))
    tokens[:, 3] = tokens[:, 1]  # a deterministic position in the middle
    np.testing.assert_allclose(conditional_entropy(tokens).cond_entropy, naive_conditional_entropy(tokens),
                               atol=1e-9)


def test_unique_prefixes_give_the_cliff_and_early_stop_is_exact():
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 1024, size=(500, 12))  # prefixes unique after ~2 tokens
    r = conditional_entropy(tokens)
    assert np.all(r.cond_entropy[3:] == 0.0) and r.distinct_prefixes[-1] == 500
    np.testing.assert_allclose(r.cond_entropy, naive_conditional_entropy(tokens), atol=1e-9)
    assert measured_cliff(r, 0.1) == 2  # x_0, x_1 informative; log2 500 = 9 bits < 2 * 10
    assert r.marginal_entropy[-1] > 8  # marginals are still measured after the stop


def test_measured_cliff_ignores_an_early_redundant_token():
    r = conditional_entropy(np.stack([np.arange(8) % 2, np.arange(8) % 2, np.arange(8)], axis=1))
    assert r.cond_entropy[1] == 0.0 and measured_cliff(r, 0.1) == 3


def _write_store(path, tokens, k_sizes):
    with TokenWriter(path, num_rows=len(tokens), k_sizes=k_sizes, view_names=["a"] * tokens.shape[1],
                     num_classes=1, schedule="s", tokenizer_sha256="x") as w:
        w.write(np.arange(len(tokens)), tokens, np.zeros(len(tokens)))
        w.finalize()


def test_reads_one_view_or_all_in_chunks(tmp_path):
    tokens = np.arange(5 * 2 * 3, dtype=np.uint16).reshape(5, 2, 3)
    _write_store(tmp_path / "t.h5", tokens, [64, 64, 64])
    one, k = read_token_matrix(tmp_path / "t.h5", 1, chunk_rows=2)
    np.testing.assert_array_equal(one, tokens[:, 1]) and np.testing.assert_array_equal(k, [64] * 3)
    both, _ = read_token_matrix(tmp_path / "t.h5", "all", max_rows=4, chunk_rows=3)
    np.testing.assert_array_equal(both, np.concatenate([tokens[:4, 0], tokens[:4, 1]]))
    assert one.dtype == np.uint16


def test_measure_entropy_step_end_to_end(tmp_path):
    rng = np.random.default_rng(3)
    k_sizes = [4, 8, 16, 16]
    tokens = np.stack([rng.integers(0, k, size=(256, 2)) for k in k_sizes], axis=2).astype(np.uint16)
    _write_store(tmp_path / "t.h5", tokens, k_sizes)
    csv, js = tmp_path / "e.csv", tmp_path / "e.json"
    subprocess.run([sys.executable, "pipeline_steps/measure_entropy.py", "--tokens", str(tmp_path / "t.h5"),
                    "--schedule", "s", "--out-csv", str(csv), "--out-json", str(js)], check=True,
                   capture_output=True)
    df, summary = pd.read_csv(csv), json.loads(js.read_text())
    assert list(df.k_t) == k_sizes and df.cond_entropy_bits.iloc[0] == pytest.approx(2.0, abs=0.05)
    assert summary["t_star_theory"] == 3 and summary["n_sequences"] == 256  # 2 + 3 + 4 bits >= 8
    assert (df.cond_entropy_bits <= np.log2(df.k_t) + 1e-9).all()
    assert df.cond_entropy_bits.sum() <= np.log2(256) + 1e-9  # plug-in: H(x_<=L) <= log2 N
    assert (tmp_path / "e.png").exists()
