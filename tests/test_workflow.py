"""The Snakemake DAG, planned by dry runs, against job lists written out by hand from the configs.

The expectations below are counted from the YAML files, not computed with the workflow's own
helpers (vcq.sampling.expand_presets / presets_for), so a bug there cannot hide here.
"""

import re
from collections import Counter
from pathlib import Path

import pytest

from vcq.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def sample_jobs(jobs) -> Counter:
    """Schedule -> number of `sample` jobs."""
    return Counter(w["schedule"] for rule, w in jobs if rule == "sample")


PER_SCHEDULE = ["train_tokenizer", "eval_recon", "measure_entropy", "linear_probe", "train_ar"]
ONCE = ["make_dataset", "theory", "tables", "figures", "provenance", "all"]


def job_counts(schedules: int, samples: int, **more: int) -> Counter:
    """Jobs per rule: one of each ONCE rule, one per schedule of each PER_SCHEDULE rule, a train and
    a val token file per schedule, `samples` sample jobs each with its FID, and `more`."""
    return Counter(
        encode_tokens=2 * schedules,
        sample=samples,
        eval_fid=samples,
        **dict.fromkeys(ONCE, 1),
        **dict.fromkeys(PER_SCHEDULE, schedules),
        **more,
    )


def test_demo_dag_generates_its_data_and_demo_features(dry_run):
    counts, jobs, _ = dry_run("config/default.yaml", "local")
    # three schedules (constant, linear, cosine); presets nocfg (all), cfg (all), cbcfg (linear,
    # cosine)
    assert counts == job_counts(3, 8, train_feature_net=1)
    pairs = {(w["schedule"], w["preset"]) for rule, w in jobs if rule == "sample"}
    assert pairs == {
        ("constant", "nocfg"),
        ("constant", "cfg"),
        ("linear", "nocfg"),
        ("linear", "cfg"),
        ("linear", "cbcfg"),
        ("cosine", "nocfg"),
        ("cosine", "cfg"),
        ("cosine", "cbcfg"),
    }
    assert {(w["schedule"], w["split"]) for rule, w in jobs if rule == "encode_tokens"} == {
        (s, split) for s in ("constant", "linear", "cosine") for split in ("train", "val")
    }


def test_imagenet_dag_lists_the_whole_paper_pipeline(dry_run):
    counts, jobs, _ = dry_run("config/imagenet/base.yaml", "slurm")
    # per schedule: nocfg + its Table 7 preset; cosine also the Table 8 grids vanilla 5x3,
    # cbpos 6x3, cbcap 6x3, cbeq4 6x1; both constants the Table 9 grid cbcfg 7x4
    expected = {
        "constant16384": 2 + 28,
        "constant8192": 2 + 28,
        "linear": 2,
        "power": 2,
        "cosine": 2 + 15 + 18 + 18 + 6,
    }
    assert sample_jobs(jobs) == expected
    # ImageNet is used in place, after make_dataset has validated the folder into its manifest
    assert counts == job_counts(5, 123)
    cosine = {w["preset"] for rule, w in jobs if rule == "sample" and w["schedule"] == "cosine"}
    assert {"nocfg", "t7-cosine", "vanilla-s5-p1", "cbcap-s13-p2", "cbeq4-s3"} <= cosine
    assert not any(p.startswith(("t7-linear", "cbcfg")) for p in cosine)


def test_resume_state_is_never_a_rule_output(dry_run):
    # Snakemake deletes the outputs of an interrupted job before rerunning it: checkpoints, metrics
    # logs and partial token files must not be outputs, or a resumed run would lose them
    _, _, plan = dry_run("config/default.yaml", "local")
    outputs = [
        p.strip()
        for line in plan.splitlines()
        if line.strip().startswith("output:")
        for p in line.split(":", 1)[1].split(",")
    ]
    assert any(p.endswith("/ar/cosine/final.pt") for p in outputs)
    resume_state = [p for p in outputs if re.search(r"(last\.pt|\.jsonl|\.partial|\.chunks)$", p)]
    assert resume_state == []


