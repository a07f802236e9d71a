"""Bad run files and folders met by the readers (vcq.runfiles, vcq.io, checkpoints) and by the steps
(vcq.cli.run_step): one `error:` line naming the file and the rule that makes it, before compute."""

import errno
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vcq.ar import load_ar
from vcq.cli import run_step, setup_logging
from vcq.config import load_config
from vcq.io import StepError, write_json
from vcq.runfiles import (
    read_log,
    read_metrics,
    read_position_loss,
    read_recon_images,
    read_samples,
    sample_names,
    write_position_loss,
    write_recon_images,
    write_samples,
)
from vcq.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from vcq.train.checkpoint import CheckpointError
from vcq.train.log import JsonlLog

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "config/default.yaml"


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


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


def _position_loss(path: Path) -> Path:
    write_position_loss(path, "cosine", np.ones(4), np.ones(4))
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
    "position-loss csv": (_position_loss, read_position_loss, "train_ar"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_truncated_run_file_names_itself_and_its_rule(tmp_path, fmt):
    write, read, rule = FORMATS[fmt]
    suffix = {"samples": ".npz", "sample": ".npz", "recon": ".npz"}.get(fmt.split()[0], ".x")
    path = write(tmp_path / f"f{suffix}")
    read(path)  # the whole file reads
    _truncate(path)
    with pytest.raises(StepError) as e:
        read(path)
    msg = str(e.value)
    assert msg.startswith(str(path)) and f"rerun the `{rule}` rule" in msg and "\n" not in msg


def test_a_training_log_cut_by_a_kill_resumes_and_a_damaged_one_names_its_rule(tmp_path):
    path = _train_log(tmp_path / "train_log.jsonl")
    _truncate(path, keep=0.99)  # a kill while appending the last record
    JsonlLog(path, "s", resume_step=10)  # the resumed run rewinds the log to its step
    assert [r["step"] for r in JsonlLog.read(path)] == list(range(11))
    path.write_text(path.read_text().replace('"step": 5}', '"step": 5'))
    with pytest.raises(StepError, match=r"train_log\.jsonl: truncated or malformed.*`train_ar`"):
        read_log(path, "train_ar")


def test_a_metrics_file_that_is_not_a_record_names_its_rule(tmp_path):
    (tmp_path / "m.json").write_text("[1, 2]")
    with pytest.raises(StepError, match=r"m\.json: not a metrics record.*`eval_recon` rule"):
        read_metrics(tmp_path / "m.json", "eval_recon")


def test_the_fid_step_refuses_a_truncated_sample_file_in_one_line(tmp_path, run_python):
    samples = _truncate(_samples(tmp_path / "s.npz"))
    out = tmp_path / "o.json"
    r = run_python(
        "pipeline_steps/eval_fid.py", "--config", DEMO, "--samples", samples, "--out", out
    )
    assert run_python.error_line(r).startswith(f"error: {samples}: truncated or malformed")
    assert "rerun the `sample` rule" in r.stderr and not out.exists()


def _tokenizer_file(path: Path) -> Path:
    cfg = load_config(DEMO)
    model = build_tokenizer(cfg["tokenizer"], np.full(cfg["tokenizer"]["num_tokens"], 8))
    save_tokenizer(path, model, cfg, {"schedule": "constant"})
    return path


def test_a_truncated_model_file_names_the_rule_that_writes_it(tmp_path):
    path = _truncate(_tokenizer_file(tmp_path / "final.pt"))
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: unreadable checkpoint")
    # a rerun of train_tokenizer resumes from last.pt: no claim that training starts over
    assert msg.endswith("delete it and rerun the `train_tokenizer` rule") and "step 0" not in msg


def test_a_missing_model_file_names_the_rule_that_writes_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"final\.pt: no such checkpoint; the `train_ar`"):
        load_ar(tmp_path / "final.pt")


def test_missing_inception_weights_stop_eval_recon_before_it_reconstructs(tmp_path, run_python):
    # the tokenizer does not exist either: the weights are checked first, before anything loads
    r = run_python(
        "pipeline_steps/eval_recon.py",
        *("--config", DEMO, "--schedule", "constant", "--tokenizer", tmp_path / "final.pt"),
        *("--out", tmp_path / "r.json", "--out-images", tmp_path / "r.npz"),
        *("--set", "eval.feature_extractor=inception"),
        *("--set", f"eval.inception_weights={tmp_path / 'inception.pth'}"),
    )
    line = run_python.error_line(r)
    assert line.startswith(f"error: {tmp_path / 'inception.pth'}: feature extractor weights")
    assert "eval.inception_weights" in line and "download" in line


def test_missing_lpips_weights_stop_tokenizer_training_before_it_starts(tmp_path, run_python):
    # no data folder either: the weights are checked first
    r = run_python(
        "pipeline_steps/train_tokenizer.py",
        *("--config", DEMO, "--schedule", "constant", "--out", tmp_path / "t/final.pt"),
        *("--set", f"data.root={tmp_path / 'nodata'}"),
        *("--set", f"tokenizer.train.lpips_weights={tmp_path / 'vgg.pth'}"),
    )
    line = run_python.error_line(r)
    assert line.startswith(f"error: {tmp_path / 'vgg.pth'}: LPIPS trunk weights not found")
    assert "tokenizer.train.lpips_weights" in line


