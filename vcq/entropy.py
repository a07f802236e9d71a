"""The entropy cliff: Prop. 1 in theory, and plug-in conditional entropies of real token sets.

H(x_t | x_<t) is estimated over exact prefixes: with n_g sequences sharing prefix g,
H(x_<=t) = -sum_g (n_g/N) log2(n_g/N) and H(x_t | x_<t) = H(x_<=t) - H(x_<t). Prefixes are kept as
one integer id per sequence and refined one position at a time (sort-based relabelling), so the
cost is O(N log N) per position and memory O(N); once every prefix is unique the conditional
entropy is exactly zero for all later positions (the cliff) and the refinement stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vcq import schedules
from vcq.data.tokens import open_tokens


def cliff_position(n_images: int, k: int) -> int:
    """Prop. 1: t* = ceil(log2 N / log2 K), the first position whose entropy a constant K-codebook loses."""
    t = 0
    while k**t < n_images:  # integer form of the ceiling: exact even where log2 N rounds (N ~ 1e17)
        t += 1
    return t


@dataclass
class EntropyResult:
    """Per-position statistics of a token set (arrays of length L, entropies in bits)."""

    cond_entropy: np.ndarray
    marginal_entropy: np.ndarray
    distinct_values: np.ndarray
    distinct_prefixes: np.ndarray
    n_sequences: int

    def utilization(self, k_sizes: np.ndarray) -> np.ndarray:
        """Fraction of the K_t codes that occur at position t."""
        return self.distinct_values / np.asarray(k_sizes, dtype=np.float64)


def _entropy_of_counts(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def conditional_entropy(tokens: np.ndarray) -> EntropyResult:
    """Plug-in H(x_t | x_<t), H(x_t), distinct values and distinct prefixes x_<=t for tokens (N, L)."""
    tokens = np.asarray(tokens)
    n, length = tokens.shape
    cond, marg = np.zeros(length), np.zeros(length)
    distinct, prefixes = np.zeros(length, np.int64), np.full(length, n, np.int64)
    prefix = np.zeros(n, np.int64)
    n_groups, h_prev = 1, 0.0
    for t in range(length):
        col = tokens[:, t].astype(np.int64)
        values = np.bincount(col)
        distinct[t] = np.count_nonzero(values)
        marg[t] = _entropy_of_counts(values, n)
        if n_groups == n:  # every prefix already unique: nothing left to condition on
            continue
        # Relabelled prefix ids are < n_groups <= N, so the combined key stays far below 2^63.
        key = prefix * (int(col.max()) + 1) + col
        _, prefix, counts = np.unique(key, return_inverse=True, return_counts=True)
        prefix = prefix.reshape(-1)
        n_groups = len(counts)
        h = _entropy_of_counts(counts, n)
        cond[t], h_prev = h - h_prev, h
        prefixes[t] = n_groups
    return EntropyResult(np.maximum(cond, 0.0), marg, distinct, prefixes, n)


def measured_cliff(result: EntropyResult, threshold_bits: float) -> int:
    """The position t from which H(x_s | x_<s) stays below `threshold_bits` for every s >= t.

    Same convention as Prop. 1 and Eq. 2: positions count from 0, so t* = 2 means x_0 and x_1
    carry information and every later token is (almost) determined by its prefix. Requiring the
    collapse to last keeps a redundant early token (common in small tokenizers) from counting.
    """
    above = np.nonzero(result.cond_entropy >= threshold_bits)[0]
    return int(above[-1]) + 1 if above.size else 0


def read_token_matrix(path: str, view: int | str = 0, max_rows: int | None = None,
                      chunk_rows: int = 65536,
                      tokenizer_sha256: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (N, L) in the file's compact dtype and K_t from an HDF5 token store, read in chunks.

    `view` is a view index, or "all" to treat every (image, view) pair as a sequence. The store
    checks the file (and, if given, the tokenizer hash) on open and K_t bounds on every chunk.
    """
    with open_tokens(path, tokenizer_sha256=tokenizer_sha256) as store:
        n = min(store.num_rows, max_rows) if max_rows else store.num_rows
        views = range(store.num_views) if view == "all" else [int(view)]
        out = np.empty((n * len(views), store.seq_len), dtype=store.tokens.dtype)
        for i, v in enumerate(views):
            row = 0
            for block in store.iter_chunks(v, chunk_rows):
                block = block[: n - row]
                out[i * n + row:i * n + row + len(block)] = block
                row += len(block)
                if row == n:
                    break
        return out, store.k_sizes


def entropy_table(result: EntropyResult, k_sizes: np.ndarray) -> list[dict]:
    """Rows of the per-position entropy CSV with the theory of Fig. 2(a) alongside.

    `theory_remaining_bits` is log2 N - I(t) clipped at 0 (information left for x_t and later when
    every earlier token used its full log2 K_s); `theory_bound_bits` = min(log2 K_t, remaining) is
    the Fig. 2(a) curve of such a maximally informative token set.
    """
    k_sizes = np.asarray(k_sizes, np.int64)
    budget = np.maximum(schedules.remaining_budget(k_sizes, result.n_sequences)[:-1], 0.0)
    bound = np.minimum(np.log2(k_sizes), budget)
    util = result.utilization(k_sizes)
    return [
        {"t": t, "k_t": int(k_sizes[t]), "cond_entropy_bits": float(result.cond_entropy[t]),
         "marginal_entropy_bits": float(result.marginal_entropy[t]), "utilization": float(util[t]),
         "distinct_prefixes": int(result.distinct_prefixes[t]),
         "theory_remaining_bits": float(budget[t]), "theory_bound_bits": float(bound[t])}
        for t in range(len(k_sizes))
    ]
