"""docs/EXTENDING.md "Add a table", followed literally: a toy table registered from its own module
appears in make_tables' files, summary.md and the workflow's report outputs."""

import os
import subprocess
import sys
import textwrap

import pandas as pd
import yaml
from report_runfiles import ROOT, TABLE_INPUTS, args, run_files

# Step 1 and 2 of the walk-through: a builder keyed by metric ids, and one registration.
TOY_MODULE = textwrap.dedent(
    '''
    """A toy table: PSNR gain over the mean-colour baseline per schedule."""

    import pandas as pd

    from vcq.report.tables import METRICS, Metric, Table, TableSpec, register_table

    METRICS["psnr_gain"] = Metric("PSNR gain over the baseline (dB)")


    def gain_summary(table):
        """The summary.md lines of the table."""
        return [f"- {r.schedule}: +{r.psnr_gain:.1f} dB" for r in table.frame.itertuples()]


    def table_gain(inputs):
        """One row per schedule with a reconstruction record."""
        rows = [
            {"schedule": n, "psnr": r.psnr, "psnr_gain": r.psnr - r.psnr_mean_colour_baseline}
            for n, r in inputs.recon.items()
        ]
        return Table(pd.DataFrame(rows), ["psnr_gain: PSNR minus the mean-colour baseline"])


    register_table(
        TableSpec(
            "table_gain",
            "PSNR gain",
            table_gain,
            inputs=("recon",),
            paper="table4",
            paper_columns={"psnr": "psnr"},
            summary=gain_summary,
        )
    )
    '''
)


def test_a_registered_table_reaches_make_tables_summary_and_the_workflow(tmp_path):
    (tmp_path / "toy_tables.py").write_text(TOY_MODULE)
    # Step 3: the config names the module (a table inside vcq/report/tables.py needs no key)
    config = tmp_path / "toy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "extends": str(ROOT / "config/default.yaml"),
                "plugins": ["toy_tables"],
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
