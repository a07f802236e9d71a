"""Tests for the HDF5 token store: round trip, resume, bounds, dtype, shard merge, and what the
writer and readers refuse (incomplete, foreign, changed or unwritable files)."""

import errno
import json

import h5py
import numpy as np
import pytest

from vcq.data.tokens import (
    FORMAT_VERSION,
    TokenFileError,
    TokenWriter,
    merge_shards,
    open_tokens,
    partial_path,
    token_dtype,
)
from vcq.entropy import read_token_matrix
from vcq.io import StepError
from vcq.schedules import schedule_k_sizes

SIZES = schedule_k_sizes("cosine", 4, 64, length=8)
NAMES = ["v0", "v1", "v2"]


def _data(n=23, seed=0):
    rng = np.random.default_rng(seed)
    tokens = (rng.random((n, len(NAMES), len(SIZES))) * SIZES).astype(np.int64)
    return tokens, rng.integers(0, 5, n)


def _writer(path, n, rows=None, sha="abc", k_sizes=SIZES, **inputs):
    return TokenWriter(
        path,
        num_rows=n,
        k_sizes=k_sizes,
        view_names=NAMES,
        num_classes=5,
        schedule="cosine",
        tokenizer_sha256=sha,
        chunk_rows=4,
        rows=rows,
        **inputs,
    )


def _write_all(path, tokens, labels, batch=5, **writer):
    w = _writer(path, len(labels), **writer)
    for a in range(0, len(labels), batch):
        rows = np.arange(a, min(a + batch, len(labels)))
        w.write(rows, tokens[rows], labels[rows])
    return w.finalize()


def test_round_trip_attrs_and_chunks(tmp_path):
    tokens, labels = _data()
    path = _write_all(tmp_path / "t.h5", tokens, labels)
    assert not partial_path(path).exists()
    with open_tokens(path, SIZES) as s:
        assert s.tokens.dtype == np.uint16 and s.tokens.chunks[0] == 4
        assert (s.num_rows, s.num_views, s.seq_len) == tokens.shape
        assert s.schedule == "cosine" and s.k_max == 64 and s.num_classes == 5
        assert s.view_names == NAMES and s.tokenizer_sha256 == "abc"
        assert np.array_equal(s.labels, labels) and np.array_equal(s.k_sizes, SIZES)
        assert np.array_equal(s.read(), tokens)
        chunks = list(s.iter_chunks(view=1, chunk_rows=10))
        assert [len(c) for c in chunks] == [10, 10, 3] and chunks[0].dtype == np.int64
        assert np.array_equal(np.concatenate(chunks), tokens[:, 1])
    with h5py.File(path) as f:
        assert f.attrs["views"] == 3 and json.loads(f.attrs["view_names"]) == NAMES
        assert bool(f.attrs["complete"]) and f["done"][:].all()


def test_dtype_choice():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.int32


def test_resume_from_partial_continues(tmp_path):
    tokens, labels = _data()
    path = tmp_path / "t.h5"
    w = _writer(path, 23)
    w.write(np.arange(0, 7), tokens[:7], labels[:7])
    w.write(np.array([12, 10]), tokens[[12, 10]], labels[[12, 10]])
    w.close()  # as if killed
    with pytest.raises(ValueError, match="not a complete token store"):
        open_tokens(partial_path(path))
    w = _writer(path, 23)
    pending = w.pending_rows()
    assert pending.tolist() == [7, 8, 9, 11] + list(range(13, 23))
    with pytest.raises(RuntimeError, match="rows not written"):
        w.finalize()
    w.write(pending, tokens[pending], labels[pending])
    w.finalize()
    with open_tokens(path) as s:
        assert np.array_equal(s.read(), tokens) and np.array_equal(s.labels, labels)
    # A finished file: a new writer has nothing to do and finalize is a no-op.
    assert len(_writer(path, 23).pending_rows()) == 0


def test_stale_or_broken_partial_is_discarded(tmp_path):
    tokens, labels = _data()
    path = tmp_path / "t.h5"
    w = _writer(path, 23, sha="old")
    w.write(np.arange(5), tokens[:5], labels[:5])
    w.close()
    assert len(_writer(path, 23, sha="new").pending_rows()) == 23
    partial_path(path).write_bytes(b"garbage")
    assert len(_writer(path, 23, sha="new").pending_rows()) == 23


