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
    assert "work/demo/" not in out.stdout and "--config work/other/config.yaml" in out.stdout


@needs_snakemake
def test_bad_command_line_config_is_one_line():
    out = snakemake("-n", "--config", "experiment=bad/name", check=False)
    assert out.returncode != 0 and "config error:" in out.stderr and "experiment" in out.stderr
    out = snakemake("-n", "--config", "resources={train_arr: {}}", check=False)
    assert out.returncode != 0 and "config error: resources: no rule named train_arr" in out.stderr


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
    resolved = tmp_path / "work/demo/config.yaml"
    assert load_config(resolved)["report"]["n_images"] is None  # N from the data manifest
    mtime = resolved.stat().st_mtime_ns
    assert planned(snakemake("-n", "--configfile", "config/default.yaml", *run)) == Counter()
    assert resolved.stat().st_mtime_ns == mtime  # unchanged content is not rewritten
    changed = snakemake("-n", "--configfile", "config/default.yaml", str(edited), *run)
    assert planned(changed) == Counter({"theory": 1}) and "params" in changed.stdout.lower()
