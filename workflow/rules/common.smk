# Shared helpers: Snakemake's config (resolved and validated), output paths, per-rule resources,
# launchers and the config hashes that rerun a rule when a section it reads changes.
import functools
import hashlib
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import ExecMode

from vcq.preflight import external_files, launcher_problems, missing_files, missing_modules

# Every step's third-party modules must be importable by this interpreter, which the jobs run
# ($VCQ_PYTHON): checked before anything imports torch, so a missing package is one line per
# module now, not a traceback from the first job that needs it (hours into a run).
_MISSING = missing_modules(Path(workflow.basedir).parent / "pipeline_steps")
if _MISSING:
    sys.exit("\n".join(f"error: {line}" for line in _MISSING))

from vcq import cluster
from vcq.config import (
    load_config,
    ConfigError,
    dump_config,
    extends_dir,
    resolve_config,
    rule_spec,
    schedule,
)
from vcq.data.source import source_key
from vcq.doctor import drift_line, environment_record
from vcq.io import atomic_path, write_json
from vcq.paths import Layout
from vcq.report.figures import figures_of
from vcq.report.tables import TABLE_EXTENSIONS, inputs_of, tables_of
from vcq.sampling import expand_presets, run_settings, sampled_pairs

DEFAULT_CONFIG = "config/default.yaml"
CONFIG_FILES = [str(f) for f in workflow.overwrite_configfiles]
# Snakemake's `config` is the config (--configfile, --config, profiles); without a config file the
# demo config lies underneath, as if the command line had said `extends: config/default.yaml`.
_RAW = dict(config) if CONFIG_FILES else {"extends": DEFAULT_CONFIG, **config}
try:
    CFG = resolve_config(
        _RAW,
        extends_dir(CONFIG_FILES, _RAW.get("extends")),
        " + ".join(CONFIG_FILES) or DEFAULT_CONFIG,
    )
except ConfigError as e:
    sys.exit(f"config error: {e}")

# every path of the experiment (vcq.paths, which the steps and the report use too)
PATHS = Layout.of(CFG)
SCHEDULES = [s["name"] for s in CFG["schedules"]]
PRESETS = {p["name"]: p for p in expand_presets(CFG["sampling"])}
# (schedule, preset) pairs to sample and evaluate: a preset may be restricted to some schedules.
PAIRS = sampled_pairs(CFG)
DEMO_FEATURES = CFG["eval"]["feature_extractor"] == "demo"

# Every job reads the resolved config its own run planned with: a content-addressed snapshot,
# work/<experiment>/config/<sha>.yaml, named in the job's command ({RESOLVED_CONFIG:q} in the
# shell lines). It is not a param (editing `resources` would rerun every rule); reruns follow the
# per-rule config hashes below. Only a run that starts jobs writes it (onstart: never a dry run,
# --summary, --unlock, --lint or a run refused by the lock), and never over another run's
# snapshot: jobs still running from an earlier config keep reading theirs. A job that Snakemake
# spawns for a cluster executor reads the snapshot of the run that submitted it (inherited through
# VCQ_CONFIG_SNAPSHOT), even if the config files were edited since.
_RESOLVED_TEXT = dump_config(CFG)
CONFIG_SHA256 = hashlib.sha256(_RESOLVED_TEXT.encode()).hexdigest()
if workflow.exec_mode == ExecMode.DEFAULT or "VCQ_CONFIG_SNAPSHOT" not in os.environ:
    RESOLVED_CONFIG = PATHS.config_snapshot(CONFIG_SHA256[:16])
    os.environ["VCQ_CONFIG_SNAPSHOT"] = RESOLVED_CONFIG
else:
    RESOLVED_CONFIG = os.environ["VCQ_CONFIG_SNAPSHOT"]


def write_config_snapshot():
    """Write this run's config snapshot (once: equal content under an equal name)."""
    if not Path(RESOLVED_CONFIG).exists():
        with atomic_path(RESOLVED_CONFIG) as tmp:
            tmp.write_text(_RESOLVED_TEXT)


# The environment the run starts in: a drift from the lock is one line at start (the run goes on);
# a run that starts jobs records, beside its results, the machine, torch build, each step's thread
# count, the lock's hash and the installed packages' differences from it (each job also logs its
# own CPU, threads and torch build first).
LOCK_FILE = Path(workflow.basedir).parent / "requirements.lock"
if workflow.is_main_process:
    _drift = drift_line(LOCK_FILE)
    if _drift:
        print(f"warning: {_drift}", file=sys.stderr)


def write_environment_record():
    """Write results/<experiment>/environment.json for this run (vcq.doctor.environment_record)."""
    steps = sorted(p.stem for p in (Path(workflow.basedir).parent / "pipeline_steps").glob("*.py"))
    record = environment_record(LOCK_FILE)
    record["step_threads"] = {s: rule_spec(CFG, s)["cpus_per_task"] for s in steps}
    write_json(PATHS.environment(), record)


