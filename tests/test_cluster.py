"""vcq.cluster without a cluster: time parsing, slice requests, the preflight's verdicts on a
described cluster, one owner per step, and the two snakemake-executor-plugin-slurm workarounds.
(The same against a real slurmctld: tests/slurm/cluster_checks.py.)"""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from vcq import cluster
from vcq.config import load_config
from vcq.io import StepError


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("UNLIMITED", None), ("30", 30), ("1:30", 2), ("2:00:00", 120), ("2-00:00:00", 2880)],
)
def test_slurm_minutes(text, minutes):
    assert cluster.slurm_minutes(text) == minutes


def test_long_steps_ask_at_most_maxtime_and_get_the_warning():
    cfg = load_config("config/imagenet/base.yaml", ["slurm.signal_margin_s=120"])
    tok = cluster.rule_resources(cfg, "train_tokenizer", max_time=1440)
    assert tok["runtime"] == 1440  # the config's 4320 min are the total of three slices
    assert "--signal=USR1@120" in tok["slurm_extra"].split()
    fid = cluster.rule_resources(cfg, "eval_fid", max_time=60)
    assert fid["runtime"] == cfg["resources"]["eval_fid"]["runtime"]
    assert "--signal" not in fid["slurm_extra"]


def _fake_cluster(monkeypatch, max_time="1-00:00:00", node=(16, 64000, {"": 4}), answer=None):
    """A cluster of two identical nodes in partition `gpu` whose sbatch --test-only answers."""
    monkeypatch.setattr(
        cluster, "partitions", lambda: {"gpu": {"Default": "YES", "MaxTime": max_time}}
    )
    monkeypatch.setattr(cluster, "partition_nodes", lambda p: [node, node])
    said = answer or "sbatch: Job 3 to start at 2030-01-01T00:00:00"

    def run(*cmd):
        return subprocess.CompletedProcess(cmd, 0 if answer is None else 1, "", said)

    monkeypatch.setattr(cluster, "_run", run)


def test_preflight_refuses_what_no_node_offers_and_a_runtime_no_slice_can_hold(monkeypatch):
    _fake_cluster(monkeypatch, max_time="60")
    cfg = load_config(
        "config/imagenet/base.yaml", ["resources.eval_fid.runtime=90", "slurm.account=null"]
    )
    problems = cluster.preflight(cfg, ["train_tokenizer", "eval_fid", "measure_entropy"])
    assert len(problems) == 2, problems
    tok, fid = problems
    assert tok.startswith("train_tokenizer: asks 1 node(s) with 64 CPUs") and "8 GPUs" in tok
    assert "largest offer 16 CPUs, 64000 MB, 4 GPUs" in tok
    assert fid.startswith("eval_fid: asks 90 min (resources.eval_fid.runtime)")
    assert "allows 60 min (MaxTime)" in fid


def test_preflight_passes_on_sbatchs_refusal(monkeypatch):
    _fake_cluster(monkeypatch, node=(128, 10**6, {"": 8}), answer="sbatch: error: Invalid qos")
    cfg = load_config("config/imagenet/base.yaml", ["slurm.account=null"])
    (line,) = cluster.preflight(cfg, ["train_tokenizer", "train_ar"])
    assert line.startswith("sbatch --test-only refuses train_tokenizer (")
    assert "; train_ar (" in line and line.rstrip(")").endswith("resources.<rule>")


