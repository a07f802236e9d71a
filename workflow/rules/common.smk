# Shared helpers: the validated config, output paths, per-rule resources and launchers.
import shlex
import sys
from pathlib import Path

from vcq.config import ConfigError, load_config
from vcq.sampling import expand_presets, presets_for

CONFIG_PATH = str((workflow.overwrite_configfiles or ["config/default.yaml"])[-1])
try:
    CFG = load_config(CONFIG_PATH)
except ConfigError as e:
    sys.exit(f"config error: {e}")

EXP = CFG["experiment"]
W = f"{CFG['paths']['work_dir']}/{EXP}"
R = f"{CFG['paths']['results_dir']}/{EXP}"
SCHEDULES = [s["name"] for s in CFG["schedules"]]
PRESETS = {p["name"]: p for p in expand_presets(CFG["sampling"])}
# (schedule, preset) pairs to sample and evaluate: a preset may be restricted to some schedules.
PAIRS = [(s, p["name"]) for s in SCHEDULES for p in presets_for(CFG["sampling"], s)]
PY = shlex.quote(sys.executable)
STEP = f"{PY} pipeline_steps"
CONF = f"--config {shlex.quote(CONFIG_PATH)}"
DEMO_FEATURES = CFG["eval"]["feature_extractor"] == "demo"


wildcard_constraints:
    schedule="|".join(SCHEDULES),
    preset="|".join(PRESETS) if PRESETS else "^$",
    split="train|val",


def rule_resources(rule_name):
    """Snakemake resources of a rule from the config's `resources` section (SLURM-ready)."""
    r = {"gpus": 0, "nodes": 1, "cpus_per_task": 1, "mem_mb": 4000, "runtime": 60}
    r.update(CFG["resources"].get("default", {}))
    r.update(CFG["resources"].get(rule_name, {}))
    out = {
        "mem_mb": r["mem_mb"],
        "runtime": r["runtime"],
        "cpus_per_task": r["cpus_per_task"],
        "nodes": r["nodes"],
    }
    if r["gpus"] > 0:
        out["gpu"] = r["gpus"]
        out["tasks"] = 1
        if CFG["slurm"]["gpu_model"]:
            out["gpu_model"] = CFG["slurm"]["gpu_model"]
    if CFG["slurm"]["account"]:
        out["slurm_account"] = CFG["slurm"]["account"]
    if CFG["slurm"]["partition"]:
        out["slurm_partition"] = CFG["slurm"]["partition"]
    return out


def launcher(rule_name):
    """`python`, or torchrun over the rule's GPUs (and nodes, through srun) for DDP steps."""
    r = rule_resources(rule_name)
    gpus, nodes = r.get("gpu", 0), r["nodes"]
    if gpus * nodes <= 1:
        return PY
    torchrun = f"{PY} -m torch.distributed.run --nproc_per_node={gpus}"
    if nodes == 1:
        return f"{torchrun} --standalone"
    head = "$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1)"
    return (
        f"srun --ntasks-per-node=1 {torchrun} --nnodes={nodes} "
        f"--rdzv_backend=c10d --rdzv_endpoint={head}:29500"
    )


def dataset_ready():
    """The data set's manifest (DATA_MANIFEST, rules/data.smk): generated or validated data."""
    return [DATA_MANIFEST]


def feature_net():
    """The demo feature network (only when the config evaluates with demo features)."""
    return [CFG["eval"]["demo_weights"]] if DEMO_FEATURES else []


def prologue_ar():
    """The AR model, for probing its prologue tokens (only when the config uses them)."""
    return [f"{W}/ar/{{schedule}}/final.pt"] if CFG["ar"]["prologue"]["num_tokens"] else []


def per_pair(pattern):
    """`pattern` with {schedule} and {preset} filled for every sampled (schedule, preset) pair."""
    return [pattern.format(schedule=s, preset=p) for s, p in PAIRS]


def per_schedule(pattern):
    """`pattern` with {schedule} filled for every schedule."""
    return [pattern.format(schedule=s) for s in SCHEDULES]


TABLES = ["table2", "table4", "table6", "table8_9"]
THEORY_TABLES = ["table1", "table2_theory"] + (["table2_reference"] if CFG["report"]["reference_configs"] else [])
THEORY_FIGURES = ["fig2_theory"] + (["fig2_theory_reference"] if CFG["report"]["reference_configs"] else [])
FIGURES = ["fig2_schedules", "position_loss", "tokenizer_curves", "ar_curves", "codebook_usage"]


def final_outputs():
    return (
        [f"{R}/tables/{t}.md" for t in THEORY_TABLES + TABLES]
        + [f"{R}/figures/{f}.png" for f in THEORY_FIGURES + FIGURES]
        + per_pair(f"{R}/figures/samples_{{schedule}}_{{preset}}.png")
    )


# Long steps log to a file, so their progress bar never reaches the terminal: they also get the
# terminal as fd 3 and write a step/rate/ETA line there every $VCQ_PROGRESS_EVERY s (vcq.training).
HEARTBEAT = "VCQ_PROGRESS_FD=3 "
TERMINAL_PROGRESS = "3>&2"
