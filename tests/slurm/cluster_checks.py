"""Checks against the real SLURM cluster that start_cluster.sh started (run by run_cluster_test.sh).

accounting (slurmdbd, sacct):
1. Preflight: the paper configs fit the declared 8-GPU nodes (`python -m vcq.cluster check`, which
   runs `sbatch --test-only` with the workflow's flags); a runtime above a partition's MaxTime and
   a request no node offers are refused, by the command and by the workflow before submitting.
2. config/test_slurm.yaml runs through workflow/profiles/slurm: the tokenizer's job crosses its
   time limit twice (warned, it saves and requeues itself as the same job), then its node is set
   down mid-slice (SLURM requeues it, the workflow goes on; no process of the job outlives it), and
   the tables equal those of a local run of the same experiment into another work folder on the
   same data root, started side by side with it from the same directory (data generated once).
3. A cancelled job is reported as failed within one status interval; a killed `snakemake` rerun
   refuses (naming the running job) instead of submitting a duplicate.
noaccounting (after a restart without slurmdbd):
4. The plugin's squeue status command finishes a job.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sbatch_stub import REPO

from vcq.cluster import slurm_seconds

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
CONFIG = "config/test_slurm.yaml"
PAPER_CONFIGS = ["config/imagenet/base.yaml", "config/imagenet/large.yaml"]
# the plugin's first status check waits 40 s and each quiet one 10 s more; at a few seconds per
# job that would dominate this test, so it checks every 2 s
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "2"]
# The tokenizer's jobs are warned 60 to 90 s (slurm.signal_margin_s + SLURM's 30 s check period)
# before their limit, which the test cuts in its first two slices (Disturber): more steps than
# two such slices hold on an idle machine, and no checkpoint but the slices' own.
SLICES = """\
resources:
  train_tokenizer: {runtime: 3}
tokenizer:
  train: {steps: 1000, ckpt_every: 2000, log_every: 50}
