"""Snakemake's `config` is the config: overrides reach the steps, `extends` resolves as for a file,
experiment paths derive from `experiment`, and a config edit reruns only the rules that read it."""

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from vcq.config import ConfigError, dump_config, load_config, resolve_config

SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
REPO = Path(__file__).resolve().parent.parent
needs_snakemake = pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")


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


def snakemake(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [SNAKEMAKE, "--profile", "workflow/profiles/local", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
        check=False,
    )
    assert out.returncode == 0 or not check, (out.stdout + out.stderr)[-3000:]
    return out


def planned(out: subprocess.CompletedProcess) -> Counter:
    return Counter(
        {
            m.group(1): int(m.group(2))
            for line in out.stdout.splitlines()
            if (m := re.match(r"^\s*(\w+)\s+(\d+)\s*$", line)) and m.group(1) != "total"
        }
    )


@needs_snakemake
def test_command_line_config_reaches_every_path():
    out = snakemake("-n", "--forceall", "--config", "experiment=other")
    assert (
        "work/other/features/demo_net.pt" in out.stdout
        and "results/other/tables/table4.md" in out.stdout
    )
    assert "work/demo/" not in out.stdout
    assert re.search(r"--config work/other/config/[0-9a-f]{16}\.yaml ", out.stdout)


@needs_snakemake
def test_bad_command_line_config_is_one_line():
    out = snakemake("-n", "--config", "experiment=bad/name", check=False)
    assert out.returncode != 0 and "config error:" in out.stderr and "experiment" in out.stderr
    out = snakemake("-n", "--config", "resources={train_arr: {}}", check=False)
    assert out.returncode != 0 and "config error: resources: no rule named train_arr" in out.stderr


def tree_state(root: Path) -> dict[str, int]:
    """Every file under `root` with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@needs_snakemake
def test_config_edit_reruns_only_the_rules_that_read_it(tmp_path):
    paths = [
        f"paths={{work_dir: {tmp_path}/work, results_dir: {tmp_path}/results}}",
        f"data={{root: {tmp_path}/data}}",
    ]
    edited = tmp_path / "edited.yaml"
    edited.write_text("report: {n_images: 500}\n")
    run = ["--until", "theory", "--config", *paths]  # theory needs make_dataset (the manifest)
    snakemake("--cores", "2", "--configfile", "config/default.yaml", *run)
    (resolved,) = (tmp_path / "work/demo/config").iterdir()  # the run's snapshot
    assert load_config(resolved)["report"]["n_images"] is None  # N from the data manifest
    assert planned(snakemake("-n", "--configfile", "config/default.yaml", *run)) == Counter()
    changed = snakemake("-n", "--configfile", "config/default.yaml", str(edited), *run)
    assert planned(changed) == Counter({"theory": 1}) and "params" in changed.stdout.lower()


@needs_snakemake
def test_only_a_run_that_starts_jobs_writes_a_config_snapshot(tmp_path):
    # issue 22 case 2: a dry run, --summary, --unlock, --lint or a run refused by the lock, with an
    # edited config, rewrote the config that the running workflow's later jobs read
    paths = [
        f"paths={{work_dir: {tmp_path}/work, results_dir: {tmp_path}/results}}",
        f"data={{root: {tmp_path}/data}}",
    ]
    edited = tmp_path / "edited.yaml"
    edited.write_text("report: {n_images: 500}\n")
    run = ["--until", "make_dataset", "--config", *paths]
    snakemake("--cores", "1", "--configfile", "config/default.yaml", *run)
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
            out = snakemake(*flags, *args, "--until", "theory", check=False)
            assert tree_state(tmp_path) == before, (flags, out.stderr[-2000:])
    finally:
        lock.unlink(missing_ok=True)
    # a run with the edited config writes its own snapshot beside the first, which stays as it was
    snakemake("--cores", "1", "--configfile", "config/default.yaml", str(edited), *run, "-F")
    snapshots = sorted((tmp_path / "work/demo/config").iterdir())
    assert len(snapshots) == 2 and first.stat().st_mtime_ns == before[str(first)]
    new = next(p for p in snapshots if p != first)
    assert load_config(new)["report"]["n_images"] == 500
    assert load_config(first)["report"]["n_images"] is None
