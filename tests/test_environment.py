"""The locked environment: declared imports, the lock against pyproject.toml, environment.yml, the
module check at workflow start and each step's thread count."""

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vcq import doctor
from vcq.cli import set_threads, step_threads
from vcq.lock import LOCK_FILE, disagreements, drift, read_lock, requirements_digest, stamp
from vcq.preflight import imported_modules, missing_modules, third_party_imports

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def imported_top_modules(folders: list[Path], optional: bool = False) -> set[str]:
    """Top-level names of the modules imported under `folders`, outside the standard library and
    vcq: the needed ones, or the optional ones (imported under `except ImportError`)."""
    names = {
        name.split(".")[0]
        for folder in folders
        for path in folder.rglob("*.py")
        for name in imported_modules(path, optional)
    }
    return names - set(sys.stdlib_module_names) - {"vcq"}


def undeclared(modules: set[str], requirements: list[str]) -> dict[str, list[str]]:
    """The modules no distribution among `requirements` provides, with the ones that do."""
    declared = {canonicalize_name(Requirement(r).name) for r in requirements}
    providers = metadata.packages_distributions()
    return {
        m: providers.get(m, ["(no installed distribution)"])
        for m in modules
        if not declared & {canonicalize_name(d) for d in providers.get(m, [])}
    }


def test_every_import_of_the_library_and_steps_is_a_declared_dependency():
    code = [ROOT / "vcq", ROOT / "pipeline_steps"]
    needed = imported_top_modules(code)
    assert {"torch", "torch_fidelity", "PIL"} <= needed  # the walk sees the real imports
    assert undeclared(needed, PYPROJECT["project"]["dependencies"]) == {}
    # what the code imports only if it is there (vcq.cluster's SLURM plugin) is an extra's
    extras = [r for rs in PYPROJECT["project"]["optional-dependencies"].values() for r in rs]
    optional = imported_top_modules(code, optional=True)
    assert undeclared(optional, PYPROJECT["project"]["dependencies"] + extras) == {}


def test_an_import_under_except_import_error_is_optional(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import numpy\ntry:\n    import foo.bar\nexcept (ValueError, ImportError):\n    pass\n"
    )
    assert imported_modules(module) == {"numpy"}
    assert imported_modules(module, optional=True) == {"foo.bar"}


def test_the_lock_was_made_from_pyproject_and_satisfies_it():
    assert disagreements(read_lock(ROOT / LOCK_FILE), ROOT / "pyproject.toml") == []


def test_a_pyproject_edit_the_lock_does_not_follow_is_named(tmp_path):
    edited = tmp_path / "pyproject.toml"
    text = (ROOT / "pyproject.toml").read_text()
    edited.write_text(text.replace('"torch==2.14.1"', '"torch==2.15.0"'))
    problems = disagreements(read_lock(ROOT / LOCK_FILE), edited)
    assert len(problems) == 2 and "make lock" in problems[0]
    assert problems[1] == "torch: requirements.lock has 2.14.1, pyproject.toml wants ==2.15.0"


