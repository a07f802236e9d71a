"""Token store chunk layout: one view per chunk (ours) vs all V views per chunk (baseline).

Same data, same reads: a view-0 scan (entropy measurement) and random (row, view) batches
(AR training). Prints seconds and the baseline/ours ratio (> 1: ours is faster).
"""

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from vcq.data.tokens import TokenWriter, open_tokens

N, V, L, K = 8192, 20, 256, 16384
BATCHES, BATCH = 40, 256


def view0_scan(ds: h5py.Dataset) -> int:
    """Sum of view 0 read in 1024-row blocks (the sum keeps the read from being skipped)."""
    return sum(int(ds[a : a + 1024, 0].sum()) for a in range(0, N, 1024))


def random_batches(ds: h5py.Dataset, seed: int = 0) -> int:
    """Random (row, view) pairs, read with one sorted fancy index per view present."""
    rng = np.random.default_rng(seed)
    total = 0
    for _ in range(BATCHES):
        rows, views = rng.integers(0, N, BATCH), rng.integers(0, V, BATCH)
        for v in np.unique(views):
            total += int(ds[np.unique(rows[views == v]).tolist(), int(v)].sum())
    return total


def timed(fn, ds) -> tuple[float, int]:
    start = time.perf_counter()
    out = fn(ds)
    return time.perf_counter() - start, out


def main() -> None:
    tokens = np.random.default_rng(0).integers(0, K, (N, V, L)).astype(np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours.h5"
        w = TokenWriter(
            ours,
            num_rows=N,
            k_sizes=np.full(L, K),
            view_names=[str(v) for v in range(V)],
            num_classes=10,
            schedule="constant",
            tokenizer_sha256="-",
            chunk_rows=64,
        )
        w.write(np.arange(N), tokens, np.zeros(N, np.int64))
        w.finalize()
        base = Path(tmp) / "base.h5"
        with h5py.File(base, "w") as f:
            f.create_dataset("tokens", data=tokens, chunks=(64, V, L))
        with open_tokens(ours) as s, h5py.File(base) as b:
            reads = (("view-0 scan", view0_scan), ("random (row, view) batches", random_batches))
            for name, fn in reads:
                t_base, r_base = timed(fn, b["tokens"])
                t_ours, r_ours = timed(fn, s.tokens)
                assert r_base == r_ours
                print(
                    f"{name:28s} ours {t_ours:7.3f} s  baseline {t_base:7.3f} s  "
                    f"ratio {t_base / t_ours:5.1f}x"
                )


if __name__ == "__main__":
    main()
