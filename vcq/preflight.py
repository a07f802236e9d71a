"""Checks the workflow runs once at start, before any job: each says what is wrong in one line."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import vcq

# Import names whose distribution (what pip installs) is named otherwise.
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "torch_fidelity": "torch-fidelity"}
INSTALL_HINT = "pip install --require-hashes -r requirements.lock (README: Install on a cluster)"


def _imported(path: Path) -> set[str]:
    """Absolute module names a Python file imports anywhere in it (functions included; vcq has
    no relative imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from vcq import io` imports the module vcq.io: keep both candidates
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _vcq_file(module: str) -> Path | None:
    """The source file of a vcq module (None when the name is not a vcq module)."""
    root = Path(vcq.__file__).parents[1]
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(script: str | Path) -> set[str]:
    """Top-level modules outside the standard library and vcq that a script needs, following its
    imports through vcq (and every vcq package's __init__ on the way)."""
    seen: set[Path] = set()
    todo, outside = [Path(script)], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(path):
            top = name.split(".")[0]
            if top != "vcq":
                if top not in sys.stdlib_module_names:
                    outside.add(top)
                continue
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = _vcq_file(".".join(parts[:i]))
                if found:
                    todo.append(found)
    return outside


def _findable(module: str) -> bool:
    """Whether this interpreter finds a top-level module (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(steps_dir: str | Path = "pipeline_steps") -> list[str]:
    """One line per third-party module that some step imports and this interpreter (the one the
    jobs run, `$VCQ_PYTHON`) cannot find, naming the steps that need it and how to install it."""
    needed: dict[str, list[str]] = {}
    for script in sorted(Path(steps_dir).glob("*.py")):
        for module in third_party_imports(script):
            needed.setdefault(module, []).append(script.stem)
    return [
        f"module {m} (package {DISTRIBUTIONS.get(m, m)}, needed by {', '.join(steps)}) is not "
        f"installed for {sys.executable}: {INSTALL_HINT}"
        for m, steps in sorted(needed.items())
        if not _findable(m)
    ]
