"""Set-up shared by the benchmarks (not a benchmark: `make bench` runs `bench_*.py` only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcq.data.tokens import TokenWriter

# the token file both token-store benchmarks read: ImageNet-scale K, 10 views of L = 256
ROWS, VIEWS, SEQ_LEN, K, CLASSES = 20_000, 10, 256, 16384, 1000


def write_random_store(path: Path, rng: np.random.Generator) -> None:
    """A complete store of ROWS x VIEWS x SEQ_LEN uniform random tokens (< K) and labels, written
    by the token store's writer in its layout (chunks of 64 rows x 1 view), 2,000 rows a call."""
    with TokenWriter(
        path,
        num_rows=ROWS,
        k_sizes=[K] * SEQ_LEN,
        view_names=[str(v) for v in range(VIEWS)],
        num_classes=CLASSES,
        schedule="c",
        tokenizer_sha256="x",
        chunk_rows=64,
    ) as w:
        for a in range(0, ROWS, 2000):
            tokens = rng.integers(0, K, (2000, VIEWS, SEQ_LEN))
            w.write(np.arange(a, a + 2000), tokens, rng.integers(0, CLASSES, 2000))
        w.finalize()