def test_preflight_checks_each_rules_own_partition(monkeypatch):
    parts = {"cpu": {"Default": "YES", "MaxTime": "60"}, "gpu": {"MaxTime": "1-00:00:00"}}
    monkeypatch.setattr(cluster, "partitions", lambda: parts)
    offers = {"cpu": [(16, 64000, {})], "gpu": [(128, 10**6, {"": 8})]}
    monkeypatch.setattr(cluster, "partition_nodes", lambda p: offers[p])
    tested = []

    def run(*cmd):
        tested.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "sbatch: Job 3 to start at 2030-01-01")

    monkeypatch.setattr(cluster, "_run", run)
    sets = ["slurm.account=null", "resources.train_tokenizer.partition=gpu"]
    cfg = load_config("config/imagenet/base.yaml", sets)
    # the tokenizer is checked on `gpu` (8 GPUs, slices of its MaxTime, a day); eval_recon, with
    # no partition of its own, on `cpu` (the default), whose MaxTime and nodes it exceeds
    problems = cluster.preflight(cfg, ["train_tokenizer", "eval_recon"])
    assert len(problems) == 1 and problems[0].startswith("eval_recon: asks 240 min")
    assert "partition cpu allows 60 min (MaxTime)" in problems[0]
    (tok,) = [c for c in tested if "-p" in c]
    assert tok[tok.index("-p") + 1 :][:3] == ("gpu", "-t", "1440")
    assert cluster.rule_resources(cfg, "train_tokenizer", 1440)["slurm_partition"] == "gpu"
    # a partition the cluster lacks: one line naming the key and the rules
    cfg = load_config("config/imagenet/base.yaml", [*sets[:1], "resources.train_ar.partition=a100"])
    (line,) = [p for p in cluster.preflight(cfg, ["train_ar", "eval_fid"]) if "a100" in p]
    assert line == (
        "resources.train_ar.partition: no partition 'a100' on this cluster (partitions: cpu, gpu;"
        " rules: train_ar)"
    )


