"""Assembling a 64-row AR batch from a token file of 20,000 rows x 10 views x L = 256.

Three readers of the same random (row, view) pairs: reading whole rows (all views) and keeping
one view per row (the old path), `vcq.data.tokens.read_pairs` (only the needed views), and the
in-memory array that `TokenBatches` holds when the tokens fit. The file is written by the token
store's writer (chunks of 64 rows x 1 view); the page cache is warm. Medians over 50 batches.
Last line: speed-up of the pair reads and their time (targets >= 5x and <= 10 ms).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROWS as N
from _common import VIEWS as V
from _common import write_random_store

from vcq.data.tokens import TokenStore, read_pairs
from vcq.train.batches import TokenBatches

B = 64


def all_views(ds, rows: np.ndarray, views: np.ndarray) -> np.ndarray:
    """The old reader: whole rows (every view), then one view per row."""
    uniq, inv = np.unique(rows, return_inverse=True)
    return ds[uniq][inv, views]


def median_ms(fn, keys) -> float:
    times = []
    for rows, views in keys:
        t0 = time.perf_counter()
        fn(rows, views)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.h5"
        write_random_store(path, rng)
        keys = [(rng.integers(0, N, B), rng.integers(0, V, B)) for _ in range(50)]
        with TokenStore(path) as store:
            for rows, views in keys[:5]:  # warm the page cache
                all_views(store.tokens, rows, views)
            assert all(
                np.array_equal(all_views(store.tokens, r, v), read_pairs(store.tokens, r, v))
                for r, v in keys
            )
            old = median_ms(lambda r, v: all_views(store.tokens, r, v), keys)
            new = median_ms(lambda r, v: read_pairs(store.tokens, r, v), keys)
            ram = TokenBatches(store, in_memory=True)
            mem = median_ms(ram.batch, keys)
            disk = median_ms(TokenBatches(store, in_memory=False).batch, keys)
    print(f"all views then one: {old:8.2f} ms/batch")
    print(
        f"(row, view) pairs : {new:8.2f} ms/batch  "
        f"(TokenBatches from disk, int64 tensors: {disk:.2f} ms)"
    )
    print(f"in memory         : {mem:8.2f} ms/batch  (TokenBatches in_memory)")
    print(
        f"pair reads {old / new:.1f}x faster than all views, {new:.2f} ms per 64-row batch "
        "(targets >= 5x, <= 10 ms)"
    )


if __name__ == "__main__":
    main()