def test_stamp_records_the_requirements_the_lock_was_made_from(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("# made by hand\nsix==1.16.0 \\\n    --hash=sha256:00\n")
    stamp(lock, ROOT / "pyproject.toml")
    assert read_lock(lock).digest == requirements_digest(ROOT / "pyproject.toml")
    stamp(lock, ROOT / "pyproject.toml")  # a second stamp replaces the line
    assert lock.read_text().count("pyproject-requirements-sha256") == 1


def test_torch_and_the_slurm_plugin_are_pinned_exactly():
    pins = read_lock(ROOT / LOCK_FILE).versions()
    wanted = (
        PYPROJECT["project"]["dependencies"]
        + PYPROJECT["project"]["optional-dependencies"]["workflow"]
    )
    assert {"torch==2.14.1", "snakemake-executor-plugin-slurm==2.8.0"} <= set(wanted)
    assert pins["torch"] == "2.14.1" and pins["snakemake-executor-plugin-slurm"] == "2.8.0"


def test_drift_names_each_package_installed_at_another_version(tmp_path):
    lock = tmp_path / "requirements.lock"
    pytest_version = metadata.version("pytest")
    lock.write_text(
        f"pytest=={pytest_version}\n"
        "pyyaml==0.0.1\n"
        "not-a-package-here==1.0\n"
        "torch==0.0.1 ; sys_platform == 'no-such-platform'\n"
    )
    assert drift(read_lock(lock)) == [
        "not-a-package-here: locked 1.0, not installed",
        f"pyyaml: locked 0.0.1, installed {metadata.version('pyyaml')}",
    ]


def test_environment_yml_takes_conda_forge_python_and_pip_and_the_rest_from_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda, pip = [d for d in env["dependencies"] if isinstance(d, str)], env["dependencies"][-1]
    assert conda == ["python=3.11", "pip"]  # requires-python is 3.11: nothing else comes from conda
    assert PYPROJECT["project"]["requires-python"] == ">=3.11,<3.12"
    assert pip == {"pip": ["--require-hashes", f"-r {LOCK_FILE}"]}


def test_no_rule_declares_a_conda_environment():
    # the jobs run $VCQ_PYTHON, the workflow's own interpreter: a conda directive would promise an
    # environment that is built and then not used
    rules = "".join(p.read_text() for p in (ROOT / "workflow").rglob("*.smk"))
    assert "conda:" not in rules and "threads: step_threads(" in rules


def test_a_step_needs_the_modules_its_vcq_imports_need():
    needed = third_party_imports(ROOT / "pipeline_steps" / "eval_fid.py")
    assert {"torch", "torch_fidelity", "numpy"} <= needed and "vcq" not in needed
    assert missing_modules(ROOT / "pipeline_steps") == []


@pytest.fixture
def hidden_torch_fidelity(tmp_path) -> dict:
    """An environment in which `import torch_fidelity` fails as if it were not installed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch_fidelity':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}


def test_a_missing_module_stops_the_workflow_at_start_with_one_line(
    run_snakemake, hidden_torch_fidelity, tmp_path
):
    paths = f"paths={{work_dir: {tmp_path}/w, results_dir: {tmp_path}/r}}"
    out = run_snakemake(
        "-n", "--cores", "1", "--config", paths, env=hidden_torch_fidelity, check=False
    )
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode != 0 and len(errors) == 1, out.stderr[-2000:]
    assert errors[0].startswith("error: module torch_fidelity (package torch-fidelity, needed by ")
    assert "eval_fid" in errors[0] and "requirements.lock" in errors[0]
    assert "train_tokenizer" not in out.stdout  # stopped before planning a job


def test_step_threads_come_from_the_rule_and_are_shared_by_its_ranks(monkeypatch):
    cfg = {"resources": {"default": {"cpus_per_task": 2}, "train_ar": {"cpus_per_task": 64}}}
    assert step_threads(cfg, "make_tables") == 2  # a step no rule is named after: default
    assert step_threads(cfg, "train_ar") == 64
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert step_threads(cfg, "train_ar") == 8 and step_threads(cfg, "make_tables") == 1


def test_set_threads_overrides_the_callers_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def tensors_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The model weights of a tokenizer checkpoint."""
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow  # ~90 s: a workflow run and a run by hand
def test_a_step_run_by_hand_reproduces_the_workflows_artefact_bit_for_bit(run_snakemake, tmp_path):
    # the shell's environment leaves torch free to use every core (2 here); Snakemake gives its job
    # OMP_NUM_THREADS=1: both take the thread count from the config (resources, 1 by default)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(
        yaml.safe_dump(
            {
                "paths": {"work_dir": str(tmp_path / "work"), "results_dir": str(tmp_path / "r")},
                "data": {"root": str(tmp_path / "data"), "train_per_class": 4, "val_per_class": 1},
                "tokenizer": {
                    "train": {"steps": 6, "ckpt_every": 6, "log_every": 1, "peak_steps": 3}
                },
            }
        )
    )
    job_out = tmp_path / "work/demo/tokenizer/constant/final.pt"
    run_snakemake(job_out, "--cores", "2", "--configfile", "config/default.yaml", tiny, env=env)
    snapshot = next((tmp_path / "work/demo/config").glob("*.yaml"))
    hand_out = tmp_path / "hand/final.pt"
    hand = subprocess.run(
        [sys.executable, "pipeline_steps/train_tokenizer.py", "--config", str(snapshot)]
        + ["--schedule", "constant", "--out", str(hand_out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert hand.returncode == 0, hand.stderr[-3000:]
    job_log = (tmp_path / "work/demo/logs/train_tokenizer_constant.log").read_text()
    assert job_log.splitlines()[0] == hand.stderr.splitlines()[0]
    assert job_log.startswith("threads: 1 (resources.train_tokenizer.cpus_per_task) on ")
    job, by_hand = tensors_of(job_out), tensors_of(hand_out)
    assert job.keys() == by_hand.keys()
    assert all(torch.equal(job[k], by_hand[k]) for k in job)


def test_doctor_reports_the_machine_and_fails_on_too_few_gpus(tmp_path, capsys):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"torch=={metadata.version('torch')}\n")
    steps = ["--lock", str(lock), "--steps", str(ROOT / "pipeline_steps")]
    assert doctor.main(steps) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__} (CUDA {torch.version.cuda}" in out
    assert "cpu: " in out and "threads: torch " in out and out.rstrip().endswith("lock's")
    gpus = torch.cuda.device_count()
    assert doctor.main([*steps, "--gpus", str(gpus + 1)]) == 1
    assert f"error: {gpus} GPUs visible, --gpus {gpus + 1} wanted" in capsys.readouterr().err
