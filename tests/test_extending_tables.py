"""docs/EXTENDING.md "Add a table", followed literally: a toy table registered from its own module
(its blocks read from the doc) appears in make_tables' files, summary.md and the workflow's report
outputs."""

import os
import subprocess
import sys

import pandas as pd
import yaml
from report_runfiles import ROOT, TABLE_INPUTS, args, run_files
from test_extending_files import table_module


def test_a_registered_table_reaches_make_tables_summary_and_the_workflow(tmp_path):
    # Steps 1 and 2 of the walk-through in a module of its own; step 3: the config names it
    (tmp_path / "gain_table.py").write_text(table_module())
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": str(ROOT / "config/default.yaml"),
                "plugins": ["gain_table"],
                "report": {"paper_comparison": True},
                "paths": {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "res")},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    files, settings = run_files(tmp_path / "run")
    out = tmp_path / "results" / "tables"
    r = subprocess.run(
        [
            sys.executable,
            "pipeline_steps/make_tables.py",
            "--config",
            str(config),
            *settings,
            "--out-dir",
            str(out),
            *args(files, TABLE_INPUTS),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    md = (out / "table_gain.md").read_text()
    assert "PSNR gain over the baseline (dB)" in md and "PSNR (dB) (paper)" in md
    gain = pd.read_csv(out / "table_gain.csv").set_index("schedule")
    assert gain.loc["linear", "PSNR gain over the baseline (dB)"] == 7.0
    assert "{% raw %}" in (out / "table_gain.rst").read_text()
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "## PSNR gain (table_gain)" in summary and "- linear: +7.0 dB" in summary

    # the workflow: the `tables` rule writes it (and the report shows it, captioned)
    plan = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--profile",
            "workflow/profiles/local",
            "--configfile",
            str(config),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]
    assert f"{tmp_path / 'res'}/demo/tables/table_gain.md" in plan.stdout
    assert f"{tmp_path / 'res'}/demo/tables/table_gain.rst" in plan.stdout
