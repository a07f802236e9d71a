"""Run files that name their own schedule: one writer and one checking reader per format, and the
index that matches them to the config's schedules (tables and figures never trust file order)."""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import pandas as pd

from vcq.io import StepError, atomic_path, npz_memmap, read_json, reading

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def unnamed_error(path: str | Path, rule: str) -> StepError:
    """The error for a file that does not name its schedule (written before files named theirs)."""
    return StepError(
        f"{path}: names no schedule (written by an older version); rerun the `{rule}` rule"
    )


def _named_csv(path: str | Path, columns: list[str], rule: str) -> tuple[str, pd.DataFrame]:
    """(schedule, the other columns) of a CSV whose `schedule` column holds one name."""
    # names through the csv module: pandas would read the schedule `007` as 7 and `NA` as missing
    with reading(path, rule), open(path, newline="") as fh:
        text = fh.read()
        if text and not text.endswith("\n"):
            # the writer ends every row with a line break; pandas would read a cut row as NaN
            raise ValueError("the last row is cut off")
        names = sorted({row.get("schedule") or "" for row in csv.DictReader(io.StringIO(text))})
    if not names or "" in names:
        raise unnamed_error(path, rule)
    if len(names) != 1:
        raise StepError(f"{path}: rows of several schedules {names}; rerun the `{rule}` rule")
    with reading(path, rule):
        df = pd.read_csv(path).drop(columns="schedule")
    missing = [c for c in columns if c not in df]
    if missing:
        raise StepError(f"{path}: no column {missing[0]!r}; rerun the `{rule}` rule")
    return names[0], df


def _write_named_csv(path: str | Path, schedule: str, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["schedule", *rows[0]], lineterminator="\n")
        writer.writeheader()
        writer.writerows({"schedule": schedule, **r} for r in rows)


POSITION_LOSS_COLUMNS = ["t", "train_loss", "val_loss"]


def write_position_loss(
    path: str | Path, schedule: str, train_loss: np.ndarray, val_loss: np.ndarray
) -> None:
    """Per-position train/val cross-entropy of an AR model (CSV schedule,t,train_loss,val_loss)."""
    rows = [
        {"t": t, "train_loss": f"{a:.6f}", "val_loss": f"{b:.6f}"}
        for t, (a, b) in enumerate(zip(train_loss, val_loss, strict=True))
    ]
    _write_named_csv(path, schedule, rows)


def read_position_loss(path: str | Path) -> tuple[str, pd.DataFrame]:
    """(schedule, columns t, train_loss, val_loss) of a position-loss CSV."""
    return _named_csv(path, POSITION_LOSS_COLUMNS, "train_ar")


ENTROPY_COLUMNS = [
    "t",
    "k_t",
    "cond_entropy_bits",
    "marginal_entropy_bits",
    "utilization",
    "distinct_prefixes",
    "theory_remaining_bits",
    "theory_bound_bits",
]


def write_entropy_csv(path: str | Path, schedule: str, rows: list[dict]) -> None:
    """The per-position entropy table (`vcq.entropy.entropy_table` rows) with its schedule."""
    _write_named_csv(path, schedule, rows)


def read_entropy_csv(path: str | Path) -> tuple[str, pd.DataFrame]:
    """(schedule, the `ENTROPY_COLUMNS`) of a per-position entropy CSV."""
    return _named_csv(path, ENTROPY_COLUMNS, "measure_entropy")


def read_log(path: str | Path, rule: str) -> tuple[str, pd.DataFrame]:
    """(schedule, one row per logged step) of a training log (`vcq.train.log.JsonlLog`) of
    `rule`."""
    from vcq.train.log import JsonlLog

    with reading(path, rule):
        records = JsonlLog.read(path)
    if not records:
        raise StepError(f"{path}: no records; rerun the `{rule}` rule")
    names = {r.get("schedule") for r in records}
    if None in names:
        raise unnamed_error(path, rule)
    if len(names) != 1:
        raise StepError(f"{path}: records of several schedules {sorted(names)}; rerun `{rule}`")
    frame = pd.DataFrame(records).drop(columns="schedule")
    if "step" in frame:
        # a run resumed from last.pt (or a second copy of the step) logs some steps again: each
        # step once, the latest write winning, in step order
        frame = frame.drop_duplicates("step", keep="last").sort_values("step", kind="stable")
    return names.pop(), frame.reset_index(drop=True)


