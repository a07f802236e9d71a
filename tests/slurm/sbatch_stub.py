"""The sbatch lines snakemake-executor-plugin-slurm builds, recorded against stub SLURM commands.

Snakemake runs the whole DAG through the real plugin with stub SLURM commands on PATH: the stub
`sbatch` records its arguments, creates the job's outputs instead of running it (so the next jobs
become ready) and answers a job id; the stub `sacct` reports every job COMPLETED. Imported by
tests/test_sbatch.py (as `slurm.sbatch_stub`) and by cluster_checks.py, a plain script beside it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from vcq.config import load_config
from vcq.preflight import external_files

SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
REPO = Path(__file__).resolve().parents[2]

STUB_SBATCH = f"""#!{sys.executable}
import fcntl, json, os, shlex, sys
from pathlib import Path
if "--test-only" in sys.argv:  # the workflow's preflight: every request fits
    print("sbatch: Job 1 to start at 2030-01-01T00:00:00 using 1 processors on nodes gpu1",
          file=sys.stderr)
    sys.exit(0)
state = Path(os.environ["VCQ_STUB_STATE"])
with open(state / "sbatch.jsonl", "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)  # the plugin submits from two threads; ids must be unique
    f.seek(0)
    job_id = 1001 + sum(1 for _ in f)
    f.write(json.dumps(sys.argv[1:]) + "\\n")
wrap = shlex.split(next(a for a in sys.argv if a.startswith("--wrap="))[len("--wrap="):])
rule, _, wildcards = wrap[wrap.index("--target-jobs") + 1].partition(":")
key = rule + ":" + ",".join(sorted(w for w in wildcards.split(",") if w))
for out in json.loads((state / "outputs.json").read_text())[key]:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).touch()
print(job_id)
"""
STUB_SACCT = """#!/bin/sh
# every job submitted so far has completed
n=$(wc -l < "$VCQ_STUB_STATE/sbatch.jsonl" 2>/dev/null || echo 0)
i=1; while [ "$i" -le "$n" ]; do echo "$((1000 + i))|COMPLETED"; i=$((i + 1)); done
"""
# sacctmgr lists the user's accounts (the plugin validates -A against them); the others answer
# nothing, so the plugin guesses no account and no default partition
STUB_SACCTMGR = "#!/bin/sh\necho vcq\n"
STUB_SILENT = "#!/bin/sh\nexit 0\n"
# the paper-scale cluster of start_cluster.sh, for the workflow's preflight (vcq.cluster)
STUB_SCONTROL = """#!/bin/sh
case "$*" in
  "show partition"*) echo "PartitionName=gpu Default=YES MaxTime=UNLIMITED Nodes=gpu[1-2]" ;;
esac
"""
STUB_SINFO = "#!/bin/sh\necho 'gpu1|128|1000000|gpu:a100:8'\necho 'gpu2|128|1000000|gpu:a100:8'\n"


def job_outputs(cmd: list[str], env: dict) -> dict[str, list[str]]:
    """`rule:wildcards` (as in --target-jobs, sorted) -> output files, from a forced dry run."""
    out = subprocess.run(
        [*cmd, "-n"], capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    jobs, rule, outputs, wildcards = {}, None, [], ""
    for line in out.stdout.splitlines() + ["rule end:"]:
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            if rule:
                jobs[f"{rule}:{wildcards}"] = outputs
            rule, outputs, wildcards = m.group(1), [], ""
        elif line.strip().startswith("output:"):
            outputs = [p.strip() for p in line.split(":", 1)[1].split(",")]
        elif line.strip().startswith("wildcards:"):
            wildcards = ",".join(sorted(w.strip() for w in line.split(":", 1)[1].split(",")))
    return jobs


def submit_all(
    tmp_path: Path, *configfiles: str, extra: tuple[str, ...] = ()
) -> dict[str, list[list[str]]]:
    """Rule name -> the sbatch argument lists of its jobs, for a forced run of the whole DAG."""
    bin_dir, state, wd = tmp_path / "bin", tmp_path / "state", tmp_path / "wd"
    for d in (bin_dir, state, wd):
        d.mkdir()
    # config paths (Table 5's row configs) are relative to the working directory, as on a cluster
    (wd / "config").symlink_to(REPO / "config")
    # stand-ins for the data folder and weight files the run reads (the preflight checks them)
    for f in external_files(load_config(REPO / configfiles[0])):
        target = wd / f.path
        if f.key == "data.root":
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    stubs = {
        "sbatch": STUB_SBATCH,
        "sacct": STUB_SACCT,
        "sacctmgr": STUB_SACCTMGR,
        "scontrol": STUB_SCONTROL,
        "sinfo": STUB_SINFO,
    }
    for name in ("squeue", "sshare", "scancel"):
        stubs[name] = STUB_SILENT
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "VCQ_STUB_STATE": str(state),
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "workflow/Snakefile"),
        "--profile",
        str(REPO / "workflow/profiles/slurm"),
        "--configfile",
        *(str(REPO / c) for c in configfiles),
        "--directory",
        str(wd),
        "--forceall",
        *extra,
    ]
    jobs = job_outputs(cmd, env)
    # outputs are relative to the working directory, where the stub sbatch runs
    (state / "outputs.json").write_text(
        json.dumps({k: [str(wd / p) for p in v] for k, v in jobs.items()})
    )
    out = subprocess.run(
        [
            *cmd,
            "--slurm-init-seconds-before-status-checks",
            "1",
            "--latency-wait",
            "0",
            "--scheduler",
            "greedy",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    calls: dict[str, list[list[str]]] = {}
    for line in (state / "sbatch.jsonl").read_text().splitlines():
        args = json.loads(line)
        rule = re.match(r"rule_([a-z_]+?)(_wildcards_|$)", args[args.index("--comment") + 1]).group(
            1
        )
        calls.setdefault(rule, []).append(args)
    assert sum(map(len, calls.values())) == len(jobs) - 1  # every job but the local `all`
    return calls