# The sections that decide results; `resources`, `slurm`, `paths` and `device` only say where and
# how a job runs. `sampling_run` is `sampling` without its presets, which are hashed per {preset}.
_SECTIONS = {
    **{
        k: v
        for k, v in CFG.items()
        if k not in ("resources", "slurm", "paths", "device", "_config_path")
    },
    "sampling_run": run_settings(CFG["sampling"]),
}
RESULT_SECTIONS = [k for k in _SECTIONS if k != "sampling_run"]


def config_hash(*sections, per_schedule=False, per_preset=False):
    """A `params` value: hash of the config sections a rule reads (and of its own {schedule} and
    {preset} entries), so that editing a section reruns exactly the rules that read it."""

    def digest(wildcards):
        part = {k: _SECTIONS[k] for k in sections}
        if per_schedule:
            part["schedule"] = schedule(CFG, wildcards.schedule)
        if per_preset:
            part["preset"] = PRESETS[wildcards.preset]
        return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]

    return digest


# A rule's partition given as `--set-resources RULE:slurm_partition=P` (command line or profile) is
# its `resources.<rule>.partition`: its MaxTime caps the slices and the preflight checks it.
# (Snakemake keeps the value as the text given, a Python expression: 'gpu' with its quotes.)
for _rule, _res in workflow.resource_settings.overwrite_resources.items():
    _part = _res.get("slurm_partition")
    _part = str(getattr(_part, "raw", _part) or "").strip("'\"")
    if _part:
        CFG["resources"].setdefault(_rule, {})["partition"] = _part

# The partition's MaxTime caps each job of a rule that runs in slices (vcq.cluster.SLICED_RULES):
# the config's runtime is the total, and the step requeues itself until it is done.
_MAX_TIME = functools.cache(cluster.partition_max_minutes)


def rule_resources(rule_name, log=None):
    """Snakemake resources of a rule as the SLURM plugin reads them (vcq.cluster.rule_resources).
    With the rule's `log` pattern: a retry after an attempt that ended in an `error:` line (bad
    config, input or checkpoint: it fails again) asks for one CPU and no GPU instead."""
    res = cluster.rule_resources(CFG, rule_name, _MAX_TIME(cluster.rule_partition(CFG, rule_name)))
    if log is None:
        return res
    small = cluster.retry_resources(res)

    def per_attempt(key):
        def value(wildcards, attempt):
            if attempt > 1 and cluster.failed_for_good(log.format(**wildcards)):
                return small[key]
            return res[key]

        return value

    return {key: per_attempt(key) for key in res}


def step_threads(step):
    """`threads` for the rules that run pipeline_steps/<step>.py: the `cpus_per_task` of the
    resources entry named like the step (`default` for the report steps, named otherwise). The step
    sets as many in torch itself (vcq.cli.load_step_config): a job and a run by hand agree."""
    return rule_spec(CFG, step)["cpus_per_task"]


def rule_retries(rule_name):
    """Resubmissions of a failed or timed-out job (None: the profile's `retries`)."""
    return rule_spec(CFG, rule_name).get("retries")


def launcher(rule_name):
    """`python`, or torchrun with one rank per GPU of the job (on every node, through srun)."""
    r = rule_spec(CFG, rule_name)
    gpus, nodes = r["gpus"], r["nodes"]
    python = shlex.quote(sys.executable)
    if gpus * nodes <= 1:
        return python
    # torchrun through vcq.preempt, which ignores SLURM's slice warning (SIGUSR1): only the ranks
    # act on it, also on nodes where the agent does not inherit the workflow's SIG_IGN (below)
    torchrun = f"{python} -m vcq.preempt --nproc_per_node={gpus}"
    if nodes == 1:
        return f"{torchrun} --standalone"
    # One torchrun per node. --overlap: the plugin runs this command inside its own job step,
    # which already holds the allocation; without it the inner srun waits for that step forever.
    head = "$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)"
    return (
        f"srun --overlap --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 {torchrun} "
        f"--nnodes={nodes} --rdzv_id=$SLURM_JOB_ID --rdzv_backend=c10d --rdzv_endpoint={head}:29500"
    )


