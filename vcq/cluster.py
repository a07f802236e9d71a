"""SLURM operations: partition limits, a preflight against the real cluster, one owner per step.

`python -m vcq.cluster check --configfile CONFIG` runs the preflight alone; the workflow runs it
at start under the SLURM executor (workflow/rules/common.smk), before the first submission.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from vcq.config import ConfigError, load_config, rule_spec
from vcq.io import StepError, atomic_path

# Rules whose steps save their state and stop at the slice signal (vcq.preempt): their config
# runtime is the total, split into slices of at most the partition's MaxTime.
SLICED_RULES = ("train_tokenizer", "train_ar", "linear_probe", "encode_tokens", "sample")
# A slice must leave this many seconds of work between its start and its warning.
MIN_SLICE_WORK_S = 60
# squeue states of a job that still holds, or will again hold, its step's outputs.
_LIVE_STATES = {
    "PENDING",
    "CONFIGURING",
    "RUNNING",
    "COMPLETING",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SUSPENDED",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
}
OWNER_SUFFIX = ".owner"
# the owner records this process wrote (`claim`), removed by `release`
_claims: list[Path] = []


def have_slurm() -> bool:
    """Whether the SLURM client commands are on PATH."""
    return all(shutil.which(c) for c in ("sbatch", "scontrol", "squeue"))


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def slurm_seconds(text: str) -> int | None:
    """Seconds of a SLURM time ("UNLIMITED"/"INFINITE" -> None; "D-HH:MM:SS", "HH:MM:SS", "MM",
    "MM:SS")."""
    text = text.strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE", "NOT_SET"):
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(f"not a SLURM time: {text!r}")
    days, a, b, c = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None or m.group(4) is not None:  # D-H[:M[:S]] or H:M:S
        hours, minutes, seconds = a, b, c
    else:  # M[:S]
        hours, minutes, seconds = 0, a, b
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def slurm_minutes(text: str) -> int | None:
    """Whole minutes of a SLURM time, rounded up (None if unlimited)."""
    seconds = slurm_seconds(text)
    return None if seconds is None else -(-seconds // 60)


def time_left_s(job: str) -> int | None:
    """Seconds SLURM job `job` has left before its time limit (None: unlimited or unknown)."""
    try:
        out = _run("squeue", "-h", "-j", job, "-o", "%L")
        return slurm_seconds(out.stdout) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def partitions() -> dict[str, dict[str, str]]:
    """`scontrol show partition` as {name: {key: value}}."""
    out = _run("scontrol", "show", "partition", "--oneliner")
    if out.returncode != 0:
        raise StepError(f"scontrol show partition failed: {(out.stderr or out.stdout).strip()}")
    parts = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "PartitionName" in fields:
            parts[fields["PartitionName"]] = fields
    return parts


def partition_of(parts: Mapping[str, Mapping[str, str]], name: str | None) -> str | None:
    """The partition a job lands in: `name`, else the cluster's default (None if neither)."""
    if name:
        return name if name in parts else None
    return next((p for p, f in parts.items() if f.get("Default") == "YES"), None)


def slice_minutes(total: int, max_time: int | None) -> int:
    """The time one job asks for: the config's total, at most the partition's MaxTime."""
    return total if max_time is None else min(total, max_time)


MARGIN_ENV = "VCQ_SIGNAL_MARGIN_S"


def rule_partition(cfg: Mapping, rule: str) -> str | None:
    """The partition a rule's jobs ask for: its own `resources.<rule>.partition`, else
    `slurm.partition` (None: the cluster's default)."""
    return rule_spec(cfg, rule).get("partition") or cfg["slurm"]["partition"]


