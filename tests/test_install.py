"""The library works from a plain (non-editable) install: schemas and models are package data."""

import fnmatch
import os
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_data_globs() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]["package-data"]["vcq"]


def test_every_schema_and_model_file_is_package_data():
    data = [
        p.relative_to(ROOT / "vcq").as_posix()
        for folder in ("schemas", "model_configs")
        for p in (ROOT / "vcq" / folder).rglob("*")
        if p.is_file()
    ]
    assert any(p.endswith("config.schema.yaml") for p in data) and any("ar_b" in p for p in data)
    missing = [p for p in data if not any(fnmatch.fnmatchcase(p, g) for g in package_data_globs())]
    assert missing == []


def test_checkout_folders_link_to_the_package_data():
    # Snakemake users and the docs keep the template's paths; there is one copy of each file
    assert (ROOT / "workflow" / "schemas").resolve() == ROOT / "vcq" / "schemas"
    assert (ROOT / "config" / "models").resolve() == ROOT / "vcq" / "model_configs"


def test_wheel_install_loads_the_default_config_outside_the_checkout(tmp_path):
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vcq", src / "vcq", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "dist").glob("vcq-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "config" / "default.yaml", elsewhere / "exp.yaml")
    script = (
        "import vcq, vcq.config as c; cfg = c.load_config('exp.yaml'); "
        "print(vcq.__file__); print(cfg['tokenizer']['model']['name'])"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    module_file, model_name = out.stdout.split()
    assert Path(module_file).is_relative_to(target)
    assert model_name == "tokenizer_tiny"
