"""Bad input met by the workflow's rules: paths the shell would split or expand."""

import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_paths_with_spaces_and_quotes_reach_the_steps_intact(snakemake_exe, tmp_path):
    # every rule quotes its paths: a work folder with a space, results with a quote and a `$`;
    # train_tokenizer is one of the rules that `eval` their launcher
    base = tmp_path / "my runs"
    cfg = {
        "extends": str(REPO / "config/default.yaml"),
        "experiment": "spaced",
        "paths": {"work_dir": str(base / "work space"), "results_dir": str(base / "it's $HOME")},
        "data": {"root": str(base / "data set"), "train_per_class": 2, "val_per_class": 1},
        "tokenizer": {"train": {"steps": 1, "batch_size": 4, "ckpt_every": 1}},
        "report": {"reference_configs": []},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    tokenizer = base / "work space/spaced/tokenizer/constant/final.pt"
    out = subprocess.run(
        [snakemake_exe, "theory", str(tokenizer), "--profile", "workflow/profiles/local"]
        + ["--cores", "1", "--configfile", str(tmp_path / "c.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    # the manifest reached make_tables through its quoted --manifest flag
    table2 = (base / "it's $HOME/spaced/tables/table2_theory.md").read_text()
    assert "N = 20 training images (the data manifest's train count)" in table2
    assert (base / "it's $HOME/spaced/figures/fig2_theory.png").stat().st_size > 0
    assert tokenizer.exists()


def test_a_brace_in_a_path_is_refused_in_one_line_naming_the_key(snakemake_exe, tmp_path):
    cfg = {"extends": str(REPO / "config/default.yaml"), "paths": {"work_dir": "work{x}"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [snakemake_exe, "-n", "--configfile", str(tmp_path / "c.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode != 0
    assert "bad value at 'paths.work_dir'" in out.stderr and "Traceback" not in out.stderr
