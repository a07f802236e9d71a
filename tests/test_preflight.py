"""Preflight before the first GPU hour (issue 22 case 8): every external file is a declared input
of the rules that read it and checked when a run starts, one line per missing file; a launcher
the executor cannot give is a config error at start."""

import re
from pathlib import Path

from vcq.config import load_config
from vcq.preflight import external_files, launcher_problems, missing_files

REPO = Path(__file__).resolve().parent.parent


def test_missing_files_name_the_key_the_rules_and_what_to_put_there(tmp_path):
    cfg = load_config(REPO / "config/imagenet/base.yaml")
    cfg["eval"]["inception_weights"] = str(tmp_path / "inception.pth")
    (tmp_path / "inception.pth").write_bytes(b"x")
    keys = {f.key: f.rules for f in external_files(cfg)}
    assert keys == {
        "data.root": ("make_dataset",),
        "tokenizer.train.lpips_weights": ("train_tokenizer",),
        "eval.inception_weights": ("eval_recon", "eval_fid"),
        "eval.reference": ("eval_fid",),
    }
    lines = missing_files(cfg, ["train_tokenizer", "eval_fid"])
    assert lines == [
        "weights/vgg16-397923af.pth not found (tokenizer.train.lpips_weights, read by "
        "train_tokenizer): put torchvision's VGG16 state dict (vgg16-397923af.pth) there",
        "data/imagenet/VIRTUAL_imagenet256_labeled.npz not found (eval.reference, read by "
        "eval_fid): put the FID reference: ADM's reference batch (VIRTUAL_imagenet256_labeled.npz"
        ", openai/guided-diffusion's evaluations) or an image folder there",
    ]
    assert missing_files(cfg, ["sample"]) == []  # only what the jobs to run read
    demo = load_config(REPO / "config/default.yaml")
    assert external_files(demo) == []  # generated data, demo features, no LPIPS


def test_several_nodes_need_slurm():
    cfg = load_config(REPO / "config/imagenet/large.yaml")
    (line,) = launcher_problems(cfg, ["train_ar", "sample"], "local")
    assert line.startswith("resources.train_ar.nodes = 2: more than one node needs the SLURM")
    assert launcher_problems(cfg, ["train_ar"], "slurm") == []
    assert launcher_problems(cfg, ["sample"], "local") == []


def test_a_run_without_its_files_or_launcher_stops_before_its_first_job(run_snakemake, tmp_path):
    # issue 22 case 8: base.yaml planned all its jobs without the weights and the reference
    # batch (the first failure would come at eval_recon, after the tokenizer's 1.3M steps), and
    # large.yaml under the local profile failed at train_ar with `SLURM_JOB_ID: unbound variable`
    paths = f"paths={{work_dir: {tmp_path}/work, results_dir: {tmp_path}/results}}"
    large = "config/imagenet/large.yaml"
    out = run_snakemake("--config", paths, "--cores", "1", config=large, check=False)
    errors = [line for line in out.stderr.splitlines() if "error: " in line]
    assert out.returncode == 1 and len(errors) == 5, out.stderr[-3000:]
    assert [re.match(r"(config )?error: (\S+)", e).group(2) for e in errors] == [
        "data/imagenet",
        "weights/vgg16-397923af.pth",
        "weights/weights-inception-2015-12-05-6726825d.pth",
        "data/imagenet/VIRTUAL_imagenet256_labeled.npz",
        "resources.train_ar.nodes",
    ]
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()
    # a dry run plans the run and says the same as warnings
    dry = run_snakemake("--config", paths, "-n", config=large, check=False)
    assert dry.returncode == 0 and "train_tokenizer" in dry.stdout
    warned = [line for line in dry.stderr.splitlines() if " not found (" in line]
    assert len(warned) == 4 and all(w.startswith("warning: ") for w in warned)


def test_external_files_are_inputs_of_the_rules_that_read_them(run_snakemake, tmp_path):
    files = {
        "lpips": tmp_path / "vgg16.pth",
        "inception": tmp_path / "inception.pth",
        "reference": tmp_path / "ref.npz",
    }
    for f in files.values():
        f.write_bytes(b"x")
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n0").mkdir(parents=True)
    cfg = tmp_path / "base.yaml"
    cfg.write_text(
        f"extends: {REPO / 'config/imagenet/base.yaml'}\n"
        f"data: {{root: {tmp_path / 'imagenet'}}}\n"
        f"tokenizer: {{train: {{lpips_weights: {files['lpips']}}}}}\n"
        f"eval: {{inception_weights: {files['inception']}, reference: {files['reference']}}}\n"
        f"paths: {{work_dir: {tmp_path / 'work'}, results_dir: {tmp_path / 'results'}}}\n"
    )
    out = run_snakemake("-n", config=cfg, profile="slurm", check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    inputs = {}
    for block in re.split(r"^(?:local)?rule (?=\w+:)", out.stdout, flags=re.MULTILINE)[1:]:
        found = re.search(r"^\s+input: (.*)$", block, re.MULTILINE)
        inputs.setdefault(block.split(":", 1)[0], found.group(1) if found else "")
    assert str(tmp_path / "imagenet") in inputs["make_dataset"]
    assert str(files["lpips"]) in inputs["train_tokenizer"]
    assert str(files["inception"]) in inputs["eval_recon"]
    assert str(files["inception"]) in inputs["eval_fid"]
    assert str(files["reference"]) in inputs["eval_fid"]
    assert " not found (" not in out.stderr
