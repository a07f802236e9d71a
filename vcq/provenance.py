"""The provenance record of an experiment's results: for each table and figure, the config it
was made under, the hashes of the files it was made from and the code version that made it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

import vcq
from vcq.doctor import environment_record
from vcq.io import file_sha256

PROVENANCE_VERSION = 1


def code_version() -> dict:
    """`git describe --always --dirty` and the commit of the checkout vcq is imported from, or
    the package version when it is not a checkout (a plain `pip install .`)."""
    root = Path(vcq.__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD") if (root / ".git").exists() else None
    if commit is None:
        return {"package": vcq.__version__}
    return {
        "package": vcq.__version__,
        "git_describe": git("describe", "--always", "--dirty"),
        "git_commit": commit,
    }


def path_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes; a folder (an external reference) by its listing's stats."""
    from vcq.data.synthetic import folder_hash

    return folder_hash(path, by="stats") if Path(path).is_dir() else file_sha256(path)


def provenance_record(config: str | os.PathLike, products: Iterable[dict]) -> dict:
    """The record: `config` (the run's config snapshot: path and SHA-256), `code` and, per output
    file of each product (`{"rule", "outputs", "inputs"}`), its rule and `{input: sha256}`.

    `environment` is the machine, thread count, torch build and the lock's hash with any
    difference of the installed packages from it (vcq.doctor.environment_record; the lock of the
    checkout vcq is imported from, `missing` for a plain install).
    """
    hashes: dict[str, str] = {}
    outputs = {}
    for product in products:
        inputs = {p: hashes.setdefault(p, path_hash(p)) for p in product["inputs"]}
        for out in product["outputs"]:
            outputs[out] = {"rule": product["rule"], "inputs": inputs}
    return {
        "provenance_version": PROVENANCE_VERSION,
        "config": {"path": str(config), "sha256": file_sha256(config)},
        "code": code_version(),
        "environment": environment_record(
            Path(vcq.__file__).resolve().parents[1] / "requirements.lock"
        ),
        "outputs": outputs,
    }
