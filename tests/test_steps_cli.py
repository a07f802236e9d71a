"""Every pipeline step answers --help (and so imports cleanly) without a config or data; a step's
failure (vcq.cli.run_step) is one `error:` line, and only rank 0 logs what rank 0 does."""

import errno
import logging
import runpy
import sys
import tempfile
from pathlib import Path

import pytest

from vcq.cli import run_step, setup_logging
from vcq.io import write_json

ROOT = Path(__file__).resolve().parents[1]
STEPS = sorted((ROOT / "pipeline_steps").glob("*.py"))


@pytest.mark.parametrize("step", STEPS, ids=[s.stem for s in STEPS])
def test_step_help(step, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(step), "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(step), run_name="__main__")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--set" in out


def test_bad_config_value_stops_a_step_with_one_line_naming_the_key(run_python, tmp_path):
    # the default --config, config/default.yaml, is relative to the checkout
    out = run_python(
        "pipeline_steps/make_tables.py", "--out-dir", tmp_path / "out", "--set", "report.k=sixteen"
    )
    assert out.returncode != 0 and not (tmp_path / "out").exists()
    assert out.stderr.strip().count("\n") == 0 and "report.k" in out.stderr


@pytest.mark.parametrize(
    "step, args, message",
    [
        ("sample.py", ["--schedule", "cosine", "--preset", "cbcgf"], "no sampling preset 'cbcgf'"),
        ("train_ar.py", ["--schedule", "cosine"], "tok.pt: no such file"),
    ],
)
def test_an_unknown_name_or_missing_file_stops_a_step_with_one_line(
    run_python, tmp_path, step, args, message
):
    files = ["--tokens", "t.h5", "--val-tokens", "v.h5"] if step == "train_ar.py" else ["--ar", "a"]
    out = run_python(
        f"pipeline_steps/{step}", *args, *files, "--tokenizer", "tok.pt", "--out", tmp_path / "out"
    )
    last = run_python.error_line(out)
    assert last.startswith("error: ") and message in last


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