def test_a_second_copy_refuses_while_the_first_lives(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    out = tmp_path / "final.pt"
    parent = os.getppid()
    rec = {"host": cluster.me()["host"], "pid": parent, "pid_start": cluster._proc_start(parent)}
    (tmp_path / "final.pt.owner").write_text(json.dumps(rec))
    with pytest.raises(StepError, match=rf"^train_tokenizer for demo already runs as pid {parent}"):
        cluster.claim(out, "train_tokenizer for demo")
    assert json.loads((tmp_path / "final.pt.owner").read_text()) == rec  # untouched


def test_a_dead_owner_is_replaced(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    rec = {"host": cluster.me()["host"], "pid": int(done.stdout), "pid_start": "1"}
    (tmp_path / "final.pt.owner").write_text(json.dumps(rec))
    cluster.claim(tmp_path / "final.pt", "train_tokenizer for demo")
    assert json.loads((tmp_path / "final.pt.owner").read_text())["pid"] == os.getpid()


def test_a_live_slurm_job_owns_its_step_and_its_next_slice_takes_over(tmp_path, monkeypatch):
    rec = {"slurm_job": "1234", "host": "n1", "pid": 7, "what": "encode_tokens c val for demo"}
    (tmp_path / "x.h5.owner").write_text(json.dumps(rec))
    monkeypatch.setattr(cluster, "slurm_job_alive", lambda job: True)
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    with pytest.raises(StepError, match="already runs as SLURM job 1234: wait, or scancel 1234"):
        cluster.claim(tmp_path / "x.h5", "encode_tokens")
    assert cluster.live_steps(str(tmp_path)) == [
        "encode_tokens c val for demo already runs as SLURM job 1234: wait, or scancel 1234"
    ]
    monkeypatch.setenv("SLURM_JOB_ID", "1234")  # the same job, requeued for its next slice
    cluster.claim(tmp_path / "x.h5", "encode_tokens")


def test_plugin_workarounds():
    async def query(command, logger):
        return {"1": "CANCELLED by 0", "2": "RUNNING", "3": "NODE_FAIL"}, 0.1

    status, _ = asyncio.run(cluster._cancelled_as_failed(query)("sacct", None))
    assert status == {"1": "CANCELLED", "2": "RUNNING", "3": "NODE_FAIL"}

    seen = {}

    def submit(job, params, settings=None, failed_nodes=None, array_job=False):
        seen["nodes"] = failed_nodes
        return "sbatch"

    settings = SimpleNamespace(exclude_failed_nodes="bad1, bad2")
    cluster._no_failed_node_exclusion(submit)(None, {}, settings, {"None assigned"})
    assert seen["nodes"] == {"bad1", "bad2"}


def test_a_slice_that_starts_inside_its_margin_stops_at_once(monkeypatch):
    import signal

    from vcq import preempt

    monkeypatch.setattr(preempt, "_state", {"signal": None})
    monkeypatch.setattr(signal, "signal", lambda sig, handler: None)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv(cluster.MARGIN_ENV, "300")
    monkeypatch.setattr(preempt, "time_left_s", lambda job: 340)
    preempt.install()
    assert not preempt.signalled()
    # SLURM warns between 300 and 330 s before the end: it may have warned before the handler
    monkeypatch.setattr(preempt, "time_left_s", lambda job: 320)
    preempt.install()
    assert preempt.signalled()


def test_a_last_pt_of_random_bytes_is_called_unreadable_not_python_objects(tmp_path):
    from vcq.train.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert "unreadable checkpoint (damaged or not a torch checkpoint)" in str(e.value)
    assert "Python objects" not in str(e.value)


def test_only_an_attempt_that_ended_in_an_error_line_is_retried_without_gpus(tmp_path):
    log = tmp_path / "train_tokenizer_c.log"
    log.write_text("=== slice 1\nerror: an old error\n=== slice 2\nTraceback ...\nKilled\n")
    assert cluster.failed_for_good(log) is None  # a crash may pass on a retry
    with log.open("a") as f:
        f.write("=== slice 3\nerror: work/last.pt: unreadable checkpoint (damaged ...)\n")
    assert cluster.failed_for_good(log).startswith("error: work/last.pt: unreadable")
    assert cluster.failed_for_good(tmp_path / "none.log") is None
    res = {"gres": "gpu:8", "cpus_per_task": 64, "mem_mb": 480000, "runtime": 1440, "nodes": 2}
    small = cluster.retry_resources(res)
    assert small == {"gres": "", "cpus_per_task": 1, "mem_mb": 2000, "runtime": 10, "nodes": 1}


@pytest.mark.parametrize(("sig", "requeues"), [("SIGUSR1", True), ("SIGTERM", False)])
def test_only_the_slice_warning_requeues_the_job(monkeypatch, sig, requeues):
    import signal

    from vcq import preempt

    calls = []
    monkeypatch.setattr(preempt, "_state", {"signal": getattr(signal, sig)})
    monkeypatch.setattr(signal, "signal", lambda s, h: None)
    monkeypatch.setattr(preempt, "REQUEUE_WAIT_S", 0)
    # end_slice flushes the root logger's handlers: not those earlier tests left on closed streams
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    done = SimpleNamespace(returncode=0)
    monkeypatch.setattr(preempt.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or done)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with pytest.raises(SystemExit) as e:
        preempt.end_slice("train_tokenizer c at step 9")
    assert e.value.code == preempt.EXIT_SLICE
    assert calls == ([["scontrol", "requeue", "42"]] if requeues else [])  # scancel stays cancelled


def test_jobs_a_killed_run_submitted_are_found_before_their_steps_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports = []

    class Executor:
        def report_job_submission(self, job_info):
            reports.append("submitted")

        def report_job_success(self, job_info):
            reports.append("success")

        def report_job_error(self, job_info, msg=None):
            reports.append("error")

    cluster._recording_submissions(Executor)
    job = SimpleNamespace(name="train_tokenizer", wildcards_dict={"schedule": "c"})
    job.output = ["work/demo/tokenizer/c/final.pt"]
    info = SimpleNamespace(job=job, external_jobid="77")
    Executor().report_job_submission(info)
    queue = SimpleNamespace(returncode=0, stdout="77\n", stderr="")
    monkeypatch.setattr(cluster, "_run", lambda *cmd: queue)
    line = "train_tokenizer c already runs as SLURM job 77: wait, or scancel 77"
    assert cluster.live_steps("work/demo", "results/demo") == [line]
    assert cluster.live_steps("work/other") == []  # another experiment's job
    Executor().report_job_success(info)
    assert cluster.live_steps("work/demo") == [] and reports == ["submitted", "success"]


# --- experiments side by side (issue 26 case 8) ---------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
needs_snakemake = pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")


def _snakemake_cmd(tmp: Path, experiment: str, *args: str) -> list[str]:
    """The tiny CI config as `experiment`, its work, results and data under `tmp`."""
    return [
        SNAKEMAKE,
        "--profile",
        "workflow/profiles/local",
        "--cores",
        "1",
        *args,
        "--configfile",
        ".test/config/config.yaml",
        "--config",
        f"experiment={experiment}",
        f"paths={{work_dir: {tmp}/work, results_dir: {tmp}/results}}",
        f"data={{root: {tmp}/data}}",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_runs_are_keyed_by_their_work_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cluster.record_run("demo", "a/work/demo", "a/results/demo")
    rec = json.loads(cluster.run_record("a/work/demo").read_text())
    monkeypatch.setattr(os, "getpid", lambda: -1)  # seen from another Snakemake process
    runs = cluster.live_runs()
    assert (
        list(runs) == [str(tmp_path / "a/work/demo")] and runs[rec["work"]]["experiment"] == "demo"
    )
    # a `demo` run into another work folder is another run; the same folder is the same run
    assert cluster.run_record("b/work/demo") != cluster.run_record("a/work/demo")
    assert cluster.run_record("a/work/../work/demo") == cluster.run_record("a/work/demo")


@needs_snakemake
def test_two_experiments_on_one_data_root_run_side_by_side(tmp_path):
    # Snakemake locks the files a run reads and writes (.snakemake/locks); two experiments share
    # none (each has its own work folder and manifest copy), and the data set both read is made
    # once by whichever make_dataset comes first, the other waiting for it.
    procs = {}
    for exp in ("one", "two"):
        log = open(tmp_path / f"{exp}.log", "w")  # noqa: SIM115 (closed below)
        cmd = _snakemake_cmd(tmp_path, exp, "--until", "make_dataset")
        procs[exp] = (subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=log, stderr=log), log)
    locks, most = REPO / ".snakemake" / "locks", 0
    while any(p.poll() is None for p, _ in procs.values()):
        most = max(most, len(list(locks.glob("*.output.lock"))))
        time.sleep(0.05)
    for exp, (p, log) in procs.items():
        log.close()
        text = (tmp_path / f"{exp}.log").read_text()
        assert p.returncode == 0, text[-3000:]
        assert "LockException" not in text and "--unlock" not in text
        assert (tmp_path / f"work/{exp}/data/manifest.json").is_file()
    assert most >= 2  # both held their locks at the same time
    made = [
        (tmp_path / f"work/{exp}/logs/make_dataset.log")
        .read_text()
        .count("generated the synthetic")
        for exp in procs
    ]
    assert sorted(made) == [0, 1]


@needs_snakemake
def test_a_lock_of_a_live_run_says_wait_and_only_a_left_over_one_unlock(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    ours = f"{tmp_path}/work/mine/data/manifest.json"  # a file the new run writes
    lock = REPO / ".snakemake/locks" / f"{90000 + os.getpid() % 10000}.output.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(ours + "\n")
    cmd = _snakemake_cmd(tmp_path, "mine", "--until", "make_dataset")
    try:
        # a live run (this test's process) of another experiment writing the same file
        cluster.record_run("other", tmp_path / "work/other", tmp_path / "results/other")
        live = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
        cluster.end_run(tmp_path / "work/other")
        stale = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    finally:
        lock.unlink(missing_ok=True)
        cluster.end_run(tmp_path / "work/other")
    (line,) = [ln for ln in live.stderr.splitlines() if ln.startswith("error:")]
    assert live.returncode != 0 and "locked by a live Snakemake run: experiment other" in line
    assert f"snakemake pid {os.getpid()}" in line and "wait for it to end" in line
    assert "It can be removed with the --unlock argument" not in live.stderr
    assert "removes it safely" not in live.stderr
    assert stale.returncode != 0 and "`--unlock` removes it safely" in stale.stderr
    assert not (tmp_path / "work/mine/data").exists()  # neither run touched anything


def test_a_data_set_asked_for_twice_at_once_is_generated_once(tmp_path):
    from vcq.data.source import images_root, preparing
    from vcq.data.synthetic import _generate_into

    data = {"source": "synthetic", "root": str(tmp_path), "num_classes": 2, "train_per_class": 2}
    data |= {"val_per_class": 1, "image_size": 8, "seed": 0}
    final = images_root(data)
    second = (
        "import logging, sys; logging.basicConfig(level=logging.INFO); "
        "from vcq.data.synthetic import generate_once; print('ready', flush=True); "
        "generate_once(eval(sys.argv[1]))"
    )
    with preparing(tmp_path):  # the first job, generating
        proc = subprocess.Popen(
            [sys.executable, "-c", second, repr(data)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)
        assert proc.poll() is None and not final.exists()  # the second waits
        _generate_into(final, data)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "generated the synthetic set" not in err  # it found the first job's set
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]


@pytest.mark.parametrize(
    ("raise_", "for_good"),
    [
        ("raise KeyError('lr')", True),  # a bug or bad value: a retry fails the same way
        ("raise ValueError('bad')", True),
        ("raise RuntimeError('CUDA error: an illegal memory access')", False),  # may pass
        ("raise OSError(5, 'Input/output error')", False),
    ],
)
def test_an_uncaught_deterministic_exception_is_not_retried_on_gpus(tmp_path, raise_, for_good):
    step = f"from vcq.cli import run_step\ndef main():\n    {raise_}\nrun_step(main)\n"
    log = tmp_path / "train_tokenizer_c.log"
    with log.open("w") as f:
        f.write("=== attempt 1\n")
        f.flush()
        rc = subprocess.run([sys.executable, "-c", step], env=_env(), stderr=f).returncode
    text = log.read_text()
    assert rc != 0 and "Traceback (most recent call last)" in text
    line = cluster.failed_for_good(log)
    if for_good:
        assert line.startswith(f"error: uncaught {raise_.split()[1].split('(')[0]}: ")
    else:
        assert line is None


@pytest.mark.parametrize(("step_s", "grace_s", "waits"), [(2, 30, 2), (60, 2, 2)])
def test_the_snakemake_in_a_job_exits_on_sigterm_once_its_step_has(step_s, grace_s, waits):
    # A stand-in for the Snakemake in a job, running a step of `step_s` seconds, must exit after
    # the step (or after `grace_s`) on SIGTERM. Snakemake's handler takes the scheduler's lock,
    # which the main thread may hold when the signal comes: it then waits forever (so one outlived
    # its job on the test cluster).
    script = f"""
import signal, subprocess, sys, threading, time
from vcq import cluster
class Scheduler:
    def __init__(self):
        self._lock = threading.Lock()
    def exit_gracefully(self, *args):
        with self._lock:
            self.stopping = True
cluster.exit_with_job(Scheduler, grace_s={grace_s})
scheduler = Scheduler()
signal.signal(signal.SIGTERM, scheduler.exit_gracefully)
step = subprocess.Popen(["sleep", "{step_s}"])
with scheduler._lock:
    print("ready", flush=True)
    while True:
        time.sleep(1)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "ready\n"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    assert rc == 128 + signal.SIGTERM and time.monotonic() - start >= waits - 0.5


def test_a_lock_message_names_the_live_run_whose_files_are_locked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cluster.record_run("a", "work/a", "results/a")
    cluster.record_run("b", "work/b", "results/b")
    monkeypatch.setattr(os, "getpid", lambda: -1)  # seen from another Snakemake process
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks/0.output.lock").write_text("results/b/tables/table1.md\n")
    line = cluster.lock_message(tmp_path / "locks")
    assert "live Snakemake run: experiment b (work folder" in line and "experiment a " not in line
    assert line.endswith("wait for it to end (`--unlock` would remove a live run's lock)")
