"""Experiments on one data source share its manifest: switching between them reruns nothing, a
changed folder reruns make_dataset (issue 22 cases 3 and 5)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from vcq.io import read_json

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
needs_snakemake = pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")


def snakemake(config: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [SNAKEMAKE, "--profile", "workflow/profiles/local", "--configfile", str(config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out


def planned(out: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> jobs of a dry run's job stats."""
    return {
        m.group(1): int(m.group(2))
        for line in out.stdout.splitlines()
        if (m := re.match(r"^\s*(\w+)\s+(\d+)\s*$", line)) and m.group(1) != "total"
    }


@needs_snakemake
def test_experiments_on_one_root_share_it_and_a_changed_folder_reruns(tmp_path):
    root = tmp_path / "mine"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            Image.new("RGB", (8, 8), (40 * len(c), 0, 0)).save(root / split / c / "0.png")
    configs = {}
    for name in ("one", "two"):
        cfg = {
            "extends": str(REPO / "config/default.yaml"),
            "experiment": name,
            "data": {"source": "folder", "root": str(root)},
            "paths": {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "res")},
        }
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))
    until = ("--until", "make_dataset", "--cores", "1")
    snakemake(configs["one"], *until)
    snakemake(configs["two"], *until)
    manifests = {n: tmp_path / "work" / n / "data" / "manifest.json" for n in configs}
    shared = list((tmp_path / "work" / "manifests").iterdir())
    assert len(shared) == 1  # validated once, by the first experiment
    assert read_json(manifests["one"]) == read_json(manifests["two"]) == read_json(shared[0])
    log_two = (tmp_path / "work" / "two" / "logs" / "make_dataset.log").read_text()
    assert "not validated again" in log_two
    mtime = manifests["one"].stat().st_mtime_ns
    for name in ("one", "two", "one"):  # switching experiments reruns nothing
        assert planned(snakemake(configs[name], "-n", *until)) == {}
    assert manifests["one"].stat().st_mtime_ns == mtime
    # issue 22 case 5: a class folder added to the root reruns make_dataset for both experiments
    for split in ("train", "val"):
        (root / split / "c").mkdir()
        Image.new("RGB", (8, 8)).save(root / split / "c" / "0.png")
    for name in configs:
        assert planned(snakemake(configs[name], "-n", *until)) == {"make_dataset": 1}
    snakemake(configs["one"], *until)
    assert read_json(manifests["one"])["classes"] == ["a", "b", "c"]