"""
TOKENIZER = "rule_train_tokenizer_wildcards_cosine"


def log(msg: str) -> None:
    print(f"[test-slurm {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*cmd: str) -> str:
    """stdout of a SLURM command (it must succeed)."""
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def job_of(comment: str) -> str | None:
    """The id of the queued or running job whose comment (the plugin's rule tag) is `comment`."""
    for line in sh("squeue", "-h", "-o", "%i|%k").splitlines():
        job, _, tag = line.partition("|")
        if tag.strip() == comment:
            return job.strip()
    return None


def job_info(job: str) -> dict[str, str]:
    """`scontrol show job` as a dict (JobState, Restarts, TimeLimit, ...)."""
    return dict(re.findall(r"(\w+)=(\S+)", sh("scontrol", "show", "job", job)))


def wait_for(what: str, test, limit: float = 300) -> object:
    """Poll `test()` every second until it is truthy; its value."""
    end = time.time() + limit
    while time.time() < end:
        value = test()
        if value:
            return value
        time.sleep(1)
    raise SystemExit(f"timed out after {limit:.0f} s waiting for {what}")


def overrides(root: Path, experiment: str = "test_slurm") -> list[str]:
    return [
        f"paths={{work_dir: {root}/work, results_dir: {root}/results}}",
        f"data={{root: {root}/data}}",
        f"experiment={experiment}",
    ]


# the workflow runs started (stopped when the checks stop, also on failure)
RUNNING: list[subprocess.Popen] = []


def workflow(tmp: Path, name: str, *args: str, config: tuple[str, ...] = (), timeout: int) -> Path:
    """Run config/test_slurm.yaml (+ SLICES) with its outputs under tmp/name and its data under
    tmp/slurm/data (shared by every run); the results folder."""
    root = tmp / name
    cmd = [SNAKEMAKE, "--configfile", CONFIG, str(tmp / "slices.yaml"), "--config"]
    cmd += [*overrides(root)[:1], f"data={{root: {tmp}/slurm/data}}", *overrides(root)[2:]]
    cmd += [*config, *args]
    log(" ".join(cmd))
    start = time.time()
    with open(tmp / f"{name}.log", "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        RUNNING.append(proc)
        try:
            rc = proc.wait(timeout=timeout)
        finally:
            proc.kill()  # after a timeout, or when the check stops (no-op once it has exited)
    if rc != 0:
        raise SystemExit(
            f"{name} run failed (log: {tmp / f'{name}.log'}):\n"
            + (tmp / f"{name}.log").read_text()[-3000:]
        )
    log(f"{name} run finished in {time.time() - start:.0f} s")
    return root / "results" / "test_slurm"


def check_preflight(tmp: Path) -> None:
    """Paper configs fit the GPU partition; what does not fit is refused before any job."""
    for config in PAPER_CONFIGS:
        out = subprocess.run(
            [sys.executable, "-m", "vcq.cluster", "check", "--configfile", config]
            + ["--set", "slurm.partition=gpu", "--set", "slurm.account=vcq"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"{config}: preflight refused the GPU partition:\n{out.stderr}")
        log(out.stdout.strip())
    cases = {
        # eval_fid cannot continue in a second job, and `short` allows 5 min
        "slurm.partition=short resources.eval_fid.runtime=30": "eval_fid: asks 30 min "
        "(resources.eval_fid.runtime), partition short allows 5 min (MaxTime)",
        # this host's partition has no GPU
        "resources.train_ar.gpus=1": "train_ar: asks 1 node(s) with 1 CPUs, 1000 MB and 1 GPUs",
    }
    before = sh("sacct", "-X", "-n", "-o", "JobID").split()
    for sets, expected in cases.items():
        flags = [a for s in sets.split() for a in ("--set", s)]
        out = subprocess.run(
            [sys.executable, "-m", "vcq.cluster", "check", "--configfile", CONFIG, *flags],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 1 or f"error: {expected}" not in out.stderr:
            raise SystemExit(f"preflight of {sets}: expected '{expected}', got:\n{out.stderr}")
        # the workflow refuses the same before its first submission (a YAML overlay: Snakemake's
        # --config would give strings)
        overlay = tmp / f"refused{len(sets)}.yaml"
        overlay.write_text(_yaml_of(sets))
        run = subprocess.run(
            [SNAKEMAKE, "--profile", "workflow/profiles/slurm", "--configfile", CONFIG]
            + [str(overlay), "--config", *overrides(tmp / "refused"), "slurm={account: vcq}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if run.returncode == 0 or f"error: {expected}" not in run.stderr:
            raise SystemExit(f"workflow with {sets} was not refused:\n{run.stderr[-3000:]}")
        log(f"refused before submission: {expected}")
    if sh("sacct", "-X", "-n", "-o", "JobID").split() != before:
        raise SystemExit("a refused workflow submitted a job")


def _yaml_of(sets: str) -> str:
    """`a.b=1 c.d=x` as YAML (a config overlay: Snakemake's --config gives strings)."""
    lines = []
    for item in sets.split():
        key, value = item.split("=")
        *outer, last = key.split(".")
        text = f"{last}: {value}"
        for part in reversed(outer):
            text = f"{part}: {{{text}}}"
        lines.append(text)
    return "\n".join(lines) + "\n"


class Disturber(threading.Thread):
    """Drives the tokenizer's job through two time-limit crossings and a node failure: in each of
    its first two slices, once it trains, the job's TimeLimit is cut to end 40-100 s later (SLURM
    then warns it, it saves and requeues itself; the cut, not the machine's speed, decides where
    a slice ends), then it gets room to finish (TimeLimit 15 min) and its node is set down
    mid-slice and back up."""

    def __init__(self, train_log: Path) -> None:
        super().__init__(daemon=True)
        self.train_log, self.events, self.error, self.job = train_log, [], None, None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # reported by the main thread
            self.error = e

    def _training(self, slice_: int) -> bool:
        """Whether slice `slice_` (1, 2, ...) of the step trains (its `===` line and start)."""
        text = self.train_log.read_text()
        if text.count("\n=== ") + text.startswith("=== ") < slice_:
            return False
        last = text.rsplit("=== ", 1)[-1]
        return "training tokenizer" in last and (slice_ == 1 or "resumed from" in last)

    def _run(self) -> None:
        job = wait_for("the tokenizer job", lambda: job_of(TOKENIZER), 600)
        self.job = job
        for slice_ in (1, 2):
            wait_for(f"slice {slice_} to train", lambda s=slice_: self._training(s), 600)
            elapsed = slurm_seconds(job_info(job)["RunTime"])
            limit = -(-(elapsed + 40) // 60)
            sh("scontrol", "update", f"JobId={job}", f"TimeLimit={limit}")
            self.events.append(f"slice {slice_}: TimeLimit {limit} min at {elapsed} s")
            wait_for(f"requeue {slice_}", lambda s=slice_: int(job_info(job)["Restarts"]) >= s, 300)
        sh("scontrol", "update", f"JobId={job}", "TimeLimit=15")
        self.events.append("TimeLimit 15 min")
        wait_for("slice 3 to train", lambda: self._training(3), 600)
        time.sleep(3)
        node = socket.gethostname().split(".")[0]
        sh("scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=vcq-test")
        self.events.append(f"node {node} down")
        wait_for("the job to leave its node", lambda: job_info(job)["JobState"] != "RUNNING", 60)
        self.events.append(f"job {job} {job_info(job)['JobState']}")
        # SLURM refuses RESUME while the node still completes the job it lost (KillWait)
        wait_for("the node to resume", lambda: _resumed(node), 180)
        self.events.append(f"node {node} resumed")


def _resumed(node: str) -> bool:
    """Try to RESUME a down node: whether SLURM accepted it."""
    out = subprocess.run(
        ["scontrol", "update", f"NodeName={node}", "State=RESUME"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.returncode == 0


def check_slices_and_node_failure(tmp: Path) -> Path:
    """The SLURM run: the tokenizer crosses its time limit twice and loses its node once."""
    work = tmp / "slurm" / "work" / "test_slurm"
    work.joinpath("logs").mkdir(parents=True)
    step_log = work / "logs" / "train_tokenizer_cosine.log"
    step_log.touch()
    watcher = Disturber(step_log)
    watcher.start()
    try:
        results = workflow(
            tmp,
            "slurm",
            "--profile",
            "workflow/profiles/slurm",
            *FAST_STATUS,
            "--slurm-keep-successful-logs",
            config=("slurm={account: vcq}",),
            timeout=900,
        )
    finally:
        watcher.stop.set()
    watcher.join(5)
    log("; ".join(watcher.events))
    if watcher.error:
        raise SystemExit(f"disturbing the tokenizer job failed: {watcher.error!r}")
    text = step_log.read_text()
    saved = [int(s) for s in re.findall(r"at step (\d+): time slice ends", text)]
    resumed = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", text)]
    if len(saved) < 2 or resumed[: len(saved)] != saved:
        raise SystemExit(f"expected two slices saved and resumed at their step: {saved}, {resumed}")
    runs = text.count(f"SLURM job {watcher.job},")
    if runs < 4 or "Trying to restart" in (tmp / "slurm.log").read_text():
        raise SystemExit(f"expected one job in at least 4 runs and no retry ({runs} runs)")
    log(f"tokenizer: one SLURM job, {runs} runs; slices saved and resumed at steps {saved}")
    left = wait_for_none(lambda: job_processes(watcher.job), 90)
    if left:
        raise SystemExit(f"processes of SLURM job {watcher.job} outlived it: {left}")
    log(f"no process of SLURM job {watcher.job} outlived it")
    return results


def job_processes(job: str) -> list[str]:
    """Command lines of the live processes of SLURM job `job` (SLURM_JOB_ID in their environ)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if f"SLURM_JOB_ID={job}".encode() in env and stat[0] != "Z":
            found.append(f"{proc.name}: {cmd[:200]}")
    return found


def wait_for_none(find, limit: float) -> list:
    """Poll `find()` every second for up to `limit` s until it is empty; its last value."""
    end = time.time() + limit
    while (found := find()) and time.time() < end:
        time.sleep(1)
    return found


def same_tables(a: Path, b: Path) -> None:
    tables = sorted(p.name for p in (a / "tables").iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a / "tables", b / "tables", tables, shallow=False)
    if mismatch or errors or not match:
        raise SystemExit(f"tables differ between the SLURM and the local run: {mismatch + errors}")
    log(f"{len(match)} table files identical: {', '.join(match)}")


def check_cancel_and_rerun(tmp: Path) -> None:
    """scancel is reported within one status interval; a killed snakemake's rerun refuses."""
    root = tmp / "slurm"  # the data of the SLURM run, another experiment
    target = f"{root}/work/test_slurm_k/tokenizer/cosine/final.pt"
    cmd = [SNAKEMAKE, "--profile", "workflow/profiles/slurm", "--configfile", CONFIG]
    cmd += [str(tmp / "slices.yaml"), "--config", *overrides(root, "test_slurm_k")]
    cmd += ["slurm={account: vcq}", *FAST_STATUS, target]

    def start(name: str, *extra: str) -> tuple[subprocess.Popen, str]:
        f = open(tmp / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen([*cmd, *extra], cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        job = wait_for("the tokenizer job", lambda: job_of(TOKENIZER), 120)
        wait_for("it to run", lambda: job_info(job)["JobState"] == "RUNNING", 120)
        return proc, job

    # no retry: with one, Snakemake would resubmit the cancelled job (which then resumes)
    proc, job = start("cancel", "--retries", "0")
    time.sleep(5)
    sh("scancel", job)
    cancelled = time.time()
    rc = proc.wait(timeout=240)
    waited = time.time() - cancelled
    text = (tmp / "cancel.log").read_text()
    if rc == 0 or "CANCELLED" not in text:
        raise SystemExit(f"scancel {job} was not reported as a failure:\n{text[-2000:]}")
    # one status interval: 2 s after the submission, +10 s per quiet check, at most 180 s
    if waited > 60:
        raise SystemExit(f"scancel {job} reported after {waited:.0f} s")
    log(f"scancel {job}: reported as failed after {waited:.0f} s")

    proc, job = start("killed")
    proc.send_signal(signal.SIGKILL)  # a dropped login session: the job goes on
    proc.wait()
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    expected = f"already runs as SLURM job {job}: wait, or scancel {job}"
    if rerun.returncode == 0 or expected not in rerun.stderr:
        raise SystemExit(f"the rerun did not refuse with '{expected}':\n{rerun.stderr[-2000:]}")
    if job_of(TOKENIZER) != job or len(sh("squeue", "-h", "-o", "%i").split()) != 1:
        raise SystemExit(f"the rerun submitted a second job: {sh('squeue')}")
    log(f"rerun after a killed snakemake: '{expected}', no second job")
    sh("scancel", job)
    wait_for("the job to end", lambda: job_of(TOKENIZER) is None, 120)
    stale = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    if "`--unlock` removes it safely" not in stale.stderr:
        raise SystemExit(f"no advice for the killed run's lock:\n{stale.stderr[-2000:]}")
    subprocess.run([*cmd, "--unlock"], cwd=REPO, capture_output=True, timeout=120, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "part",
        choices=["accounting", "noaccounting"],
        help="accounting: checks 1 to 3; noaccounting: check 4",
    )
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # same arithmetic in SLURM jobs and local jobs
    os.environ["PYTHONPATH"] = str(REPO)
    tmp = Path(tempfile.mkdtemp(prefix="vcq-slurm-runs-"))
    (tmp / "slices.yaml").write_text(SLICES)
    if args.part == "accounting":
        check_preflight(tmp)
        # the same experiment into another work folder, on the same data, beside the SLURM run
        local: dict[str, object] = {}

        def run_local() -> None:
            try:
                local["results"] = workflow(
                    tmp,
                    "local",
                    "--profile",
                    "workflow/profiles/local",
                    "--cores",
                    "1",
                    timeout=900,
                )
            except BaseException as e:  # noqa: BLE001 (reported by the main thread)
                local["error"] = e

        beside = threading.Thread(target=run_local, daemon=True)
        beside.start()
        try:
            on_slurm = check_slices_and_node_failure(tmp)
            beside.join(900)
        finally:
            for proc in RUNNING:
                if proc.poll() is None:
                    proc.terminate()
        if "results" not in local:
            raise SystemExit(f"the local run beside the SLURM run failed: {local.get('error')!r}")
        same_tables(on_slurm, local["results"])
        made = sum(
            (tmp / run / "work/test_slurm/logs/make_dataset.log")
            .read_text()
            .count("generated the synthetic set")
            for run in ("slurm", "local")
        )
        if made != 1:
            raise SystemExit(f"the shared data set was generated {made} times, not once")
        log("a local run of the experiment ran beside the SLURM run; the data was generated once")
        check_cancel_and_rerun(tmp)
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