def rule_resources(cfg: Mapping, rule: str, max_time: int | None = None) -> dict[str, object]:
    """Snakemake resources of a rule, in the keys snakemake-executor-plugin-slurm 2.8 turns into
    sbatch flags: one task per node with `cpus_per_task` CPUs, `mem_mb` and GPUs per node, and a
    wall time of at most `max_time` (its partition's MaxTime) for a rule that runs in slices."""
    r = rule_spec(cfg, rule)
    slurm = cfg["slurm"]
    # append: a requeued job (the next slice) keeps the job log of the slices before it
    extra = ["--open-mode=append"]
    if rule in SLICED_RULES:
        extra.append(f"--signal=USR1@{slurm['signal_margin_s']}")
    out: dict[str, object] = {
        "mem_mb": r["mem_mb"],
        "runtime": slice_minutes(r["runtime"], max_time if rule in SLICED_RULES else None),
        "cpus_per_task": r["cpus_per_task"],
        "nodes": r["nodes"],
        "slurm_extra": " ".join(extra),
    }
    if r["gpus"] > 0:
        # `gres` is per node (--gres=gpu:N); the plugin's `gpu` would be --gpus=N for the whole
        # job, and its `tasks` would become --ntasks-per-gpu, multiplying the CPUs by the GPUs
        model = slurm["gpu_model"]
        out["gres"] = f"gpu:{model}:{r['gpus']}" if model else f"gpu:{r['gpus']}"
    if slurm["account"]:
        out["slurm_account"] = slurm["account"]
    if rule_partition(cfg, rule):
        out["slurm_partition"] = rule_partition(cfg, rule)
    return out


def failed_for_good(log: str | os.PathLike) -> str | None:
    """The `error:` line of the last attempt in a step's log (after its last `===` header), if
    it ended with one: a bad config, input or checkpoint, which fails again however often it is
    retried. None for a crash, a kill or a time limit, which may pass on a retry."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - (1 << 16)))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    attempt = tail.rsplit("\n=== ", 1)[-1]
    lines = [ln for ln in attempt.splitlines() if ln.startswith(("error: ", "config error: "))]
    return lines[-1] if lines else None


def retry_resources(res: Mapping[str, object]) -> dict[str, object]:
    """`res` cut to one CPU and no GPU for ten minutes: the retry of a step that `failed_for_good`
    only repeats its error line, which needs no GPU allocation."""
    small = {**res, "cpus_per_task": 1, "mem_mb": 2000, "runtime": 10, "nodes": 1}
    return small | ({"gres": ""} if "gres" in res else {})


def partition_max_minutes(partition: str | None) -> int | None:
    """MaxTime of `partition` (or the default one) in minutes; None if unlimited or unknown."""
    if not have_slurm():
        return None
    try:
        parts = partitions()
    except (StepError, OSError, subprocess.SubprocessError):
        return None
    target = partition_of(parts, partition)
    return slurm_minutes(parts[target].get("MaxTime", "UNLIMITED")) if target else None


def sbatch_flags(res: Mapping[str, object]) -> list[str]:
    """The resource flags snakemake-executor-plugin-slurm 2.8 builds from a rule's resources."""
    flags = []
    if res.get("slurm_account"):
        flags += ["-A", str(res["slurm_account"])]
    if res.get("slurm_partition"):
        flags += ["-p", str(res["slurm_partition"])]
    flags += ["-t", str(res["runtime"]), "--mem", str(res["mem_mb"]), f"--nodes={res['nodes']}"]
    if not res.get("gres"):
        flags.append("--ntasks=1")
    flags.append(f"--cpus-per-task={res['cpus_per_task']}")
    flags += str(res.get("slurm_extra") or "").split()
    if res.get("gres"):
        flags.append(f"--gres={res['gres']}")
    return flags