def read_metrics(path: str | Path, rule: str) -> dict:
    """A metric JSON (recon, entropy, gen, probe), which must carry its `schedule`."""
    record = read_json(path, rule)
    if not isinstance(record, dict):
        raise StepError(f"{path}: not a metrics record; delete it and rerun the `{rule}` rule")
    if "schedule" not in record:
        raise unnamed_error(path, rule)
    return record


def _npz_strings(path: str | Path, keys: list[str], rule: str) -> list[str] | None:
    """The string entries `keys` of an .npz of `rule` (loaded without pickle); None if one is
    absent."""
    with reading(path, rule), np.load(path, allow_pickle=False) as z:
        if any(k not in z for k in keys):
            return None
        return [str(z[k]) for k in keys]


def _npz_member(zf: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    zf.writestr(f"{key}.npy", buf.getvalue())


class ReconImages(NamedTuple):
    """The val reconstructions of one tokenizer and their originals (uint8 NHWC, memory-mapped)."""

    schedule: str
    recon: np.ndarray
    originals: np.ndarray


@contextmanager
def write_recon_images(
    path: str | Path, schedule: str, shape: tuple[int, ...]
) -> Iterator[tuple[Path, Path]]:
    """Yield two uint8 .npy files of `shape` (reconstructions, originals) to fill in place; on
    exit pack them with the schedule name into the uncompressed .npz `path` (atomically).

    The parts folder goes on success and on error alike: nothing resumes from it, and at ImageNet
    scale it holds about 20 GB.
    """
    path = Path(path)
    parts = path.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    try:
        files = parts / "recon.npy", parts / "originals.npy"
        for f in files:
            np.lib.format.open_memmap(f, mode="w+", dtype=np.uint8, shape=shape).flush()
        yield files
        with (
            atomic_path(path) as tmp,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
        ):
            for key, f in zip(("recon", "originals"), files, strict=True):
                zf.write(f, f"{key}.npy")
            _npz_member(zf, "schedule", np.array(schedule))
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def read_recon_images(path: str | Path) -> ReconImages:
    """The reconstructions file of `eval_recon` (`write_recon_images`), memory-mapped."""
    names = _npz_strings(path, ["schedule"], "eval_recon")
    if names is None:
        raise unnamed_error(path, "eval_recon")
    with reading(path, "eval_recon"):
        return ReconImages(names[0], npz_memmap(path, "recon"), npz_memmap(path, "originals"))


class Samples(NamedTuple):
    """One preset's generated images (uint8 NHWC, memory-mapped) and their class labels."""

    schedule: str
    preset: str
    images: np.ndarray
    labels: np.ndarray | None


def _npz_stream(zf: zipfile.ZipFile, key: str, chunks: list[Path]) -> None:
    """One .npz member `key` of the .npy `chunks` stacked along axis 0, streamed chunk by chunk."""
    arrays = []
    for c in chunks:
        with reading(c, "sample"):
            arrays.append(np.load(c, mmap_mode="r"))
    header = {
        "descr": np.lib.format.dtype_to_descr(arrays[0].dtype),
        "fortran_order": False,
        "shape": (sum(len(a) for a in arrays), *arrays[0].shape[1:]),
    }
    with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for a in arrays:
            member.write(np.ascontiguousarray(a).tobytes())


def write_samples(
    path: str | Path,
    schedule: str,
    preset: str,
    image_chunks: list[Path],
    labels: np.ndarray,
    token_chunks: list[Path],
) -> None:
    """The ADM-style sample .npz (`arr_0` uint8 NHWC, `labels`, `tokens`) with `schedule` and
    `preset`, streamed from chunk .npy files without loading them all, written atomically."""
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
    ):
        _npz_stream(zf, "arr_0", image_chunks)
        _npz_member(zf, "labels", labels.astype(np.int64))
        _npz_stream(zf, "tokens", token_chunks)
        _npz_member(zf, "schedule", np.array(schedule))
        _npz_member(zf, "preset", np.array(preset))


