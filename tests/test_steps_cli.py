"""Every pipeline step answers --help (and so imports cleanly) without a config or data."""

import runpy
import sys
from pathlib import Path

import pytest

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
