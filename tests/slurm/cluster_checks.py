"""Checks against the real SLURM cluster that start_cluster.sh started (run by run_cluster_test.sh).

1. The paper-scale sbatch lines (as the plugin builds them, recorded by sbatch_stub.py) pass
   `sbatch --test-only` on the declared 8-GPU, 128-CPU nodes.
2. config/test_slurm.yaml runs through workflow/profiles/slurm and gives the same tables as a local
   run of the same config.
3. (after a restart without accounting) the plugin's squeue status command finishes a job.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sbatch_stub import REPO, submit_all

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = "config/test_slurm.yaml"
PAPER_CONFIGS = ["config/imagenet/base.yaml", "config/imagenet/large.yaml"]
# the plugin's first status check waits 40 s and each quiet one 10 s more; at a few seconds per
# job that would dominate this test, so it checks every 2 s
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]


def log(msg: str) -> None:
    print(f"[test-slurm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check_test_only(tmp: Path) -> None:
    """Every paper-scale rule's sbatch line is satisfiable by the declared GPU nodes."""
    no_grids = tmp / "no_grids.yaml"  # the CFG grids only add jobs of rules that are already there
    no_grids.write_text("sampling: {grids: []}\n")
    for config in PAPER_CONFIGS:
        stub_dir = tmp / ("stub_" + Path(config).stem)
        stub_dir.mkdir()
        calls = submit_all(
            stub_dir,
            config,
            str(no_grids),
            extra=("--config", "slurm={account: vcq, partition: gpu}"),
        )
        for rule, jobs in sorted(calls.items()):
            args = [a for a in jobs[0] if not a.startswith("--wrap=")]
            out = subprocess.run(
                ["sbatch", "--test-only", *args, "--wrap=true"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            answer = (out.stdout + out.stderr).strip()
            if out.returncode != 0 or "to start at" not in answer:
                raise SystemExit(f"{config} {rule}: sbatch --test-only refused {args}: {answer}")
            log(f"{config} {rule}: {answer.split('sbatch: ')[-1]}")


def workflow(tmp: Path, name: str, *args: str, config: tuple[str, ...] = (), timeout: int) -> Path:
    """Run config/test_slurm.yaml with its outputs under tmp/name; the results folder."""
    root = tmp / name
    overrides = [
        f"paths={{work_dir: {root}/work, results_dir: {root}/results}}",
        f"data={{root: {root}/data}}",
    ]
    cmd = [SNAKEMAKE, "--configfile", CONFIG, "--config", *overrides, *config, *args]
    log(" ".join(cmd))
    start = time.time()
    with open(tmp / f"{name}.log", "w") as f:
        out = subprocess.run(
            cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, check=False
        )
    if out.returncode != 0:
        raise SystemExit(
            f"{name} run failed (log: {tmp / f'{name}.log'}):\n"
            + (tmp / f"{name}.log").read_text()[-3000:]
        )
    log(f"{name} run finished in {time.time() - start:.0f} s")
    return root / "results" / "test_slurm"


def same_tables(a: Path, b: Path) -> None:
    tables = sorted(p.name for p in (a / "tables").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a / "tables", b / "tables", tables, shallow=False)
    if mismatch or errors or not match:
        raise SystemExit(f"tables differ between the SLURM and the local run: {mismatch + errors}")
    log(f"{len(match)} table files identical: {', '.join(match)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "part",
        choices=["accounting", "noaccounting"],
        help="accounting: checks 1 and 2; noaccounting: check 3",
    )
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # same arithmetic in SLURM jobs and local jobs
    os.environ["PYTHONPATH"] = str(REPO)
    tmp = Path(tempfile.mkdtemp(prefix="vcq-slurm-runs-"))
    if args.part == "accounting":
        check_test_only(tmp)
        on_slurm = workflow(
            tmp,
            "slurm",
            "--profile",
            "workflow/profiles/slurm",
            *FAST_STATUS,
            "--slurm-keep-successful-logs",
            config=("slurm={account: vcq}",),
            timeout=600,
        )
        local = workflow(
            tmp, "local", "--profile", "workflow/profiles/local", "--cores", "2", timeout=600
        )
        same_tables(on_slurm, local)
    else:
        # no slurmdbd: sacct fails, so the status must come from squeue (MinJobAge 300 s >= 120 s)
        workflow(
            tmp,
            "squeue",
            "--profile",
            "workflow/profiles/slurm",
            *FAST_STATUS,
            "--slurm-status-command",
            "squeue",
            "--until",
            "theory",
            timeout=300,
        )
    log(f"{args.part}: passed")


if __name__ == "__main__":
    main()