def read_samples(path: str | Path) -> Samples:
    """A sample .npz of the `sample` rule (`write_samples`), images memory-mapped."""
    names = _npz_strings(path, ["schedule", "preset"], "sample")
    if names is None:
        raise unnamed_error(path, "sample")
    with reading(path, "sample"):
        with np.load(path, allow_pickle=False) as z:
            labels = z.get("labels")
        return Samples(*names, npz_memmap(path), labels)


def write_adm_samples(path: str | Path, samples: str | Path) -> None:
    """The images of a sample .npz alone, as ADM's evaluator reads them (`arr_0` uint8
    N×H×W×3, file order = the sample file's random class order), written atomically."""
    images = read_samples(samples).images
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise StepError(f"{samples}: arr_0 is {images.dtype} {images.shape}, not uint8 N×H×W×3")
    header = {"descr": "|u1", "fortran_order": False, "shape": images.shape}
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
        zf.open("arr_0.npy", "w", force_zip64=True) as member,
    ):
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, len(images), 1000):  # 1,000 images at 256² are 197 MB
            member.write(np.ascontiguousarray(images[start : start + 1000]).tobytes())


def sample_names(
    path: str | Path, schedule: str | None = None, preset: str | None = None
) -> tuple[str | None, str | None]:
    """(schedule, preset) a sample .npz names, checked against any given; for a folder or an .npz
    the `sample` rule did not write (no names inside), the given ones."""
    path = Path(path)
    if path.suffix != ".npz":
        return schedule, preset
    named = _npz_strings(path, ["schedule", "preset"], "sample")
    if named is None:
        return schedule, preset
    for what, given, inside in zip(("schedule", "preset"), (schedule, preset), named, strict=True):
        if given is not None and given != inside:
            raise StepError(f"{path}: holds samples of {what} {inside!r}, not {given!r}")
    return named[0], named[1]


def by_name(
    paths: list[str],
    read: Callable[[str], T],
    key: Callable[[T], K],
    expected: list[K],
    what: str,
    rule: str,
) -> dict[K, T]:
    """{key: content} of files that name themselves, exactly the `expected` keys in their order.

    `key` is a schedule name or a (schedule, preset) pair. A key no file has is an error naming
    the `rule` that writes it; two files of one key, or a key the config does not list, too. No
    `paths` at all (the step was not given these files) gives {}.
    """
    if not paths:
        return {}
    found: dict[K, tuple[str, T]] = {}
    for p in paths:
        if not Path(p).exists():
            raise StepError(f"{p}: missing; the `{rule}` rule writes it (run the workflow to it)")
        content = read(p)
        k = key(content)
        if k in found:
            raise StepError(f"two {what}s for {_describe(k)}: {found[k][0]} and {p}")
        if k not in expected:
            raise StepError(
                f"{p}: {what} for {_describe(k)}, which the config does not list "
                f"(it has {', '.join(map(_describe, expected))})"
            )
        found[k] = (p, content)
    for k in expected:
        if k not in found:
            raise StepError(f"no {what} for {_describe(k)} (rule {rule})")
    return {k: found[k][1] for k in expected}


def frames_by_name(
    paths: list[str],
    read: Callable[[str], tuple[str, pd.DataFrame]],
    names: list[str],
    what: str,
    rule: str,
) -> dict[str, pd.DataFrame]:
    """`by_name` for the readers that return (schedule, frame): {schedule: frame}."""
    files = by_name(paths, read, lambda c: c[0], names, what, rule)
    return {name: frame for name, (_, frame) in files.items()}


def _describe(key: Hashable) -> str:
    if isinstance(key, tuple):
        return f"schedule {key[0]!r}, preset {key[1]!r}"
    return f"schedule {key!r}"
