"""Atomic file writes and small file helpers shared by every pipeline step."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class StepError(Exception):
    """A failure the user can act on; a pipeline step reports it as one line and exits non-zero."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is ENOSPC, in any library's wording."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # torch.save and HDF5 wrap the OS error in a RuntimeError carrying only its text.
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: str | os.PathLike) -> StepError:
    """The one-line error for a write to `path` that ran out of space."""
    return StepError(f"no space left on device while writing {path}")


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike) -> Iterator[None]:
    """Turn running out of space inside the block into the one-line error naming `path`."""
    try:
        yield
    except BaseException as e:
        if is_disk_full(e):
            raise disk_full_error(path) from e
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` that replaces `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            # mkstemp names its random temporary file; the user needs the output's name
            raise StepError(f"{path}: cannot write there ({e.strerror})") from e
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should be shareable
    try:
        with disk_full_names(path):
            yield tmp_path
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_dir(
    out_dir: str | os.PathLike, elsewhere: dict[str, str | os.PathLike] | None = None
) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` to write a step's outputs into; when the block
    succeeds every file in it moves into `out_dir` (those named in `elsewhere` to the path given
    there), when it fails none does: a step writes all its outputs or none."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".stage", dir=out_dir.parent))
    try:
        with disk_full_names(out_dir):
            yield stage
            for f in sorted(stage.iterdir()):
                target = Path((elsewhere or {}).get(f.name, out_dir / f.name))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(f, 0o666 & ~_umask())
                os.replace(f, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


@contextlib.contextmanager
def reading(path: str | os.PathLike, rule: str | None) -> Iterator[None]:
    """Turn a truncated or malformed `path` met inside the block into the one-line error naming
    the workflow `rule` that writes it (None: a file the user gave, not a run file)."""
    try:
        yield
    except (EOFError, ValueError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error) as e:
        # zipfile, numpy, json and pandas each word a cut-off file differently; one line for all
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        remedy = f"delete it and rerun the `{rule}` rule" if rule else "replace it"
        raise StepError(f"{path}: truncated or malformed ({detail}); {remedy}") from e


def read_json(path: str | os.PathLike, rule: str | None = None) -> Any:
    """Read a JSON file (written by the workflow's `rule`, if it is a run file)."""
    with reading(path, rule):
        return json.loads(Path(path).read_text())


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_key(**parts: Any) -> str:
    """Hex SHA-256 of JSON-serialisable parts: names what produced a piece of resume state."""
    raw = json.dumps(parts, sort_keys=True, default=_json_default)
    return hashlib.sha256(raw.encode()).hexdigest()


def keyed_dir(path: str | os.PathLike, key: str) -> Path:
    """Create `path` for resume state made under `key`; state of another key is discarded."""
    path = Path(path)
    stamp = path / "key.txt"
    if path.exists() and (not stamp.is_file() or stamp.read_text().strip() != key):
        log.warning("discarding %s: made from other inputs than this run's", path)
        shutil.rmtree(path)
    if not stamp.is_file():
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(stamp) as tmp:
            tmp.write_text(key + "\n")
    return path


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metric dicts; serialise them as plain numbers/lists.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def npz_memmap(path: str | Path, key: str = "arr_0") -> np.ndarray:
    """Memory-map array `key` of an uncompressed .npz (np.savez); load it if compressed."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return np.load(path)[key]
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len = int.from_bytes(local[26:28], "little")
        extra_len = int.from_bytes(local[28:30], "little")
        f.seek(info.header_offset + 30 + name_len + extra_len)
        major, _ = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C"
    )