def test_imagenet_quantizer_family_plans_one_row_per_method(dry_run):
    counts, jobs, _ = dry_run("config/imagenet/quantizers.yaml", "slurm")
    # nocfg for all five; grid cbcfg 3x3 on the four VCQ-family rows, vanilla 4x3 on bsq18
    assert sample_jobs(jobs) == {
        "cosine": 10,
        "bridge_cosine": 10,
        "leech_cosine": 10,
        "leech_cosine_fact": 10,
        "bsq18": 13,
    }
    assert counts["train_tokenizer"] == counts["train_ar"] == 5 and counts["sample"] == 53


SCALING = {
    "config/imagenet/scaling_b_l.yaml": 1,
    "config/imagenet/scaling_b_xl.yaml": 2,
    "config/imagenet/large.yaml": 2,
    "config/imagenet/scaling_l_l.yaml": 2,
    "config/imagenet/scaling_l_xl.yaml": 4,
}  # train_ar nodes of 8 GPUs (App. A: 8/16/16/16/32 GPUs)


@pytest.mark.parametrize("config", list(SCALING))
def test_table5_rows_plan_one_tokenizer_one_ar_and_their_table7_presets(dry_run, config):
    cfg = load_config(ROOT / config)
    counts, jobs, _ = dry_run(config, "slurm")
    assert [s["name"] for s in cfg["schedules"]] in (["cosine"], ["cosine_large"])
    assert counts["train_tokenizer"] == counts["train_ar"] == counts["measure_entropy"] == 1
    assert counts["encode_tokens"] == 2 and counts["tables"] == 1
    # no CFG grids: one guided Table 7 preset and one unguided
    presets = sorted(w["preset"] for rule, w in jobs if rule == "sample")
    assert counts["eval_fid"] == 2 and len(presets) == 2 and presets[0] == "nocfg"
    assert presets[1].startswith("t7-")
    assert (
        cfg["resources"]["train_ar"]["gpus"] * cfg["resources"]["train_ar"].get("nodes", 1)
        == 8 * SCALING[config]
    )


def test_every_job_writes_where_the_layout_says(dry_run):
    # vcq.paths.Layout is the one place the file layout is written down; the steps' own defaults
    # and the report read it too, so a path renamed there moves everywhere
    from vcq.paths import Layout

    paths = Layout.of(load_config(ROOT / "config/default.yaml"))
    expected = {
        "train_tokenizer": lambda w: [paths.tokenizer(w["schedule"])],
        "eval_recon": lambda w: [paths.recon(w["schedule"]), paths.recon_images(w["schedule"])],
        "encode_tokens": lambda w: [paths.tokens(w["schedule"], w["split"])],
        "measure_entropy": lambda w: [paths.entropy(w["schedule"], e) for e in ("csv", "json")],
        "linear_probe": lambda w: [paths.probe(w["schedule"])],
        "train_ar": lambda w: [paths.ar(w["schedule"]), paths.position_loss(w["schedule"])],
        "sample": lambda w: [paths.samples(w["schedule"], w["preset"])],
        "eval_fid": lambda w: [paths.gen(w["schedule"], w["preset"])],
    }
    _, _, text = dry_run("config/default.yaml", "local")
    checked = 0
    for block in re.split(r"^(?:local)?rule (?=\w+:)", text, flags=re.MULTILINE)[1:]:
        rule = block.split(":", 1)[0]
        if rule not in expected:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE).group(1)
        w = dict(p.split("=", 1) for p in wildcards.split(", "))
        outputs = re.search(r"^\s+output: (.*)$", block, re.MULTILINE).group(1).split(", ")
        assert sorted(outputs) == sorted(expected[rule](w)), rule
        checked += 1
    assert checked == 3 * 5 + 6 + 8 + 8  # per-schedule rules, encode jobs, samples, FIDs
