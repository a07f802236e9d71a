"""Snakemake's `config` is the config: overrides reach the steps, `extends` resolves as for a file,
experiment paths derive from `experiment`, a config edit reruns only the rules that read it, and
paths the shell would split or expand reach the steps intact or are refused."""

import os
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from vcq.config import ConfigError, dump_config, load_config, resolve_config

REPO = Path(__file__).resolve().parent.parent


def test_in_memory_config_resolves_extends_like_a_file(tmp_path):
    raw = {"extends": "default.yaml", "experiment": "mine", "slurm": {"account": "abc"}}
    cfg = resolve_config(raw, REPO / "config", where="cli")
    as_file = tmp_path / "mine.yaml"
    as_file.write_text(yaml.safe_dump({**raw, "extends": str(REPO / "config/default.yaml")}))
    assert {k: v for k, v in cfg.items() if k != "_config_path"} == {
        k: v for k, v in load_config(as_file).items() if k != "_config_path"
    }
    assert (
        cfg["slurm"]["account"] == "abc" and cfg["tokenizer"]["model"]["name"] == "tokenizer_tiny"
    )


def test_resolved_config_reads_back_to_itself(tmp_path):
    cfg = load_config(REPO / "config/imagenet/quantizers.yaml")
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(path)
    assert dump_config(again) == dump_config(cfg)


def test_experiment_paths_derive_from_the_experiment(tmp_path):
    child = tmp_path / "mine.yaml"
    child.write_text(f"extends: {REPO / 'config/default.yaml'}\nexperiment: mine\n")
    demo, mine = load_config(REPO / "config/default.yaml"), load_config(child)
    assert demo["eval"]["demo_weights"] == "work/demo/features/demo_net.pt"
    assert mine["eval"]["demo_weights"] == "work/mine/features/demo_net.pt"
    assert mine["eval"]["cache_dir"] == "work/mine/cache/eval"


def test_multi_node_without_gpus_is_refused(tmp_path):
    raw = {"extends": "default.yaml", "resources": {"train_ar": {"nodes": 2}}}
    with pytest.raises(ConfigError, match="resources.train_ar.nodes"):
        resolve_config(raw, REPO / "config", where="cli")


def test_command_line_config_reaches_every_path(run_snakemake):
    out = run_snakemake("-n", "--forceall", "--config", "experiment=other")
    assert (
        "work/other/features/demo_net.pt" in out.stdout
        and "results/other/tables/table4.md" in out.stdout
    )
    assert "work/demo/" not in out.stdout
    assert re.search(r"--config work/other/config/[0-9a-f]{16}\.yaml ", out.stdout)


def test_bad_command_line_config_is_one_line(run_snakemake):
    out = run_snakemake("-n", "--config", "experiment=bad/name", check=False)
    assert out.returncode != 0 and "config error:" in out.stderr and "experiment" in out.stderr
    out = run_snakemake("-n", "--config", "resources={train_arr: {}}", check=False)
    assert out.returncode != 0 and "config error: resources: no rule named train_arr" in out.stderr


def tree_state(root: Path) -> dict[str, int]:
    """Every file under `root` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_config_edit_reruns_only_the_rules_that_read_it(run_snakemake, tmp_path):
    paths = [
        f"paths={{work_dir: {tmp_path}/work, results_dir: {tmp_path}/results}}",
        f"data={{root: {tmp_path}/data}}",
    ]
    edited = tmp_path / "edited.yaml"
    edited.write_text("report: {n_images: 500}\n")
    run = ["--until", "theory", "--config", *paths]  # theory needs make_dataset (the manifest)
    run_snakemake("--cores", "2", "--configfile", "config/default.yaml", *run)
    (resolved,) = (tmp_path / "work/demo/config").iterdir()  # the run's snapshot
    assert load_config(resolved)["report"]["n_images"] is None  # N from the data manifest
    planned = run_snakemake.planned
    assert planned(run_snakemake("-n", "--configfile", "config/default.yaml", *run)) == Counter()
    changed = run_snakemake("-n", "--configfile", "config/default.yaml", str(edited), *run)
    assert planned(changed) == Counter({"theory": 1}) and "params" in changed.stdout.lower()


def test_only_a_run_that_starts_jobs_writes_a_config_snapshot(run_snakemake, tmp_path):
    # issue 22 case 2: a dry run, --summary, --unlock, --lint or a run refused by the lock, with an
    # edited config, rewrote the config that the running workflow's later jobs read
    paths = [
        f"paths={{work_dir: {tmp_path}/work, results_dir: {tmp_path}/results}}",
        f"data={{root: {tmp_path}/data}}",
    ]
    edited = tmp_path / "edited.yaml"
    edited.write_text("report: {n_images: 500}\n")
    run = ["--until", "make_dataset", "--config", *paths]
    run_snakemake("--cores", "1", "--configfile", "config/default.yaml", *run)
    (first,) = (tmp_path / "work/demo/config").iterdir()
    before = tree_state(tmp_path)
    # a run of the edited config is refused by the lock of a run writing the same outputs
    lock = REPO / ".snakemake/locks" / f"{90000 + os.getpid() % 10000}.output.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(f"{tmp_path}/results/demo/tables/table1.md\n")
    try:
        # (--unlock last: it removes every lock)
        for flags in (["--cores", "1"], ["-n"], ["--summary"], ["--lint"], ["--unlock"]):
            args = ["--configfile", "config/default.yaml", str(edited), "--forceall", *run[2:]]
            out = run_snakemake(*flags, *args, "--until", "theory", check=False)
            assert tree_state(tmp_path) == before, (flags, out.stderr[-2000:])
    finally:
        lock.unlink(missing_ok=True)
    # a run with the edited config writes its own snapshot beside the first, which stays as it was
    run_snakemake("--cores", "1", "--configfile", "config/default.yaml", str(edited), *run, "-F")
    snapshots = sorted((tmp_path / "work/demo/config").iterdir())
    assert len(snapshots) == 2 and first.stat().st_mtime_ns == before[str(first)]
    new = next(p for p in snapshots if p != first)
    assert load_config(new)["report"]["n_images"] == 500
    assert load_config(first)["report"]["n_images"] is None


def test_paths_with_spaces_and_quotes_reach_the_steps_intact(
    run_snakemake, figure_pixels, tmp_path
):
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
    tokenizer = base / "work space/spaced/tokenizer/constant/final.pt"
    run_snakemake("theory", tokenizer, "--cores", "1", config=cfg)
    # the manifest reached make_tables through its quoted --manifest flag
    table2 = (base / "it's $HOME/spaced/tables/table2_theory.md").read_text()
    assert "N = 20 training images (the data manifest's train count)" in table2
    figure_pixels(base / "it's $HOME/spaced/figures/fig2_theory.png")
    assert tokenizer.exists()


def test_a_brace_in_a_path_is_refused_in_one_line_naming_the_key(run_snakemake, tmp_path):
    cfg = {"extends": str(REPO / "config/default.yaml"), "paths": {"work_dir": "work{x}"}}
    out = run_snakemake("-n", config=cfg, profile=None, check=False)
    assert out.returncode != 0
    assert "bad value at 'paths.work_dir'" in out.stderr and "Traceback" not in out.stderr
