"""What verifying the per-(row, view) checksums adds to reading a token file of 20,000 rows x
10 views x L = 256 (uint16, chunks of 64 rows x 1 view, as the token store writes it).

For each read path of `vcq.data.tokens.TokenStore`: view scans (entropy, probe, AR validation:
`read_range` of 4,096 rows of one view), 64-pair AR batches from disk (`read_rows`) and the
in-memory load (`read_stored`), the time of the read as consumers call it (checksums included)
and of the checksum verification alone on the same tokens; the cost is verification / (read -
verification), i.e. relative to the read without it. Page cache warm; medians of 5 passes (scans,
load) or of 50 batches. Last line: the three costs (target <= 5 %).
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

from vcq.data.tokens import TokenStore, read_pairs, view_checksums

B, SCAN = 64, 4096


def seconds(fn, repeats: int = 5) -> float:
    """Median wall time of `fn()`."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def verify(tokens: np.ndarray, expected: np.ndarray) -> None:
    """The verification `TokenStore` does on every read."""
    if (view_checksums(tokens) != expected).any():
        raise AssertionError("checksum mismatch")


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.h5"
        write_random_store(path, rng)
        keys = [(rng.integers(0, N, B), rng.integers(0, V, B)) for _ in range(50)]
        with TokenStore(path) as store:
            starts = range(0, N, SCAN)
            store.read_stored()  # warm the page cache
            scan = seconds(lambda: [store.read_range(a, a + SCAN, 0) for a in starts])
            raw = [store.tokens[a : a + SCAN, 0] for a in starts]
            scan_ck = seconds(
                lambda: [
                    verify(r, store.checksums[a : a + SCAN, 0])
                    for a, r in zip(starts, raw, strict=True)
                ]
            )
            batch = statistics.median(seconds(lambda k=k: store.read_rows(*k), 1) for k in keys)
            pairs = [(read_pairs(store.tokens, r, v), r, v) for r, v in keys]
            batch_ck = statistics.median(
                seconds(lambda p=p: verify(p[0], store.checksums[p[1], p[2]]), 1) for p in pairs
            )
            load = seconds(store.read_stored, 3)
            everything = store.tokens[:]
            load_ck = seconds(
                lambda: [
                    verify(everything[a : a + SCAN], store.checksums[a : a + SCAN]) for a in starts
                ],
                3,
            )
    costs = {}
    for name, total, ck in (
        ("view scan (4,096 rows x 1 view)", scan, scan_ck),
        ("AR batch from disk (64 pairs)", batch, batch_ck),
        ("in-memory load (all views)", load, load_ck),
    ):
        costs[name] = ck / (total - ck)
        print(
            f"{name:34s}: read {total * 1e3:9.2f} ms, of which checksums {ck * 1e3:7.3f} ms "
            f"({100 * costs[name]:.1f} % of the read without them)"
        )
    print(
        "checksum verification costs "
        + ", ".join(f"{100 * c:.1f} %" for c in costs.values())
        + " of the read time (view scans, AR batches, in-memory load; target <= 5 %)"
    )


if __name__ == "__main__":
    main()
