"""The HDF5 token store: resumable chunked writer, bounded-memory reader, shard merge."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from vcq.io import atomic_path

log = logging.getLogger(__name__)

# Version 2: train views are ten_crop's 10 distinct views. Files without the attribute are version 1
# (20 views: the ten crops and a duplicate mirror of each) and are refused.
FORMAT_VERSION = 2


def token_dtype(k_max: int) -> np.dtype:
    """uint16 when every index fits (Kmax <= 65536), else int32."""
    return np.dtype(np.uint16 if k_max <= 65536 else np.int32)


def partial_path(path: str | os.PathLike) -> Path:
    """Where an unfinished store for `path` lives."""
    return Path(f"{path}.partial")


def check_bounds(tokens: np.ndarray, k_sizes: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Raise ValueError unless 0 <= tokens[..., t] < K_t everywhere."""
    bad = (tokens < 0) | (tokens >= k_sizes)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        row = int(rows[where[0]]) if rows is not None else int(where[0])
        t = int(where[-1])
        raise ValueError(
            f"token {int(tokens[where])} at row {row}, position {t} is out of range: "
            f"K_t = {int(k_sizes[t])}"
        )


class TokenWriter:
    """Create or resume `<path>.partial`; rows are marked done as written; `finalize` renames.

    `rows` (optional) holds the global row index of each local row, for per-rank shards.
    A stale `.partial` (other tokenizer, schedule, shape) or an unreadable one is discarded.
    If `<path>` already exists complete with the same attributes, nothing is pending.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        num_rows: int,
        k_sizes: Sequence[int],
        view_names: Sequence[str],
        num_classes: int,
        schedule: str,
        tokenizer_sha256: str,
        chunk_rows: int = 64,
        rows: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(path)
        self.k_sizes = np.asarray(k_sizes, dtype=np.int64)
        self.attrs = {
            "format_version": FORMAT_VERSION,
            "schedule": schedule,
            "k_sizes": self.k_sizes,
            "k_max": int(self.k_sizes.max()),
            "num_classes": int(num_classes),
            "views": len(view_names),
            "view_names": json.dumps(list(view_names)),
            "tokenizer_sha256": tokenizer_sha256,
        }
        self.num_rows = int(num_rows)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.file: h5py.File | None = None
        if self.path.exists() and self._matches(self.path):
            return
        if self.partial.exists() and not self._matches(self.partial):
            log.warning("discarding stale or unreadable %s", self.partial)
            self.partial.unlink()
        if not self.partial.exists():
            self._create(chunk_rows)
        self.file = h5py.File(self.partial, "r+")

    def _matches(self, path: Path) -> bool:
        try:
            with h5py.File(path, "r") as f:
                same = all(
                    np.array_equal(f.attrs[k], v) if isinstance(v, np.ndarray) else f.attrs[k] == v
                    for k, v in self.attrs.items()
                )
                same_rows = self.rows is None or np.array_equal(f["rows"][:], self.rows)
                return same and same_rows and f["tokens"].shape[0] == self.num_rows
        except (OSError, KeyError):
            return False

    def _create(self, chunk_rows: int) -> None:
        # Built under a temp name so that a kill here never leaves a half-made `.partial`.
        shape = (self.num_rows, self.attrs["views"], len(self.k_sizes))
        with atomic_path(self.partial) as tmp, h5py.File(tmp, "w") as f:
            # One view per chunk: a view-0 scan reads 1/V of the file, and a random (row, view)
            # read in AR training touches one small chunk instead of all V views of a row block.
            chunk = (max(1, min(chunk_rows, self.num_rows)), 1, shape[2])
            dtype = token_dtype(self.attrs["k_max"])
            f.create_dataset("tokens", shape=shape, dtype=dtype, chunks=chunk)
            f.create_dataset("labels", shape=(self.num_rows,), dtype=np.int64, fillvalue=-1)
            f.create_dataset("done", shape=(self.num_rows,), dtype=bool, fillvalue=False)
            if self.rows is not None:
                f.create_dataset("rows", data=self.rows)
            f.attrs.update(self.attrs)
            f.attrs["complete"] = False

    def pending_rows(self) -> np.ndarray:
        """Local row indices not yet written, ascending."""
        if self.file is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(~self.file["done"][:])

    def write(self, rows: np.ndarray, tokens: np.ndarray, labels: np.ndarray) -> None:
        """Store tokens (n, V, L) (or (n, L) if V = 1) and labels at local `rows`; mark done."""
        if self.file is None:
            raise RuntimeError(f"{self.path} is already complete")
        rows = np.asarray(rows, dtype=np.int64)
        tokens = np.asarray(tokens)
        if tokens.ndim == 2:
            tokens = tokens[:, None]
        expected = (len(rows), self.attrs["views"], len(self.k_sizes))
        if tokens.shape != expected:
            raise ValueError(f"tokens shape {tokens.shape}, expected {expected}")
        check_bounds(tokens, self.k_sizes, rows)
        order = np.argsort(rows)
        rows, tokens, labels = rows[order], tokens[order], np.asarray(labels, dtype=np.int64)[order]
        for start, stop in _runs(rows):
            span = slice(rows[start], rows[stop - 1] + 1)
            self.file["tokens"][span] = tokens[start:stop]
            self.file["labels"][span] = labels[start:stop]
        # `done` last: a row is flagged only after its tokens and label were written.
        for start, stop in _runs(rows):
            self.file["done"][rows[start] : rows[stop - 1] + 1] = True
        # Flushed per batch: after a kill, every row flagged done is on disk.
        self.file.flush()

    def finalize(self) -> Path:
        """Check every row is done, set `complete`, rename `.partial` to the final path."""
        if self.file is not None:
            missing = len(self.pending_rows())
            if missing:
                raise RuntimeError(f"{self.partial}: {missing} rows not written yet")
            self.file.attrs["complete"] = True
            self.close()
            os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close the file (the `.partial` stays for a later resume)."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _runs(sorted_rows: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, stop) positions of maximal runs of consecutive integers."""
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    edges = np.concatenate([[0], breaks, [len(sorted_rows)]])
    yield from zip(edges[:-1].tolist(), edges[1:].tolist())