def test_bounds_check_names_row_and_position(tmp_path):
    tokens, labels = _data()
    tokens[3, 2, 0] = SIZES[0]
    w = _writer(tmp_path / "t.h5", 23)
    with pytest.raises(ValueError, match=r"row 3, position 0 is out of range: K_t = 4"):
        w.write(np.arange(5), tokens[:5], labels[:5])
    with pytest.raises(ValueError, match="out of range"):
        w.write(np.arange(1), -np.ones((1, 3, 8), np.int64), labels[:1])
    with pytest.raises(ValueError, match="shape"):
        w.write(np.arange(2), tokens[:2, :, :4], labels[:2])
    assert len(w.pending_rows()) == 23  # nothing was marked done
    w.close()


def test_open_refuses_other_k_sizes(tmp_path):
    tokens, labels = _data()
    path = _write_all(tmp_path / "t.h5", tokens, labels)
    with pytest.raises(ValueError, match="differ from the expected K_t"):
        open_tokens(path, np.full(8, 64))


def test_merge_shards_equals_single_write(tmp_path):
    tokens, labels = _data()
    single = _write_all(tmp_path / "single.h5", tokens, labels)
    shards = []
    for r in range(3):
        rows = np.arange(r, 23, 3)
        w = _writer(tmp_path / f"out.h5.rank{r}", len(rows), rows=rows)
        w.write(np.arange(len(rows)), tokens[rows], labels[rows])
        shards.append(w.finalize())
    merged = merge_shards(shards, tmp_path / "out.h5", chunk_rows=5)
    with open_tokens(merged) as m, open_tokens(single) as s:
        assert np.array_equal(m.read(), s.read()) and np.array_equal(m.labels, s.labels)
        assert m.tokens.chunks == s.tokens.chunks and "rows" not in m.file
    with pytest.raises(ValueError, match="exactly once"):
        merge_shards(shards[:2], tmp_path / "bad.h5")