# How a step runs -- the interpreter and the DDP launchers -- reaches the shell commands as
# environment variables, not as params: moving a run to another virtualenv or to more or fewer
# GPUs reruns no finished job (the global batch size is the config's). The commands `eval` a
# launcher, whose multi-node form finds the head node when the job starts; the step and its
# quoted arguments reach it as "$@" (`set -- ...`), since eval would split a path with a space
# again. Long steps log to a file, so their progress bar never reaches the terminal: they also
# get the terminal as fd 3 (`VCQ_PROGRESS_FD=3 ... 3>&2`) for a step/rate/ETA line every
# $VCQ_PROGRESS_EVERY s.
os.environ["VCQ_PYTHON"] = sys.executable
os.environ[cluster.MARGIN_ENV] = str(CFG["slurm"]["signal_margin_s"])
os.environ["VCQ_LAUNCH_TRAIN_TOKENIZER"] = launcher("train_tokenizer")
os.environ["VCQ_LAUNCH_ENCODE_TOKENS"] = launcher("encode_tokens")
os.environ["VCQ_LAUNCH_TRAIN_AR"] = launcher("train_ar")


envvars:
    "VCQ_PYTHON",
    "VCQ_LAUNCH_TRAIN_TOKENIZER",
    "VCQ_LAUNCH_ENCODE_TOKENS",
    "VCQ_LAUNCH_TRAIN_AR",
    "VCQ_CONFIG_SNAPSHOT",


# Inside a SLURM job, the slice warning (sbatch --signal=USR1@margin, vcq.preempt) reaches every
# process of the job step: Snakemake and the shells it starts ignore it (their children inherit
# SIG_IGN); only a step's ranks, which install a handler, act on it.
# SIGTERM (scancel, a node set down, the time limit) ends that Snakemake once its step has saved and
# exited: its own handler would wait on, outliving the job (vcq.cluster.exit_with_job).
if os.environ.get("SLURM_JOB_ID"):
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if workflow.exec_mode != ExecMode.DEFAULT:
        from snakemake.scheduling.job_scheduler import JobScheduler

        cluster.exit_with_job(JobScheduler)
cluster.patch_slurm_plugin()


# Snakemake tells a dry run from a real one only after parsing (onstart runs for real runs only):
# the parse-time checks read the command line.
DRY_RUN = any(a in ("-n", "--dry-run", "--dryrun") or a.startswith("-n") for a in sys.argv)
# commands that only read the workflow: a live run of the experiment is reported, not refused
_READ_ONLY_FLAGS = ("--lint", "--summary", "-S", "--detailed-summary", "-D", "--report", "--dag")
READ_ONLY = DRY_RUN or any(a.split("=")[0] in _READ_ONLY_FLAGS for a in sys.argv)


def running_elsewhere():
    """At parse time, before Snakemake's lock: one `error:` line per step of this experiment that
    a live job or process writes, or for a live Snakemake run into the same work folder. Runs into
    other work folders go on side by side (their files never overlap, so neither Snakemake's lock
    nor the shared data set stops them); a lock Snakemake still reports gets our own line
    (vcq.cluster.lock_message: who holds it and "wait"). A rerun after a lost login session so
    waits for its orphaned jobs instead of duplicating them."""
    if workflow.exec_mode != ExecMode.DEFAULT:
        return
    cluster.patch_lock_message()
    runs = cluster.live_runs()
    problems = cluster.live_steps(PATHS.work, PATHS.results)
    work = str(Path(PATHS.work).resolve())
    if work in runs:
        problems.insert(0, f"{cluster.describe_run(runs[work])} runs now: wait for it to end")
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    if problems and not READ_ONLY:
        sys.exit(1)


running_elsewhere()


def cluster_start():
    """At the start of a run that starts jobs: under the SLURM executor, every rule against the
    real cluster before the first submission (vcq.cluster.preflight; exit 1 with one line per
    problem); then this run recorded as its experiment's run, and the log folder the long steps
    append to (they have no `log:`, which would create it)."""
    plugin = workflow.executor_plugin
    if plugin is not None and plugin.name == "slurm":
        problems = cluster.preflight(CFG, [r.name for r in workflow.rules if r.name != "all"])
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        if problems:
            sys.exit(1)
    cluster.record_run(CFG["experiment"], PATHS.work, PATHS.results)
    Path(PATHS.log("-")).parent.mkdir(parents=True, exist_ok=True)


onsuccess:
    cluster.end_run(PATHS.work)


onerror:
    cluster.end_run(PATHS.work)


def dataset_ready():
    """The data set's manifest (DATA_MANIFEST, rules/data.smk): generated or validated data."""
    return [DATA_MANIFEST]


def manifest_flag(wildcards, input):
    """`--manifest FILE` (shell-quoted) for the report steps where the rule reads the data manifest."""
    return shlex.join(["--manifest", *input.data]) if input.data else ""


def feature_net():
    """The demo feature network (only when the config evaluates with demo features)."""
    return [CFG["eval"]["demo_weights"]] if DEMO_FEATURES else []


def prologue_ar():
    """The AR model, for probing its prologue tokens (only when the config uses them)."""
    return [PATHS.ar()] if CFG["ar"]["prologue"]["num_tokens"] else []


def per_pair(pattern):
    """`pattern` with {schedule} and {preset} filled for every sampled (schedule, preset) pair."""
    return [pattern.format(schedule=s, preset=p) for s, p in PAIRS]


