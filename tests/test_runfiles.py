"""Run files that name their schedule: each reader round-trips its writer and refuses a file
without the name; `by_name` matches files to the config by content, never by order; a truncated
or foreign run file is one line naming itself and the rule that writes it."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vcq import runfiles
from vcq.io import StepError, write_json
from vcq.runfiles import (
    read_log,
    read_metrics,
    read_position_loss,
    read_recon_images,
    read_samples,
    sample_names,
    write_recon_images,
    write_samples,
)
from vcq.train.log import JsonlLog

DEMO = Path(__file__).resolve().parents[1] / "config/default.yaml"


def _position_loss(path, schedule, offset=0.0):
    runfiles.write_position_loss(path, schedule, np.arange(4) + offset, np.arange(4) + offset + 1)
    return str(path)


def test_position_loss_round_trip_and_unnamed_file_refused(tmp_path):
    path = _position_loss(tmp_path / "a.csv", "cosine", 0.5)
    name, df = runfiles.read_position_loss(path)
    assert name == "cosine" and list(df.columns) == ["t", "train_loss", "val_loss"]
    assert df["train_loss"].tolist() == [0.5, 1.5, 2.5, 3.5] and df["val_loss"][0] == 1.5
    old = tmp_path / "old.csv"
    pd.DataFrame({"t": range(4), "train_loss": 1.0, "val_loss": 2.0}).to_csv(old, index=False)
    with pytest.raises(StepError, match=r"old.csv: names no schedule .* rerun the `train_ar` rule"):
        runfiles.read_position_loss(old)


@pytest.mark.parametrize("schedule", ["007", "NA", "null", "1e3"])
def test_schedule_names_read_back_as_written(tmp_path, schedule):
    # names the config schema allows that pandas would turn into numbers or missing values
    name, df = runfiles.read_position_loss(_position_loss(tmp_path / "a.csv", schedule))
    assert name == schedule and df["train_loss"].dtype == float


def test_entropy_csv_round_trip_and_unnamed_file_refused(tmp_path):
    rows = [dict.fromkeys(runfiles.ENTROPY_COLUMNS, t) for t in range(3)]
    runfiles.write_entropy_csv(tmp_path / "e.csv", "linear", rows)
    name, df = runfiles.read_entropy_csv(tmp_path / "e.csv")
    assert name == "linear" and list(df.columns) == runfiles.ENTROPY_COLUMNS
    assert df["cond_entropy_bits"].tolist() == [0, 1, 2]
    pd.DataFrame(rows).to_csv(tmp_path / "old.csv", index=False)
    with pytest.raises(StepError, match="rerun the `measure_entropy` rule"):
        runfiles.read_entropy_csv(tmp_path / "old.csv")


def test_recon_images_round_trip_memory_mapped_and_unnamed_file_refused(tmp_path):
    path = tmp_path / "recon" / "cosine.npz"
    rng = np.random.default_rng(0)
    recon, orig = (rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8) for _ in range(2))
    with runfiles.write_recon_images(path, "cosine", recon.shape) as (recon_file, orig_file):
        np.load(recon_file, mmap_mode="r+")[:] = recon
        np.load(orig_file, mmap_mode="r+")[:] = orig
    assert sorted(p.name for p in path.parent.iterdir()) == ["cosine.npz"]  # parts removed
    images = runfiles.read_recon_images(path)
    assert images.schedule == "cosine" and isinstance(images.recon, np.memmap)
    assert np.array_equal(images.recon, recon) and np.array_equal(images.originals, orig)
    np.savez(tmp_path / "old.npz", recon=recon, originals=orig)
    with pytest.raises(StepError, match="rerun the `eval_recon` rule"):
        runfiles.read_recon_images(tmp_path / "old.npz")


def test_failed_recon_images_leave_neither_parts_nor_a_file(tmp_path):
    path = tmp_path / "recon" / "cosine.npz"
    with pytest.raises(RuntimeError), runfiles.write_recon_images(path, "cosine", (2, 4, 4, 3)):
        raise RuntimeError("tokenizer failed")
    assert list(path.parent.iterdir()) == []


def test_samples_round_trip_adm_style_and_unnamed_file_refused(tmp_path):
    from vcq.metrics.fid import ImageSource

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    tokens = rng.integers(0, 64, (7, 5), dtype=np.int32)
    chunks, token_chunks = [], []
    for i, (part, tok) in enumerate(((images[:4], tokens[:4]), (images[4:], tokens[4:]))):
        chunks.append(tmp_path / f"{i}.npy")
        token_chunks.append(tmp_path / f"{i}_tok.npy")
        np.save(chunks[-1], part)
        np.save(token_chunks[-1], tok)
    labels = np.array([2, 0, 1, 0, 2, 1, 2])
    runfiles.write_samples(tmp_path / "s.npz", "cosine", "cfg", chunks, labels, token_chunks)
    s = runfiles.read_samples(tmp_path / "s.npz")
    assert (s.schedule, s.preset) == ("cosine", "cfg") and s.labels.tolist() == labels.tolist()
    assert np.array_equal(s.images, images)
    # ADM readers still see arr_0 and labels, without pickle; the tokens ride in the same file
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert np.array_equal(z["arr_0"], images) and str(z["preset"]) == "cfg"
        assert np.array_equal(z["tokens"], tokens)
    # the export for ADM's evaluator: arr_0 alone, uint8 N×H×W×3, in the sample file's order
    runfiles.write_adm_samples(tmp_path / "adm.npz", tmp_path / "s.npz")
    with np.load(tmp_path / "adm.npz", allow_pickle=False) as z:
        assert z.files == ["arr_0"] and z["arr_0"].dtype == np.uint8
        assert np.array_equal(z["arr_0"], images)
    assert np.array_equal(ImageSource(tmp_path / "s.npz")[6].numpy(), images[6].transpose(2, 0, 1))
    np.savez(tmp_path / "old.npz", images, labels=labels)
    with pytest.raises(StepError, match="rerun the `sample` rule"):
        runfiles.read_samples(tmp_path / "old.npz")


def test_sample_names_come_from_the_file_and_must_agree_with_given_ones(tmp_path):
    np.save(tmp_path / "0.npy", np.zeros((2, 4, 4, 3), np.uint8))
    np.save(tmp_path / "t.npy", np.zeros((2, 5), np.int32))
    runfiles.write_samples(
        tmp_path / "s.npz", "cosine", "cfg", [tmp_path / "0.npy"], np.zeros(2), [tmp_path / "t.npy"]
    )
    assert runfiles.sample_names(tmp_path / "s.npz") == ("cosine", "cfg")
    assert runfiles.sample_names(tmp_path / "s.npz", "cosine", "cfg") == ("cosine", "cfg")
    with pytest.raises(StepError, match=r"s.npz: holds samples of preset 'cfg', not 'nocfg'"):
        runfiles.sample_names(tmp_path / "s.npz", "cosine", "nocfg")
    # samples from elsewhere (an ADM batch, an image folder) carry no names: the given ones count
    np.savez(tmp_path / "adm.npz", np.zeros((2, 4, 4, 3), np.uint8))
    assert runfiles.sample_names(tmp_path / "adm.npz", "mine", None) == ("mine", None)
    assert runfiles.sample_names(tmp_path, None, "p") == (None, "p")


def test_log_round_trip_and_unnamed_log_refused(tmp_path):
    log = JsonlLog(tmp_path / "log.jsonl", "power")
    for s in range(3):
        log.write({"step": s, "loss": 1.0 / (s + 1)})
    name, df = runfiles.read_log(log.path, "train_ar")
    assert name == "power" and df["step"].tolist() == [0, 1, 2] and "schedule" not in df
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps({"step": 0, "loss": 1.0}) + "\n")
    with pytest.raises(
        StepError, match="old.jsonl: names no schedule .* rerun the `train_ar` rule"
    ):
        runfiles.read_log(old, "train_ar")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(
        StepError, match="empty.jsonl: no records; rerun the `train_tokenizer` rule"
    ):
        runfiles.read_log(tmp_path / "empty.jsonl", "train_tokenizer")


def test_by_name_ignores_order_and_names_the_rule_of_a_missing_file(tmp_path):
    names = ["constant", "linear", "cosine"]
    # each file's name is another schedule's: only the content may decide
    files = [_position_loss(tmp_path / f"{names[i - 1]}.csv", n, i) for i, n in enumerate(names)]
    read = runfiles.read_position_loss

    def index(paths):
        return runfiles.frames_by_name(paths, read, names, "position-loss file", "train_ar")

    forward, backward = index(files), index(files[::-1])
    assert list(forward) == list(backward) == names
    assert all(forward[n].equals(backward[n]) for n in names)
    assert forward["cosine"]["train_loss"][0] == 2.0
    with pytest.raises(StepError) as e:
        index(files[:2])
    assert str(e.value) == "no position-loss file for schedule 'cosine' (rule train_ar)"
    with pytest.raises(StepError, match="two position-loss files for schedule 'linear'"):
        index([*files, _position_loss(tmp_path / "again.csv", "linear")])
    with pytest.raises(StepError, match="extra.csv: .*'power', which the config does not list"):
        index([*files, _position_loss(tmp_path / "extra.csv", "power")])
    assert index([]) == {}


def _samples(path: Path) -> Path:
    chunk, tokens = path.with_name("chunk.npy"), path.with_name("tokens.npy")
    np.save(chunk, np.zeros((4, 8, 8, 3), np.uint8))
    np.save(tokens, np.zeros((4, 16), np.int64))
    write_samples(path, "cosine", "cfg", [chunk], np.arange(4), [tokens])
    return path


def _recon(path: Path) -> Path:
    with write_recon_images(path, "cosine", (4, 8, 8, 3)):
        pass
    return path


def _metrics(path: Path) -> Path:
    write_json(path, {"schedule": "cosine", "fid": 1.0})
    return path


def _train_log(path: Path) -> Path:
    path.write_text("".join(json.dumps({"schedule": "s", "step": i}) + "\n" for i in range(40)))
    return path


# (writer, reader, rule): every run-file format, cut in half
FORMATS = {
    "samples npz": (_samples, read_samples, "sample"),
    "sample names": (_samples, sample_names, "sample"),
    "recon npz": (_recon, read_recon_images, "eval_recon"),
    "metrics json": (_metrics, lambda p: read_metrics(p, "eval_fid"), "eval_fid"),
    "position-loss csv": (
        lambda p: Path(_position_loss(p, "cosine")),
        read_position_loss,
        "train_ar",
    ),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_truncated_run_file_names_itself_and_its_rule(tmp_path, fmt, truncate):
    write, read, rule = FORMATS[fmt]
    suffix = {"samples": ".npz", "sample": ".npz", "recon": ".npz"}.get(fmt.split()[0], ".x")
    path = write(tmp_path / f"f{suffix}")
    read(path)  # the whole file reads
    truncate(path)
    with pytest.raises(StepError) as e:
        read(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and f"rerun the `{rule}` rule" in msg and "\n" not in msg


def test_a_training_log_cut_by_a_kill_resumes_and_a_damaged_one_names_its_rule(tmp_path, truncate):
    path = _train_log(tmp_path / "train_log.jsonl")
    truncate(path, keep=0.99)  # a kill while appending the last record
    JsonlLog(path, "s", resume_step=10)  # the resumed run rewinds the log to its step
    assert [r["step"] for r in JsonlLog.read(path)] == list(range(11))
    path.write_text(path.read_text().replace('"step": 5}', '"step": 5'))
    with pytest.raises(StepError, match=r"train_log\.jsonl: truncated or malformed.*`train_ar`"):
        read_log(path, "train_ar")


def test_a_metrics_file_that_is_not_a_record_names_its_rule(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(StepError, match=r"m\.json: not a metrics record.*`eval_recon` rule"):
        read_metrics(tmp_path / "m.json", "eval_recon")


def test_the_fid_step_refuses_a_truncated_sample_file_in_one_line(tmp_path, run_python, truncate):
    samples = truncate(_samples(tmp_path / "s.npz"))
    out = tmp_path / "o.json"
    r = run_python(
        "pipeline_steps/eval_fid.py", "--config", DEMO, "--samples", samples, "--out", out
    )
    assert run_python.error_line(r).startswith(f"error: {samples}: truncated or malformed")
    assert "rerun the `sample` rule" in r.stderr and not out.exists()


def test_a_truncated_sample_chunk_is_one_line_naming_it_and_the_sample_rule(tmp_path, truncate):
    chunk, tokens = tmp_path / "chunk.npy", tmp_path / "tokens.npy"
    np.save(chunk, np.zeros((4, 8, 8, 3), np.uint8))
    np.save(tokens, np.zeros((4, 16), np.int64))
    truncate(chunk, keep=0.1)
    with pytest.raises(StepError, match=r"chunk\.npy: truncated or malformed .*`sample` rule"):
        write_samples(tmp_path / "s.npz", "cosine", "cfg", [chunk], np.arange(4), [tokens])
    assert not (tmp_path / "s.npz").exists()