def test_format_1_files_with_20_views_are_refused_in_one_line(tmp_path):
    tokens, labels = _data()
    path = _write_all(tmp_path / "t.h5", tokens, labels)
    with h5py.File(path, "r+") as f:
        assert f.attrs["format_version"] == FORMAT_VERSION == 3
        del f.attrs["format_version"]  # as written before views were ten distinct crops
    with pytest.raises(ValueError, match=r"token file format 1 .*--forcerun encode_tokens") as e:
        open_tokens(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    # a writer treats such a file as stale and starts over instead of appending to it
    assert len(_writer(path, len(labels)).pending_rows()) == len(labels)


def test_format_2_files_with_one_checksum_per_row_name_the_rule_to_rerun(tmp_path):
    tokens, labels = _data()
    path = _write_all(tmp_path / "t.h5", tokens, labels)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2
        del f["checksum"]
        f["checksum"] = np.zeros(len(labels), np.int64)
    with pytest.raises(ValueError, match="one checksum per row") as e:
        open_tokens(path)
    assert "snakemake ... --forcerun encode_tokens" in str(e.value) and "\n" not in str(e.value)


def test_a_changed_token_is_refused_on_every_read_path(tmp_path):
    # issue 22 case 6: one stored token changed to another valid id (9 -> 8) was accepted by
    # train_ar and measure_entropy (view 0 only; the checksum covered a whole row of all views)
    from vcq.train.batches import TokenBatches

    tokens, labels = _data()
    path = _write_all(tmp_path / "t.h5", tokens, labels)
    row, view, t = 13, 1, 5
    with h5py.File(path, "r+") as f:
        old = int(f["tokens"][row, view, t])
        f["tokens"][row, view, t] = old - 1 if old else old + 1  # still < K_t
    changed = r"row 13, view 1: tokens do not match their checksum"
    with open_tokens(path, SIZES) as s:
        rows, views = np.array([2, row, 5]), np.array([0, view, 2])
        reads = {
            "all views": lambda: s.read(),
            "the view (entropy, probe)": lambda: s.read(view),
            "a range (AR validation)": lambda: s.read_range(12, 14, view),
            "pairs (AR batches from disk)": lambda: s.read_rows(rows, views),
            "in memory (AR batches)": lambda: TokenBatches(s, in_memory=True),
            "pairs through the batches": lambda: TokenBatches(s, in_memory=False).batch(
                rows, views
            ),
        }
        for what, read in reads.items():
            with pytest.raises(ValueError, match=changed):
                read()
                pytest.fail(what)
        # per (row, view): the row's other views and other rows still read
        assert np.array_equal(s.read(0), tokens[:, 0]) and np.array_equal(s.read(2), tokens[:, 2])
        ok = s.read_rows(np.array([row, row]), np.array([0, 2]))[0]
        assert np.array_equal(ok, tokens[[row, row], [0, 2]])


def test_merge_refuses_a_changed_shard(tmp_path):
    tokens, labels = _data()
    shards = []
    for r in range(2):
        rows = np.arange(r, 23, 2)
        w = _writer(tmp_path / f"s{r}.h5", len(rows), rows=rows)
        w.write(np.arange(len(rows)), tokens[rows], labels[rows])
        shards.append(w.finalize())
    with h5py.File(shards[1], "r+") as f:
        f["tokens"][3, 0, 0] = int(f["tokens"][3, 0, 0]) ^ 1  # K_0 = 4: still a valid id
    with pytest.raises(ValueError, match="row 3, view 0: tokens do not match"):
        merge_shards(shards, tmp_path / "merged.h5")
    assert not (tmp_path / "merged.h5").exists()


def test_readers_refuse_incomplete_out_of_range_float_and_foreign_token_files(tmp_path):
    path = tmp_path / "t.h5"
    tokens, labels = _data(40)

    def write(**kw):
        path.unlink(missing_ok=True)
        _write_all(path, tokens, labels, **kw)

    write()
    assert read_token_matrix(path, 0)[0].shape == (40, len(SIZES))
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(TokenFileError, match=r"t\.h5: is not a complete token store"):
        read_token_matrix(path, 0)
    write()
    with h5py.File(path, "r+") as f:
        f["tokens"][7, 1, 0] = SIZES[0]
    with pytest.raises(
        TokenFileError, match=rf"t\.h5: token {SIZES[0]} at row 7, position 0 is out of range"
    ):
        read_token_matrix(path, 1)
    write()
    with h5py.File(path, "r+") as f:
        data = f["tokens"][:]
        del f["tokens"]
        f["tokens"] = data.astype(np.float32)
    with pytest.raises(TokenFileError, match=r"t\.h5: tokens are float32, expected uint16"):
        open_tokens(path)
    write()
    with h5py.File(path, "r+") as f:
        del f.attrs["num_classes"]
    with pytest.raises(TokenFileError, match=r"t\.h5: no 'num_classes' entry"):
        open_tokens(path)
    write(sha="other")
    with pytest.raises(TokenFileError, match=r"t\.h5: encoded by another tokenizer"):
        read_token_matrix(path, 0, tokenizer_sha256="mine")


def test_a_failed_token_write_is_one_line_and_leaves_nothing_complete(tmp_path, monkeypatch):
    tokens, labels = _data(8)
    w = _writer(tmp_path / "t.h5", 8)
    w.write(np.arange(4), tokens[:4], labels[:4])

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full)
    with pytest.raises(
        StepError, match=r"^no space left on device while writing .*t\.h5\.partial$"
    ):
        w.write(np.arange(4, 8), tokens[4:], labels[4:])
    monkeypatch.undo()
    w.close()
    assert not (tmp_path / "t.h5").exists()
    resumed = _writer(tmp_path / "t.h5", 8)
    assert resumed.pending_rows().tolist() == [4, 5, 6, 7]
    resumed.close()


def test_rows_that_read_back_wrong_are_not_finalised_and_are_rewritten(tmp_path):
    tokens, labels = _data(10)
    w = _writer(tmp_path / "t.h5", 10)
    w.write(np.arange(10), tokens, labels)
    w.close()
    # writes that never reached the disk
    with h5py.File(partial_path(tmp_path / "t.h5"), "r+") as f:
        f["tokens"][3] = 0
        f["labels"][5] = -1
    w = _writer(tmp_path / "t.h5", 10)
    with pytest.raises(TokenFileError, match=r"2 rows read back differently.*first: row 3"):
        w.finalize()
    assert not (tmp_path / "t.h5").exists()
    w = _writer(tmp_path / "t.h5", 10)
    assert w.pending_rows().tolist() == [3, 5]
    w.write(np.array([3, 5]), tokens[[3, 5]], labels[[3, 5]])
    w.finalize()
    with open_tokens(tmp_path / "t.h5") as s:
        assert np.array_equal(s.read(), tokens) and np.array_equal(s.labels, labels)


def test_a_partial_token_file_from_other_inputs_is_discarded(tmp_path, caplog):
    tokens, labels = _data(8)

    def writer(inputs):
        return _writer(tmp_path / "t.h5", 8, inputs_sha256=inputs)

    with writer("data seed 0") as w:
        w.write(np.arange(4), tokens[:4], labels[:4])
    with writer("data seed 0") as w:
        assert w.pending_rows().tolist() == [4, 5, 6, 7]
    with writer("data seed 1") as w:
        assert w.pending_rows().tolist() == list(range(8))
    assert "discarding stale" in caplog.text
