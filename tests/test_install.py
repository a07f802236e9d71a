"""The library works from a plain (non-editable) install: schemas and models are package data."""

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory) -> Path:
    """A folder holding vcq installed from a wheel (not editable), for PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "vcq", src / "vcq", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp / "dist").glob("vcq-*.whl"))
    target = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    return target


def test_wheel_install_loads_the_default_config_outside_the_checkout(tmp_path, wheel_site):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "config" / "default.yaml", elsewhere / "exp.yaml")
    script = (
        "import vcq, vcq.config as c; cfg = c.load_config('exp.yaml'); "
        "print(vcq.__file__); print(cfg['tokenizer']['model']['name'])"
    )
    env = {**os.environ, "PYTHONPATH": str(wheel_site)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    module_file, model_name = out.stdout.split()
    assert Path(module_file).is_relative_to(wheel_site)
    assert model_name == "tokenizer_tiny"


def test_library_tests_pass_against_the_wheel_install(tmp_path, wheel_site):
    # the config, schedule and tokenizer tests read schemas and model files through the package;
    # a probe test run beside them checks that they imported the wheel, not the checkout
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os, vcq\n"
        "def test_vcq_comes_from_the_wheel():\n"
        "    assert vcq.__file__.startswith(os.environ['VCQ_WHEEL_SITE']), vcq.__file__\n"
    )
    tests = [str(ROOT / "tests" / f"test_{m}.py") for m in ("config", "schedules", "tokenizer")]
    env = {**os.environ, "PYTHONPATH": str(wheel_site), "VCQ_WHEEL_SITE": str(wheel_site)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe), *tests],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    assert " passed" in out.stdout.splitlines()[-1]
