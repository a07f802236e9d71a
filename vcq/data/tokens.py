"""The HDF5 token store: resumable chunked writer, bounded-memory checked reader and shard merge.

This module is the only reader and writer of token files: every consumer opens them with
`open_tokens`, which refuses an incomplete, malformed or mismatched file in one line naming it,
and every read verifies the checksum of each (row, view) it returns.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from vcq.paths import Layout
from vcq.io import StepError, atomic_path, disk_full_names, is_disk_full

log = logging.getLogger(__name__)

# Version 3: one checksum per (row, view), verified on every read. Older files are refused with
# the rule to rerun: version 2 has one checksum per row (a read of one view could not check it),
# version 1 (no attribute) 20 views, the ten crops and a duplicate mirror of each.
FORMAT_VERSION = 3
OLD_FORMATS = {1: "20 views, 10 of them duplicates", 2: "one checksum per row, not per view"}

REQUIRED_ATTRS = (
    "schedule",
    "k_sizes",
    "k_max",
    "num_classes",
    "views",
    "view_names",
    "tokenizer_sha256",
    "complete",
)


class TokenFileError(StepError, ValueError):
    """A token file that must not be used: incomplete, malformed, or made for other inputs."""


def token_dtype(k_max: int) -> np.dtype:
    """uint16 when every index fits (Kmax <= 65536), else int32."""
    return np.dtype(np.uint16 if k_max <= 65536 else np.int32)


def partial_path(path: str | os.PathLike) -> Path:
    """Where an unfinished store for `path` lives."""
    return Layout.partial(path)


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


def view_checksums(tokens: np.ndarray) -> np.ndarray:
    """int64 checksum of each token sequence (..., L) in its stored dtype: the sequence's bytes
    as 64-bit words times fixed odd weights, summed modulo 2^64. Any one changed word changes it
    (an odd weight is invertible), several almost surely do; reading the bytes as words in place
    keeps it a small fraction of the read (benchmarks/bench_token_checksums.py)."""
    t = np.ascontiguousarray(tokens)
    pad = -(t.shape[-1] * t.itemsize) % 8 // t.itemsize
    if pad:
        t = np.concatenate([t, np.zeros((*t.shape[:-1], pad), t.dtype)], axis=-1)
    words = t.view(np.uint64)
    return np.einsum("...l,l->...", words, _weights(words.shape[-1])).view(np.int64)


@functools.cache
def _weights(length: int) -> np.ndarray:
    w = np.random.default_rng(0).integers(0, 2**63, size=length, dtype=np.uint64)
    return w * np.uint64(2) + np.uint64(1)


class TokenWriter:
    """Create or resume `<path>.partial`; rows are marked done as written; `finalize` renames.

    `rows` (optional) holds the global row index of each local row, for per-rank shards.
    A stale `.partial` (other tokenizer, inputs, schedule, shape) or an unreadable one is discarded.
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
        inputs_sha256: str = "",
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
            "inputs_sha256": inputs_sha256,
        }
        self.num_rows = int(num_rows)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.file: h5py.File | None = None
        self.datasets: dict[str, h5py.Dataset] = {}
        if self.path.exists() and self._matches(self.path, complete=True):
            return
        if self.partial.exists() and not self._matches(self.partial, complete=False):
            log.warning("discarding stale or unreadable %s", self.partial)
            self.partial.unlink()
        if not self.partial.exists():
            self._create(chunk_rows)
        self.file = h5py.File(self.partial, "r+")
        # Held open: a temporary Dataset's cache is written back in its destructor, where HDF5
        # write errors are only printed ("Exception ignored"); held ones surface them at flush().
        self.datasets = {k: self.file[k] for k in ("tokens", "labels", "checksum", "done")}

    def _matches(self, path: Path, complete: bool) -> bool:
        try:
            with h5py.File(path, "r") as f:
                same = all(
                    np.array_equal(f.attrs[k], v) if isinstance(v, np.ndarray) else f.attrs[k] == v
                    for k, v in self.attrs.items()
                )
                same_rows = self.rows is None or np.array_equal(f["rows"][:], self.rows)
                # Every dataset opened (a write that ran out of space can leave one unreadable);
                # files without (row, view) checksums are older formats: re-encode them.
                shapes = [f[k].shape[0] for k in ("tokens", "labels", "done", "checksum")]
                return (
                    same
                    and same_rows
                    and bool(f.attrs["complete"]) == complete
                    and shapes == [self.num_rows] * 4
                    and f["checksum"].shape[1:] == (self.attrs["views"],)
                )
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
            # chunked like the tokens, so its space is taken as rows are written, not up front
            f.create_dataset(
                "checksum",
                shape=shape[:2],
                dtype=np.int64,
                fillvalue=-1,
                chunks=(chunk[0], shape[1]),
            )
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
        sums = view_checksums(tokens.astype(self.datasets["tokens"].dtype))
        with disk_full_names(self.partial):
            for start, stop in _runs(rows):
                span = slice(rows[start], rows[stop - 1] + 1)
                self.datasets["tokens"][span] = tokens[start:stop]
                self.datasets["labels"][span] = labels[start:stop]
                self.datasets["checksum"][span] = sums[start:stop]
            # `done` last: a row is flagged only after its tokens and label were written.
            for start, stop in _runs(rows):
                self.datasets["done"][rows[start] : rows[stop - 1] + 1] = True
            # Flushed per batch: after a kill, every row flagged done is on disk.
            self.file.flush()

    def finalize(self) -> Path:
        """Verify every row as read back from disk, set `complete`, rename `.partial` to path."""
        if self.file is not None:
            missing = len(self.pending_rows())
            if missing:
                raise RuntimeError(f"{self.partial}: {missing} rows not written yet")
            self.close()
            bad = self._verify_on_disk()
            with disk_full_names(self.partial), h5py.File(self.partial, "r+") as f:
                if bad.size:
                    f["done"][:] = f["done"][:] & ~np.isin(np.arange(self.num_rows), bad)
                else:
                    f.attrs["complete"] = True
            if bad.size:
                raise TokenFileError(
                    f"{self.partial}: {bad.size} rows read back differently from what was written "
                    f"(first: row {int(bad[0])}); rerun the step to rewrite them"
                )
            os.replace(self.partial, self.path)
        return self.path

    def _verify_on_disk(self, chunk_rows: int = 4096) -> np.ndarray:
        """Local rows whose tokens, label or checksum on disk do not agree (file reopened)."""
        bad = []
        with h5py.File(self.partial, "r") as f:
            ds, num_classes = f["tokens"], self.attrs["num_classes"]
            for a in range(0, self.num_rows, chunk_rows):
                stored = ds[a : a + chunk_rows]
                block = stored.astype(np.int64)
                labels, sums = f["labels"][a : a + chunk_rows], f["checksum"][a : a + chunk_rows]
                wrong = (view_checksums(stored) != sums).any(1)
                wrong |= (labels < 0) | (labels >= num_classes)
                wrong |= ((block < 0) | (block >= self.k_sizes)).any(axis=(1, 2))
                bad.append(a + np.flatnonzero(wrong))
        return np.concatenate(bad)

    def close(self) -> None:
        """Close the file (the `.partial` stays for a later resume)."""
        if self.file is not None:
            f, self.file, self.datasets = self.file, None, {}
            with disk_full_names(self.partial):
                f.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        if isinstance(exc[0], StepError) and is_disk_full(exc[0]):
            # Closing (or dropping) a file whose writes failed makes HDF5 print errors or crash;
            # the handles stay as they are and the failing process exits (vcq.cli.run_step).
            return
        # Already failing: a close that fails too must not replace that error.
        with contextlib.suppress(StepError, OSError, RuntimeError):
            self.close()


