"""The sbatch lines snakemake-executor-plugin-slurm builds for every paper-scale rule.

Snakemake runs the whole DAG through the real plugin against stub SLURM commands on PATH (see
tests/slurm/sbatch_stub.py, shared with the real-cluster checks in tests/slurm/cluster_checks.py).
"""

from pathlib import Path

import pytest
from slurm.sbatch_stub import REPO, SNAKEMAKE, submit_all

from vcq.config import load_config


def flag(args: list[str], name: str) -> str | None:
    """The value of `name` in an sbatch argument list (`--x v` or `--x=v`), or None."""
    for i, a in enumerate(args):
        if a == name:
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def request(args: list[str]) -> dict:
    """What an sbatch line asks SLURM for, in total over the job's nodes."""
    assert flag(args, "--ntasks-per-gpu") is None and flag(args, "--gpus") is None, args
    nodes = int(flag(args, "--nodes"))
    # without --ntasks sbatch starts one task per node
    tasks = int(flag(args, "--ntasks") or nodes)
    gres = flag(args, "--gres")
    gpus_per_node = int(gres.rsplit(":", 1)[1]) if gres else 0
    return {
        "cpus": tasks * int(flag(args, "--cpus-per-task")),
        "gpus": nodes * gpus_per_node,
        "gres": gres,
        "nodes": nodes,
        "mem_mb_per_node": int(flag(args, "--mem")),
        "minutes": int(flag(args, "-t")),
        "partition": flag(args, "-p"),
        "account": flag(args, "-A"),
        "requeue": "--requeue" in args,
    }


def expected(cfg: dict, rule: str, gpu_model: str | None = None) -> dict:
    """The request the config means: its resources are per node, with one task per node."""
    r = {"gpus": 0, "nodes": 1, "cpus_per_task": 1, "mem_mb": 4000, "runtime": 60}
    r |= cfg["resources"].get("default", {}) | cfg["resources"].get(rule, {})
    gres = None
    if r["gpus"]:
        gres = f"gpu:{gpu_model}:{r['gpus']}" if gpu_model else f"gpu:{r['gpus']}"
    return {
        "cpus": r["cpus_per_task"] * r["nodes"],
        "gpus": r["gpus"] * r["nodes"],
        "gres": gres,
        "nodes": r["nodes"],
        "mem_mb_per_node": r["mem_mb"],
        "minutes": r["runtime"],
    }


PAPER_RULES = {
    "make_dataset",
    "theory",
    "train_tokenizer",
    "eval_recon",
    "encode_tokens",
    "measure_entropy",
    "train_ar",
    "sample",
    "eval_fid",
    "linear_probe",
    "tables",
    "figures",
    "provenance",
}


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_base_sbatch_lines_with_account_partition_and_gpu_model_overrides(tmp_path):
    cfg = load_config(REPO / "config/imagenet/base.yaml")
    # a second config file merges over the first: without the CFG grids the DAG keeps every rule
    # in a quarter of the jobs
    (tmp_path / "no_grids.yaml").write_text("sampling: {grids: []}\n")
    calls = submit_all(
        tmp_path,
        "config/imagenet/base.yaml",
        str(tmp_path / "no_grids.yaml"),
        extra=("--config", "slurm={account: vcq, partition: gpu, gpu_model: a100}"),
    )
    assert set(calls) == PAPER_RULES
    for rule, jobs in calls.items():
        for args in jobs:
            got = request(args)
            assert got == expected(cfg, rule, "a100") | {
                "partition": "gpu",
                "account": "vcq",
                "requeue": True,
            }, rule
    # the paper's 8-GPU jobs: 64 or 32 CPUs in all, not 8 x that
    assert request(calls["train_tokenizer"][0])["cpus"] == 64
    assert request(calls["train_ar"][0])["gres"] == "gpu:a100:8"
    # the jobs themselves parse the same overridden config
    assert any("slurm=" in a or "--config" in a for a in calls["train_ar"][0][-1].split())


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_large_sbatch_lines_multi_node_ar(tmp_path):
    cfg = load_config(REPO / "config/imagenet/large.yaml")
    calls = submit_all(tmp_path, "config/imagenet/large.yaml")
    assert set(calls) == PAPER_RULES
    for rule, jobs in calls.items():
        for args in jobs:
            assert request(args) == expected(cfg, rule) | {
                "partition": None,
                "account": None,
                "requeue": True,
            }, rule
    ar = request(calls["train_ar"][0])
    assert (ar["nodes"], ar["gpus"], ar["cpus"], ar["gres"]) == (2, 16, 64, "gpu:8")