class TokenStore:
    """Read-only view of a complete token file; tokens stay on disk until iterated."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.file = h5py.File(self.path, "r")
        a = self.file.attrs
        version = int(a.get("format_version", 1))
        if version != FORMAT_VERSION:
            self.file.close()
            raise ValueError(
                f"{self.path}: token file format {version}, this version reads format {FORMAT_VERSION} "
                "(10 ten-crop views, not 20); delete it and re-encode (encode_tokens)"
            )
        if not bool(a.get("complete", False)):
            self.file.close()
            raise ValueError(f"{self.path} is not a complete token store (interrupted write?)")
        self.tokens: h5py.Dataset = self.file["tokens"]
        self.labels: np.ndarray = self.file["labels"][:]
        self.schedule = str(a["schedule"])
        self.k_sizes = np.asarray(a["k_sizes"], dtype=np.int64)
        self.k_max = int(a["k_max"])
        self.num_classes = int(a["num_classes"])
        self.view_names: list[str] = json.loads(a["view_names"])
        self.tokenizer_sha256 = str(a["tokenizer_sha256"])

    @property
    def num_rows(self) -> int:
        """Number of images N."""
        return self.tokens.shape[0]

    @property
    def num_views(self) -> int:
        """Views per image V."""
        return self.tokens.shape[1]

    @property
    def seq_len(self) -> int:
        """Tokens per view L."""
        return self.tokens.shape[2]

    def iter_chunks(
        self, view: int | None = None, chunk_rows: int | None = None
    ) -> Iterator[np.ndarray]:
        """Row blocks as int64: (n, L) of one view, or (n, V, L) with `view=None`."""
        step = chunk_rows or self.tokens.chunks[0]
        for a in range(0, self.num_rows, step):
            block = self.tokens[a : a + step] if view is None else self.tokens[a : a + step, view]
            yield block.astype(np.int64)

    def read(self, view: int | None = None) -> np.ndarray:
        """All tokens in memory (small stores only)."""
        return np.concatenate(list(self.iter_chunks(view)), axis=0)

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tokens(path: str | os.PathLike, k_sizes: Sequence[int] | None = None) -> TokenStore:
    """Open a complete store; if `k_sizes` is given, refuse a file written for other K_t."""
    store = TokenStore(path)
    if k_sizes is not None and not np.array_equal(store.k_sizes, np.asarray(k_sizes)):
        store.close()
        raise ValueError(
            f"{path}: k_sizes in the file (schedule '{store.schedule}', L={len(store.k_sizes)}, "
            f"Kmax={store.k_max}) differ from the expected K_t (L={len(k_sizes)}, "
            f"Kmax={int(np.max(k_sizes))}); re-encode with the matching tokenizer"
        )
    return store


def merge_shards(
    shard_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike, chunk_rows: int = 4096
) -> Path:
    """Merge complete per-rank stores (each with a `rows` dataset) into one store at `out_path`."""
    shards = [TokenStore(p) for p in shard_paths]
    try:
        first = shards[0]
        for s in shards[1:]:
            same_tokenizer = s.tokenizer_sha256 == first.tokenizer_sha256
            if not (same_tokenizer and np.array_equal(s.k_sizes, first.k_sizes)):
                raise ValueError(f"{s.path}: other K_t or tokenizer than {first.path}")
        rows = [s.file["rows"][:] for s in shards]
        n = sum(len(r) for r in rows)
        if not np.array_equal(np.sort(np.concatenate(rows)), np.arange(n)):
            raise ValueError("shards do not cover rows 0..N-1 exactly once")
        writer = TokenWriter(
            out_path, num_rows=n, k_sizes=first.k_sizes, view_names=first.view_names,
            num_classes=first.num_classes, schedule=first.schedule,
            tokenizer_sha256=first.tokenizer_sha256, chunk_rows=first.tokens.chunks[0],
        )
        with writer:
            for a in range(0, n, chunk_rows):
                b = min(a + chunk_rows, n)
                block = np.zeros((b - a, first.num_views, first.seq_len), dtype=first.tokens.dtype)
                labels = np.zeros(b - a, dtype=np.int64)
                for r, s in zip(rows, shards):
                    # Shard rows are ascending, so the rows of [a, b) are one contiguous slice.
                    lo, hi = np.searchsorted(r, [a, b])
                    block[r[lo:hi] - a] = s.tokens[lo:hi]
                    labels[r[lo:hi] - a] = s.labels[lo:hi]
                writer.write(np.arange(a, b), block, labels)
            return writer.finalize()
    finally:
        for s in shards:
            s.close()