def per_schedule(pattern):
    """`pattern` with {schedule} filled for every schedule."""
    return [pattern.format(schedule=s) for s in SCHEDULES]


# The tables follow vcq.report.tables.TABLES: `theory` (rule theory), `run` (rule tables) and
# `scaling` (rule table5); the figures follow vcq.report.figures.FIGURES: `theory` (rule theory)
# and `run` (rule figures).
TABLES = [s.name for s in tables_of("run", CFG)]
THEORY_TABLES = [s.name for s in tables_of("theory", CFG)]
SCALING_TABLES = [s.name for s in tables_of("scaling", CFG)]
THEORY_FIGURES = figures_of("theory", CFG)
FIGURES = figures_of("run", CFG)


def captioned(path, category, subcategory=None):
    """`report(path)` with the caption the report step writes beside it (`<stem>.rst`)."""
    caption = os.path.abspath(os.path.splitext(path)[0] + ".rst")
    return report(path, caption=caption, category=category, subcategory=subcategory)


def folder_of(name=None):
    """A `params` value: the folder of the rule's first output (of its output list `name`),
    derived from the output as Snakemake's lint asks, not a second hard-coded path."""
    return lambda wildcards, output: str(Path((output[name] if name else output)[0]).parent)


def table_outputs(names, category):
    """Named outputs of tables: each one's md, csv and tex in the report (captioned by its
    registered title and notes), and its caption file."""
    out = {}
    for t in names:
        for ext in TABLE_EXTENSIONS:
            path = PATHS.table(t, ext)
            out[f"{t}_{ext}"] = path if ext == "rst" else captioned(path, category, t)
    return out


def figure_outputs(specs):
    """Outputs of figures: `figures`, each file in the report (under the figure's category,
    captioned by its registered caption), and `captions`, the caption file of each."""
    return {
        "figures": [
            captioned(PATHS.figure(stem, ext), spec.category)
            for spec in specs
            for stem in spec.files(CFG)
            for ext in spec.formats
        ],
        "captions": [PATHS.figure(stem, "rst") for spec in specs for stem in spec.files(CFG)],
    }


def scaling_inputs():
    """The metric files of Table 5's rows: each row config's recon record and the generation
    records of its schedule's sampled presets."""
    files = []
    for row in CFG["report"]["scaling"]:
        row_cfg = load_config(row["config"])
        layout = Layout.of(row_cfg)
        files += [row["config"], layout.recon(row["schedule"])]
        files += [layout.gen(s, p) for s, p in sampled_pairs(row_cfg) if s == row["schedule"]]
    return files


def report_flags(kinds):
    """A `params` value: `--KIND FILE...` of the rule's inputs named `kinds`, shell-quoted."""

    def flags(wildcards, input):
        return shlex.join(
            [a for k in kinds for a in (f"--{k.replace('_', '-')}", *getattr(input, k))]
        )

    return flags


def final_outputs():
    """Every table and figure and their provenance record (the default target, `all`)."""
    return (
        [PATHS.table(t) for t in THEORY_TABLES + TABLES]
        + [PATHS.figure(stem) for spec in THEORY_FIGURES + FIGURES for stem in spec.files(CFG)]
        + [PATHS.provenance()]
    )


# Every external file a run reads (data folder, LPIPS and Inception weights, FID reference) is an
# input of the rules that read it: `ancient`, since a copied weight file must not retrain a
# tokenizer, and declared only where it exists, so that a dry run still plans without it. A run
# stops at its start, before its first job, with one line per missing file that a job it will run
# reads; a dry run prints the same lines as warnings.
EXTERNAL = external_files(CFG)


def external(rule_name):
    """The existing external files `rule_name` reads (vcq.preflight.external_files)."""
    return [ancient(f.path) for f in EXTERNAL if rule_name in f.rules and Path(f.path).exists()]


if DRY_RUN and workflow.is_main_process:
    for _line in missing_files(CFG, [r for f in EXTERNAL for r in f.rules]):
        print(f"warning: {_line} (a run stops here before its first job)", file=sys.stderr)


def preflight_start():
    """At the start of a run that starts jobs, before the first: the external files of the jobs
    to run, and launchers their executor cannot give (several nodes outside SLURM); one line per
    problem and exit 1."""
    rules = {job.rule.name for job in workflow.dag.needrun_jobs()}
    executor = workflow.executor_plugin.name if workflow.executor_plugin else None
    problems = [f"error: {line}" for line in missing_files(CFG, rules)]
    problems += [f"config error: {line}" for line in launcher_problems(CFG, rules, executor)]
    if problems:
        sys.exit("\n".join(problems))


onstart:
    preflight_start()
    cluster_start()
    write_config_snapshot()
    write_environment_record()