def partition_nodes(partition: str) -> list[tuple[int, int, dict[str, int]]]:
    """(CPUs, memory MB, GPUs by model; "" counts every GPU) of each node in `partition`."""
    out = _run("sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G")
    nodes = {}
    for line in out.stdout.splitlines():
        name, cpus, mem, gres = line.split("|")
        gpus: dict[str, int] = {}
        for g in gres.split(","):
            m = re.match(r"gpu(?::([^:(]+))?:(\d+)", g)
            if m:
                gpus[""] = gpus.get("", 0) + int(m.group(2))
                if m.group(1):
                    gpus[m.group(1)] = gpus.get(m.group(1), 0) + int(m.group(2))
        nodes[name] = (int(cpus.rstrip("+")), int(mem.rstrip("+")), gpus)
    return list(nodes.values())


def _node_problem(
    rule: str, spec: Mapping, model: str | None, target: str, nodes: list
) -> str | None:
    """Why no `spec["nodes"]` nodes of the partition fit one node's share of `rule`, if so."""
    want = (spec["cpus_per_task"], spec["mem_mb"], spec["gpus"])
    fit = [
        n
        for n in nodes
        if n[0] >= want[0] and n[1] >= want[1] and n[2].get(model or "", 0) >= want[2]
    ]
    if len(fit) >= spec["nodes"]:
        return None
    top = (max((n[0] for n in nodes), default=0), max((n[1] for n in nodes), default=0))
    top_gpus = max((n[2].get(model or "", 0) for n in nodes), default=0)
    gpu = f"{model} GPUs" if model else "GPUs"
    return (
        f"{rule}: asks {spec['nodes']} node(s) with {want[0]} CPUs, {want[1]} MB and {want[2]} "
        f"{gpu} each (resources.{rule}.nodes/cpus_per_task/mem_mb/gpus); partition {target} has "
        f"{len(fit)} such node(s), its largest offer {top[0]} CPUs, {top[1]} MB, {top_gpus} {gpu}"
    )


def preflight(cfg: Mapping, rules: list[str]) -> list[str]:
    """One line per problem of submitting each of `rules` under config `cfg` to this cluster
    (each rule's partition, its MaxTime, the account's association, node sizes, `sbatch
    --test-only` with the flags the workflow passes); [] if everything fits."""
    slurm = cfg["slurm"]
    parts = partitions()
    problems = []
    account = slurm["account"]
    if account and shutil.which("sacctmgr"):
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or "root"
        assoc = _run("sacctmgr", "-nP", "show", "assoc", f"user={user}", "format=account")
        accounts = {a.strip() for a in assoc.stdout.split()} if assoc.returncode == 0 else set()
        if accounts and account not in accounts:
            return [
                f"slurm.account: '{account}' has no association for user {user} "
                f"(accounts: {', '.join(sorted(accounts))})"
            ]
    margin = slurm["signal_margin_s"]
    refusals: dict[str, list[str]] = {}
    nodes_of: dict[str, list] = {}
    missing: dict[tuple[str, str | None], list[str]] = {}
    for rule in rules:
        spec = rule_spec(cfg, rule)
        asked = rule_partition(cfg, rule)
        target = partition_of(parts, asked)
        if target is None:
            key = f"resources.{rule}.partition" if spec.get("partition") else "slurm.partition"
            missing.setdefault((key, asked), []).append(rule)
            continue
        max_time = slurm_minutes(parts[target].get("MaxTime", "UNLIMITED"))
        total = spec["runtime"]
        if max_time is not None and total > max_time and rule not in SLICED_RULES:
            problems.append(
                f"{rule}: asks {total} min (resources.{rule}.runtime), partition {target} allows "
                f"{max_time} min (MaxTime) and this step cannot continue in a new job: lower "
                f"resources.{rule}.runtime or choose another partition"
            )
            continue
        if rule in SLICED_RULES and min(total, max_time or total) * 60 < margin + MIN_SLICE_WORK_S:
            problems.append(
                f"{rule}: a job of {min(total, max_time or total)} min (resources.{rule}.runtime, "
                f"MaxTime of {target}) is too short for slices that stop {margin} s before their "
                f"end (slurm.signal_margin_s)"
            )
            continue
        if target not in nodes_of:
            nodes_of[target] = partition_nodes(target)
        problem = _node_problem(rule, spec, slurm["gpu_model"], target, nodes_of[target])
        if problem:
            problems.append(problem)
            continue
        flags = sbatch_flags(rule_resources(cfg, rule, max_time))
        out = _run("sbatch", "--test-only", *flags, "--wrap=true")
        answer = " ".join((out.stderr + out.stdout).replace("sbatch: error:", "").split())
        if out.returncode != 0 or "to start at" not in answer:
            refusals.setdefault(answer, []).append(f"{rule} ({' '.join(flags)})")
    have = ", ".join(sorted(parts)) or "none"
    for (key, asked), which in missing.items():
        what = f"no partition '{asked}'" if asked else "no default partition"
        problems.insert(
            0, f"{key}: {what} on this cluster (partitions: {have}; rules: {', '.join(which)})"
        )
    for answer, which in refusals.items():
        problems.append(
            f"sbatch --test-only refuses {'; '.join(which)}: {answer} (slurm.partition, "
            "slurm.account, slurm.gpu_model, resources.<rule>)"
        )
    return problems