def _exit_line(main, capfd) -> str:
    with pytest.raises(SystemExit) as e:
        run_step(main)
    assert e.value.code == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


def test_a_missing_file_error_without_a_file_name_is_one_line(capfd):
    def main():
        raise FileNotFoundError("weights of the X net not found at /w/x.pth")

    assert _exit_line(main, capfd) == "error: weights of the X net not found at /w/x.pth"


def test_a_read_only_output_folder_is_one_line_naming_the_output(tmp_path, monkeypatch, capfd):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".x.json.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    line = _exit_line(lambda: write_json(tmp_path / "x.json", {}), capfd)
    assert line == f"error: {tmp_path / 'x.json'}: cannot write there (Read-only file system)"


def test_a_folder_a_step_may_not_create_is_one_line(tmp_path, monkeypatch, capfd):
    def main():
        raise PermissionError(errno.EACCES, "Permission denied", "/results/demo")

    assert _exit_line(main, capfd) == "error: /results/demo: Permission denied"


def test_only_rank_0_logs_what_rank_0_does(monkeypatch, capfd):
    monkeypatch.setenv("RANK", "1")
    log = setup_logging()
    log.info("wrote final.pt")
    log.warning("3 unreadable images skipped")
    err = capfd.readouterr().err
    assert "wrote final.pt" not in err and "[rank 1] " in err and "unreadable" in err
    monkeypatch.setenv("RANK", "0")
    setup_logging().info("wrote final.pt")
    assert "wrote final.pt" in capfd.readouterr().err
    logging.shutdown()


def test_stop_after_does_not_claim_a_final_model(image_folder, run_step, tmp_path, capfd):
    image_folder(tmp_path / "data/train", n=4, shape=(20, 20))
    cfg = {
        "extends": str(DEMO),
        "data": {"source": "folder", "root": str(tmp_path / "data")},
        "tokenizer": {"train": {"steps": 2, "batch_size": 2, "disc_start": 2, "ckpt_every": 1}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "t/final.pt"
    args = ("--config", tmp_path / "c.yaml", "--schedule", "constant", "--out", out)
    run_step("train_tokenizer", *args, "--stop-after", "1")
    err = capfd.readouterr().err
    assert f"stopped after step 1 of 2, no {out} yet" in err
    assert "wrote" not in err and not out.exists()
    run_step("train_tokenizer", *args)
    assert f"wrote {out}" in capfd.readouterr().err and out.exists()
    logging.shutdown()


@pytest.mark.slow
def test_under_torchrun_only_rank_0_says_it_wrote_the_model(image_folder, tmp_path, run_python):
    image_folder(tmp_path / "data/train", n=8, shape=(20, 20))
    cfg = {
        "extends": str(DEMO),
        "device": "cpu",
        "data": {"source": "folder", "root": str(tmp_path / "data")},
        "tokenizer": {"train": {"steps": 2, "batch_size": 4, "disc_start": 2, "ckpt_every": 1}},
        "resources": {"train_tokenizer": {"gpus": 2}},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "t/final.pt"
    r = run_python(
        *("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"),
        "pipeline_steps/train_tokenizer.py",
        *("--config", tmp_path / "c.yaml", "--schedule", "constant", "--out", out),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count(f"wrote {out}") == 1 and r.stderr.count("training tokenizer") == 1
    assert out.exists()


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".pt"])
def test_the_entropy_cli_refuses_a_truncated_token_file_in_one_line(tmp_path, suffix, capfd):
    from vcq.entropy import main

    path = tmp_path / f"t{suffix}"
    tokens = np.zeros((100, 16), np.int64)
    save = {".npz": lambda: np.savez(path, tokens=tokens), ".npy": lambda: np.save(path, tokens)}
    save.get(suffix, lambda: torch.save({"tokens": torch.from_numpy(tokens)}, path))()
    _truncate(path)
    assert main([str(path), "--k-sizes", "16"]) == 2
    (line,) = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}: ")
    assert "truncated or malformed" in line or "not a readable tensor file" in line


def test_a_truncated_sample_chunk_is_one_line_naming_it_and_the_sample_rule(tmp_path):
    chunk, tokens = tmp_path / "chunk.npy", tmp_path / "tokens.npy"
    np.save(chunk, np.zeros((4, 8, 8, 3), np.uint8))
    np.save(tokens, np.zeros((4, 16), np.int64))
    _truncate(chunk, keep=0.1)
    with pytest.raises(StepError, match=r"chunk\.npy: truncated or malformed .*`sample` rule"):
        write_samples(tmp_path / "s.npz", "cosine", "cfg", [chunk], np.arange(4), [tokens])
    assert not (tmp_path / "s.npz").exists()