def _runs(sorted_rows: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, stop) positions of maximal runs of consecutive integers."""
    breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    edges = np.concatenate([[0], breaks, [len(sorted_rows)]])
    yield from itertools.pairwise(edges.tolist())


class TokenStore:
    """Read-only, checked view of a complete token file; tokens stay on disk until read.

    Opening checks completeness, the required attributes, dtype, shapes and labels; every read
    checks 0 <= token < K_t and the checksum of each (row, view) it returns. Each failure is a
    `TokenFileError` naming the file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TokenFileError(f"{self.path}: no such token file; run encode_tokens first")
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as e:
            raise TokenFileError(f"{self.path}: not a readable HDF5 token file ({e})") from e
        try:
            self._check_and_load()
        except BaseException:
            self.file.close()
            raise

    def _fail(self, what: str) -> TokenFileError:
        return TokenFileError(f"{self.path}: {what}")

    def _check_and_load(self) -> None:
        a = self.file.attrs
        version = int(a.get("format_version", 1))
        if version != FORMAT_VERSION:
            raise self._fail(
                f"token file format {version} ({OLD_FORMATS.get(version, 'unknown')}), this "
                f"version reads format {FORMAT_VERSION}: re-encode it (snakemake ... --forcerun "
                "encode_tokens)"
            )
        missing = [k for k in REQUIRED_ATTRS if k not in a]
        missing += [k for k in ("tokens", "labels", "done", "checksum") if k not in self.file]
        if missing:
            raise self._fail(
                f"no '{missing[0]}' entry: not written by encode_tokens (or by an "
                "older version); re-encode it"
            )
        if not bool(a["complete"]):
            raise self._fail(
                "is not a complete token store (interrupted write?); rerun "
                "encode_tokens to finish it"
            )
        self.tokens: h5py.Dataset = self.file["tokens"]
        self.schedule = str(a["schedule"])
        self.k_sizes = np.asarray(a["k_sizes"], dtype=np.int64)
        self.k_max = int(a["k_max"])
        self.num_classes = int(a["num_classes"])
        self.view_names: list[str] = json.loads(a["view_names"])
        self.tokenizer_sha256 = str(a["tokenizer_sha256"])
        self.inputs_sha256 = str(a.get("inputs_sha256", ""))
        expected = token_dtype(self.k_max)
        if self.tokens.dtype != expected:
            raise self._fail(
                f"tokens are {self.tokens.dtype}, expected {expected} for "
                f"K_max = {self.k_max}; re-encode it"
            )
        shape = self.tokens.shape
        if (
            len(shape) != 3
            or shape[1] != len(self.view_names)
            or shape[2] != len(self.k_sizes)
            or self.k_max != int(self.k_sizes.max())
        ):
            raise self._fail(
                f"tokens {shape} do not match views {len(self.view_names)}, "
                f"L = {len(self.k_sizes)}, K_max = {self.k_max}; re-encode it"
            )
        done = self.file["done"][:]
        if done.shape != (shape[0],) or not done.all():
            raise self._fail(
                f"{int((~done).sum())} rows marked complete but never written; re-encode it"
            )
        self.labels: np.ndarray = self.file["labels"][:]
        if self.labels.shape != (shape[0],):
            raise self._fail(f"labels {self.labels.shape} for {shape[0]} rows; re-encode it")
        # (N, V) int64 in memory: 8 bytes per stored view (0.1 GB for ImageNet's ten crops)
        self.checksums: np.ndarray = self.file["checksum"][:]
        if self.checksums.shape != shape[:2]:
            raise self._fail(f"checksums {self.checksums.shape} for {shape[:2]}; re-encode it")
        wrong = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if wrong.size:
            raise self._fail(
                f"label {int(self.labels[wrong[0]])} of row {int(wrong[0])} is "
                f"outside 0..{self.num_classes - 1}; re-encode it"
            )

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

    def _checked(
        self, block: np.ndarray, rows: np.ndarray, views: np.ndarray | int | None = None
    ) -> np.ndarray:
        """`block` as int64 after the checksum and K_t bound checks: tokens (n, L) of the pairs
        (rows[i], views[i]) (`views` may be one view for all), or (n, V, L) of whole rows."""
        rows = np.asarray(rows, dtype=np.int64)
        checked = block.astype(np.int64)
        try:
            check_bounds(checked, self.k_sizes, rows)
        except ValueError as e:
            raise self._fail(f"{e}; re-encode it with the tokenizer of this schedule") from e
        expected = self.checksums[rows] if views is None else self.checksums[rows, views]
        bad = view_checksums(block) != expected
        if bad.any():
            where = np.argwhere(bad)[0]
            row = int(rows[where[0]])
            if views is None:
                view = int(where[1])
            else:
                view = int(np.broadcast_to(views, rows.shape)[where[0]])
            raise self._fail(
                f"row {row}, view {view}: tokens do not match their checksum (changed after "
                "encoding); re-encode it (snakemake ... --forcerun encode_tokens)"
            )
        return checked

    def read_range(self, start: int, stop: int, view: int | None = None) -> np.ndarray:
        """Rows `start:stop` as int64, checked: (n, L) of one view, or (n, V, L) with `view=None`."""
        stop = min(stop, self.num_rows)
        block = self.tokens[start:stop] if view is None else self.tokens[start:stop, view]
        return self._checked(block, np.arange(start, stop), view)

    def iter_chunks(
        self, view: int | None = None, chunk_rows: int | None = None
    ) -> Iterator[np.ndarray]:
        """Row blocks as int64: (n, L) of one view, or (n, V, L) with `view=None`."""
        step = chunk_rows or self.tokens.chunks[0]
        for a in range(0, self.num_rows, step):
            yield self.read_range(a, a + step, view)

    def read(self, view: int | None = None) -> np.ndarray:
        """All tokens in memory (small stores only)."""
        return np.concatenate(list(self.iter_chunks(view)), axis=0)

    def read_rows(self, rows: np.ndarray, views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (B, L) int64 and labels (B,) of `rows` (any order, repeats allowed), one view
        each.

        Only the requested views are read (`read_pairs`), not every view of each row.
        """
        rows, views = np.asarray(rows, dtype=np.int64), np.asarray(views, dtype=np.int64)
        tokens = read_pairs(self.tokens, rows, views)
        return self._checked(tokens, rows, views), self.labels[rows]

    def read_stored(self, chunk_rows: int = 4096) -> np.ndarray:
        """All tokens (N, V, L) in their stored dtype, checked block by block (RAM-sized)."""
        out = self.tokens[:]
        for a in range(0, self.num_rows, chunk_rows):
            self._checked(out[a : a + chunk_rows], np.arange(a, min(a + chunk_rows, self.num_rows)))
        return out

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tokens(
    path: str | os.PathLike,
    k_sizes: Sequence[int] | None = None,
    tokenizer_sha256: str | None = None,
) -> TokenStore:
    """Open a complete, checked store; refuse one written for other K_t or by another tokenizer."""
    store = TokenStore(path)
    if k_sizes is not None and not np.array_equal(store.k_sizes, np.asarray(k_sizes)):
        store.close()
        raise TokenFileError(
            f"{path}: k_sizes in the file (schedule '{store.schedule}', L={len(store.k_sizes)}, "
            f"Kmax={store.k_max}) differ from the expected K_t (L={len(k_sizes)}, "
            f"Kmax={int(np.max(k_sizes))}); re-encode with the matching tokenizer"
        )
    if tokenizer_sha256 is not None and store.tokenizer_sha256 != tokenizer_sha256:
        store.close()
        raise TokenFileError(
            f"{path}: encoded by another tokenizer (sha256 {store.tokenizer_sha256[:12]}..., "
            f"expected {tokenizer_sha256[:12]}...); re-encode it with this tokenizer"
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
            same_inputs = (s.tokenizer_sha256, s.inputs_sha256) == (
                first.tokenizer_sha256,
                first.inputs_sha256,
            )
            if not (same_inputs and np.array_equal(s.k_sizes, first.k_sizes)):
                raise ValueError(f"{s.path}: other K_t or tokenizer than {first.path}")
        rows = [s.file["rows"][:] for s in shards]
        n = sum(len(r) for r in rows)
        if not np.array_equal(np.sort(np.concatenate(rows)), np.arange(n)):
            raise ValueError("shards do not cover rows 0..N-1 exactly once")
        writer = TokenWriter(
            out_path,
            num_rows=n,
            k_sizes=first.k_sizes,
            view_names=first.view_names,
            num_classes=first.num_classes,
            schedule=first.schedule,
            tokenizer_sha256=first.tokenizer_sha256,
            chunk_rows=first.tokens.chunks[0],
            inputs_sha256=first.inputs_sha256,
        )
        with writer:
            for a in range(0, n, chunk_rows):
                b = min(a + chunk_rows, n)
                block = np.zeros((b - a, first.num_views, first.seq_len), dtype=first.tokens.dtype)
                labels = np.zeros(b - a, dtype=np.int64)
                for r, s in zip(rows, shards, strict=True):
                    # Shard rows are ascending, so the rows of [a, b) are one contiguous slice.
                    lo, hi = np.searchsorted(r, [a, b])
                    block[r[lo:hi] - a] = s.read_range(int(lo), int(hi))
                    labels[r[lo:hi] - a] = s.labels[lo:hi]
                writer.write(np.arange(a, b), block, labels)
            return writer.finalize()
    finally:
        for s in shards:
            s.close()


def read_pairs(tokens: h5py.Dataset, rows: np.ndarray, views: np.ndarray) -> np.ndarray:
    """Tokens (B, L) of the (row, view) pairs, in order (repeats allowed), unchecked and as stored.

    One read per distinct view, each touching only the chunks of its rows; reading whole rows
    would move all V views to keep one.
    """
    rows, views = np.asarray(rows, dtype=np.int64), np.asarray(views, dtype=np.int64)
    out = np.empty((len(rows), tokens.shape[2]), dtype=tokens.dtype)
    for v in np.unique(views):
        sel = views == v
        # h5py fancy indexing needs increasing, unique indices
        uniq, inv = np.unique(rows[sel], return_inverse=True)
        out[sel] = tokens[uniq, int(v)][inv]
    return out