# --- one owner per step --------------------------------------------------------------------------


def _proc_start(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (None if it does not exist)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def me() -> dict[str, object]:
    """This process as an owner record: its SLURM job (if any), host, pid and start."""
    rec: dict[str, object] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _proc_start(os.getpid()),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if os.environ.get("SLURM_JOB_ID"):
        rec["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return rec


def slurm_job_alive(job: str) -> bool | None:
    """Whether SLURM job `job` is pending or running (None: SLURM cannot be asked here)."""
    if not shutil.which("squeue"):
        return None
    out = _run("squeue", "-h", "-j", job, "-o", "%T")
    if out.returncode != 0:
        # an id slurmctld no longer knows ("Invalid job id specified") has ended
        return False if "Invalid job id" in out.stderr else None
    return any(state.strip() in _LIVE_STATES for state in out.stdout.split())


def owner_alive(rec: Mapping[str, object]) -> bool | None:
    """Whether the owner record names a live process (None: cannot tell from this host)."""
    if rec.get("slurm_job"):
        return slurm_job_alive(str(rec["slurm_job"]))
    if rec.get("host") != socket.gethostname():
        return None
    return _proc_start(int(str(rec["pid"]))) == rec.get("pid_start")


def describe(rec: Mapping[str, object]) -> str:
    """'SLURM job 1234' or 'pid 99 on host h', and what to do about it."""
    if rec.get("what"):
        return f"{rec['what']} already runs as {describe({**rec, 'what': None})}"
    if rec.get("slurm_job"):
        return f"SLURM job {rec['slurm_job']}: wait, or scancel {rec['slurm_job']}"
    return f"pid {rec['pid']} on host {rec['host']}: wait, or kill {rec['pid']}"


def live_owner(target: str | os.PathLike) -> dict | None:
    """The record of another live (or, from here, uncheckable) owner of `target`, else None."""
    path = Path(f"{target}{OWNER_SUFFIX}")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    mine = os.environ.get("SLURM_JOB_ID")
    if mine and rec.get("slurm_job") == mine:  # this job's previous slice (requeued)
        return None
    if rec.get("host") == socket.gethostname() and rec.get("pid") == os.getpid():
        return None  # this process, which ran the step before (tests call steps in-process)
    return rec if owner_alive(rec) is not False else None


def claim(target: str | os.PathLike, what: str) -> None:
    """Record this process as the one writing `target` (in `<target>.owner`) until `release`
    (vcq.cli.run_step, or exit), or refuse with one line, touching nothing, if another live job or
    process does; rank 0 only. Writes one line naming this attempt to the step's log (stderr)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    rec = live_owner(target)
    if rec is not None:
        raise StepError(f"{what} already runs as {describe({**rec, 'what': None})}")
    path = Path(f"{target}{OWNER_SUFFIX}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {**me(), "what": what}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec) + "\n")
    if not _claims:
        atexit.register(release)
    _claims.append(path)
    job = f"SLURM job {rec['slurm_job']}" if "slurm_job" in rec else "no SLURM job"
    print(
        f"=== {rec['since']} {what}: {job}, pid {rec['pid']} on {rec['host']}",
        file=sys.stderr,
        flush=True,
    )


def release() -> None:
    """Remove the owner records this process claimed (at the end of its step)."""
    while _claims:
        _claims.pop().unlink(missing_ok=True)


def running_owners(root: str | os.PathLike) -> dict[str, str]:
    """SLURM job id (or owner file) -> '<step> already runs as <owner>: <what to do>', for every
    live owner record under `root`."""
    lines = {}
    for path in sorted(Path(root).rglob(f"*{OWNER_SUFFIX}")):
        rec = live_owner(str(path)[: -len(OWNER_SUFFIX)])
        if rec is not None:
            key = str(rec.get("slurm_job") or path)
            lines[key] = describe({**rec, "what": rec.get("what") or str(path)})
    return lines


def live_steps(*roots: str) -> list[str]:
    """One line per step writing under `roots` that a live job or process runs: its owner record
    (`claim`) or, before the step has started, the record of its submission."""
    lines = submitted_alive(*roots)
    for root in roots:
        lines |= running_owners(root)
    return list(lines.values())


def run_record(work: str | os.PathLike) -> Path:
    """Where the Snakemake run writing work folder `work` from this directory records itself (keyed
    by the resolved folder: two runs of one experiment name into two folders are two runs)."""
    key = hashlib.sha256(str(Path(work).resolve()).encode()).hexdigest()[:16]
    return Path(".snakemake") / "vcq-runs" / f"{key}.json"


def record_run(experiment: str, work: str | os.PathLike, results: str | os.PathLike) -> None:
    """Record this process as the Snakemake run of `experiment` into `work` (until `end_run`)."""
    path = run_record(work)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {**me(), "experiment": experiment}
    rec |= {"work": str(Path(work).resolve()), "results": str(Path(results).resolve())}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec) + "\n")


def end_run(work: str | os.PathLike) -> None:
    """Remove this process's run record of work folder `work`."""
    path = run_record(work)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def live_runs() -> dict[str, dict]:
    """Resolved work folder -> record of each other Snakemake run from this directory that still
    runs (or that runs on another host, where it cannot be checked)."""
    runs = {}
    for path in sorted(run_record(".").parent.glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if "work" in rec and rec.get("pid") != os.getpid() and owner_alive(rec) is not False:
            runs[rec["work"]] = rec
    return runs


def describe_run(rec: Mapping[str, object]) -> str:
    """'experiment demo (work folder /w/demo), snakemake pid 99 on host h since T'."""
    return (
        f"experiment {rec['experiment']} (work folder {rec['work']}), snakemake pid {rec['pid']} "
        f"on host {rec['host']} since {rec['since']}"
    )


def _locked_files(lock_dir: Path) -> set[str]:
    """Every file named in Snakemake's lock files under `lock_dir` (.snakemake/locks)."""
    files = set()
    for lock in lock_dir.glob("*.lock"):
        try:
            files |= {ln.strip() for ln in lock.read_text().splitlines() if ln.strip()}
        except OSError:
            continue
    return files


def lock_message(lock_dir: str | os.PathLike = ".snakemake/locks") -> str:
    """Our text for Snakemake's LockException: the live runs whose files the lock holds, and
    "wait"; `--unlock` only when no run that could hold it is alive."""
    runs = live_runs()
    files = _locked_files(Path(lock_dir))

    def holds(rec: Mapping) -> bool:
        roots = tuple(f"{r}/" for r in (rec["work"], rec.get("results", rec["work"])))
        return any(os.path.abspath(f).startswith(roots) for f in files)

    holders = [rec for rec in runs.values() if holds(rec)] or list(runs.values())
    if holders:
        who = "; ".join(describe_run(rec) for rec in holders)
        return (
            f"error: files this run would write are locked by a live Snakemake run: {who}: wait "
            "for it to end (`--unlock` would remove a live run's lock)"
        )
    return (
        "error: files this run would write are locked, and no Snakemake run from this directory "
        "is alive: the lock is left over from a killed run; `--unlock` removes it safely"
    )


def patch_lock_message() -> None:
    """Make Snakemake's LockException (which always advises `--unlock`) say `lock_message()`."""
    try:
        import snakemake.exceptions as exceptions
    except ImportError:  # the library without the workflow extra: no Snakemake lock to reword
        return
    if getattr(exceptions.LockException, "_vcq", False):
        return

    class LockException(exceptions.LockException):
        _vcq = True

        def __init__(self) -> None:
            exceptions.WorkflowError.__init__(self, lock_message())

    exceptions.LockException = LockException


# --- snakemake-executor-plugin-slurm workarounds (docs/slurm-plugin-issues.md) ------------------


def _cancelled_as_failed(query: Callable) -> Callable:
    """The plugin's status query with sacct's 'CANCELLED by <uid>' read as 'CANCELLED' (the
    plugin compares whole states, and takes one it does not know for a running job)."""

    async def query_job_status(command: str, logger: object) -> tuple:
        status, duration = await query(command, logger)
        if status is not None:
            status = {j: s.split()[0] for j, s in status.items()}
        return status, duration

    return query_job_status


def _no_failed_node_exclusion(submit: Callable) -> Callable:
    """The plugin's sbatch line without the nodes it collected from failed jobs (only the user's
    --slurm-exclude-failed-nodes): for a job SLURM requeued it reads 'None assigned'."""

    def get_submit_command(job, params, settings=None, failed_nodes=None, array_job=False):  # noqa: ANN001, ANN202
        given = getattr(settings, "exclude_failed_nodes", None) or ""
        nodes = {n.strip() for n in given.split(",") if n.strip()}
        return submit(job, params, settings, nodes, array_job)

    return get_submit_command


def _jobs_dir() -> Path:
    """Where this directory's Snakemake runs record the SLURM jobs they submitted."""
    return Path(".snakemake") / "vcq-jobs"


def _recording_submissions(executor: type) -> None:
    """Make `executor` record each SLURM job it submits (id, rule, outputs) until it ends, so that
    a later run, after this one was killed, finds the jobs it left running (`submitted_alive`)."""
    submitted, succeeded, failed = (
        executor.report_job_submission,
        executor.report_job_success,
        executor.report_job_error,
    )

    def report_job_submission(self, job_info, *args, **kwargs):  # noqa: ANN001, ANN202
        if job_info.external_jobid:
            job = job_info.job
            wildcards = " ".join(str(v) for v in dict(getattr(job, "wildcards_dict", {})).values())
            path = _jobs_dir() / f"{job_info.external_jobid}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            rec = {"what": f"{job.name} {wildcards}".strip(), "outputs": list(map(str, job.output))}
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(rec) + "\n")
        return submitted(self, job_info, *args, **kwargs)

    def ended(report: Callable) -> Callable:
        def report_end(self, job_info, *args, **kwargs):  # noqa: ANN001, ANN202
            if job_info.external_jobid:
                (_jobs_dir() / f"{job_info.external_jobid}.json").unlink(missing_ok=True)
            return report(self, job_info, *args, **kwargs)

        return report_end

    executor.report_job_submission = report_job_submission
    executor.report_job_success = ended(succeeded)
    executor.report_job_error = ended(failed)


def submitted_alive(*roots: str) -> dict[str, str]:
    """SLURM job id -> '<rule> <wildcards> already runs as SLURM job N: ...' for each job that a
    Snakemake run from this directory submitted, that still runs and writes under `roots`."""
    records = {}
    for path in sorted(_jobs_dir().glob("*.json")):
        try:
            records[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    if not records or not shutil.which("squeue"):
        return {}
    out = _run("squeue", "-h", "-o", "%i")  # the jobs still queued, running or completing
    if out.returncode != 0:
        return {}  # SLURM does not answer: nothing can be checked (nor submitted)
    live = set(out.stdout.split())
    lines = {}
    for job, rec in records.items():
        mine = any(o.startswith(tuple(f"{r.rstrip('/')}/" for r in roots)) for o in rec["outputs"])
        if job in live and mine:
            lines[job] = describe({"slurm_job": job, "what": rec["what"]})
        elif job not in live:
            (_jobs_dir() / f"{job}.json").unlink(missing_ok=True)
    return lines


def patch_slurm_plugin() -> None:
    """Fix two bugs of snakemake-executor-plugin-slurm 2.8 in this process (if it is installed):
    a cancelled job is reported as failed, and a node failure adds no `--exclude=None assigned`;
    and record the jobs it submits (`submitted_alive`)."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return
    if getattr(plugin, "_vcq_patched", False):
        return
    plugin.query_job_status = _cancelled_as_failed(plugin.query_job_status)
    plugin.get_submit_command = _no_failed_node_exclusion(plugin.get_submit_command)
    _recording_submissions(plugin.Executor)
    plugin._vcq_patched = True


# --- the Snakemake process inside a job -------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """The pids of every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":  # a zombie has ended, only not been reaped yet
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _exit_when_children_end(grace_s: float) -> None:
    """Exit this process (128 + SIGTERM) once its child processes have ended, at most `grace_s`
    seconds from now."""
    end = time.monotonic() + grace_s
    while _descendants(os.getpid()) and time.monotonic() < end:
        time.sleep(0.5)
    os._exit(128 + signal.SIGTERM)


def exit_with_job(scheduler: type, grace_s: float = 60) -> None:
    """Make SIGTERM end the Snakemake that runs a job's step (`scheduler`: its JobScheduler class):
    once the step has saved and exited, or `grace_s` later. Snakemake's own handler takes the
    scheduler's lock, which the interrupted main thread may hold: it then waits forever (so one
    outlived a job whose node went down), so the exit is a thread of its own, started first."""
    graceful = scheduler.exit_gracefully

    def exit_gracefully(self, *args):  # noqa: ANN001, ANN202
        threading.Thread(target=_exit_when_children_end, args=(grace_s,), daemon=True).start()
        graceful(self, *args)

    scheduler.exit_gracefully = exit_gracefully


# --- command line --------------------------------------------------------------------------------


def workflow_rules(workflow_dir: Path = Path(__file__).parents[1] / "workflow") -> list[str]:
    """The rules of the workflow that run as jobs (every `rule NAME:` but `all`)."""
    names = []
    for smk in sorted((workflow_dir / "rules").glob("*.smk")):
        names += re.findall(r"^rule (\w+):", smk.read_text(), flags=re.M)
    return [n for n in names if n != "all"]


def main(argv: list[str] | None = None) -> None:
    """`python -m vcq.cluster check --configfile CONFIG [--set KEY=VALUE ...]`."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="preflight a config against this SLURM cluster")
    check.add_argument("--configfile", required=True, help="experiment YAML")
    check.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set slurm.partition=gpu (repeatable)",
    )
    args = parser.parse_args(argv)
    if not have_slurm():
        sys.exit("error: no SLURM here (sbatch, scontrol and squeue are not on PATH)")
    try:
        cfg = load_config(args.configfile, args.overrides)
        problems = preflight(cfg, workflow_rules())
    except (ConfigError, StepError) as e:
        sys.exit(f"error: {e}")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{args.configfile}: every rule fits this cluster")


if __name__ == "__main__":
    main()
