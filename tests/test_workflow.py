"""The Snakemake DAG: both the demo and the paper-scale config plan the full pipeline (dry run)."""

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vcq.config import load_config
from vcq.sampling import presets_for

SNAKEMAKE = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def dry_run(config: str, profile: str) -> Counter:
    """Rule name -> job count of a forced dry run (plans every job whether or not outputs exist)."""
    cmd = [SNAKEMAKE, "-n", "--forceall", "--profile", f"workflow/profiles/{profile}",
           "--configfile", config, "--quiet", "rules"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    counts = Counter()
    for line in out.stdout.splitlines():
        m = re.match(r"^\s*(\w+)\s+(\d+)\s*$", line)
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_imagenet_dag_lists_the_whole_paper_pipeline():
    cfg = load_config("config/imagenet/base.yaml")
    n_sched = len(cfg["schedules"])
    n_pairs = sum(len(presets_for(cfg["sampling"], s["name"])) for s in cfg["schedules"])
    counts = dry_run("config/imagenet/base.yaml", "slurm")
    assert counts["train_tokenizer"] == n_sched and counts["train_ar"] == n_sched
    assert counts["encode_tokens"] == 2 * n_sched and counts["measure_entropy"] == n_sched
    assert counts["sample"] == n_pairs and counts["eval_fid"] == n_pairs
    assert counts["linear_probe"] == n_sched and counts["tables"] == 1 and counts["figures"] == 1
    # ImageNet is used in place, after make_dataset has validated the folder into its manifest
    assert counts["make_dataset"] == 1 and "train_feature_net" not in counts


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_demo_dag_generates_its_data_and_demo_features():
    counts = dry_run("config/default.yaml", "local")
    assert counts["make_dataset"] == 1 and counts["train_feature_net"] == 1 and counts["theory"] == 1


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_resume_state_is_never_a_rule_output():
    # Snakemake deletes the outputs of an interrupted job before rerunning it: checkpoints, metrics
    # logs and partial token files must not be outputs, or a resumed run would lose them
    cmd = [SNAKEMAKE, "-n", "--forceall", "--profile", "workflow/profiles/local",
           "--configfile", "config/default.yaml"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    outputs = [p.strip() for line in out.stdout.splitlines() if line.strip().startswith("output:")
               for p in line.split(":", 1)[1].split(",")]
    assert any(p.endswith("/ar/cosine/final.pt") for p in outputs)
    resume_state = [p for p in outputs if re.search(r"(last\.pt|\.jsonl|\.partial|\.chunks)$", p)]
    assert resume_state == []


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
def test_imagenet_quantizer_family_plans_one_row_per_method():
    cfg = load_config("config/imagenet/quantizers.yaml")
    counts = dry_run("config/imagenet/quantizers.yaml", "slurm")
    assert counts["train_tokenizer"] == counts["train_ar"] == len(cfg["schedules"]) == 5
    assert counts["sample"] == sum(len(presets_for(cfg["sampling"], s["name"])) for s in cfg["schedules"])


SCALING = {"config/imagenet/scaling_b_l.yaml": 1, "config/imagenet/scaling_b_xl.yaml": 2,
           "config/imagenet/large.yaml": 2, "config/imagenet/scaling_l_l.yaml": 2,
           "config/imagenet/scaling_l_xl.yaml": 4}  # train_ar nodes of 8 GPUs (App. A: 8/16/16/16/32 GPUs)


@pytest.mark.skipif(not Path(SNAKEMAKE).exists(), reason="snakemake not installed")
@pytest.mark.parametrize("config", list(SCALING))
def test_table5_rows_plan_one_tokenizer_one_ar_and_their_table7_presets(config):
    cfg = load_config(config)
    counts = dry_run(config, "slurm")
    assert [s["name"] for s in cfg["schedules"]] in (["cosine"], ["cosine_large"])
    assert counts["train_tokenizer"] == counts["train_ar"] == counts["measure_entropy"] == 1
    assert counts["encode_tokens"] == 2 and counts["tables"] == 1
    # no CFG grids: one guided Table 7 preset and one unguided
    assert counts["sample"] == counts["eval_fid"] == 2
    assert cfg["resources"]["train_ar"]["gpus"] * cfg["resources"]["train_ar"].get("nodes", 1) == 8 * SCALING[config]
