"""Checks the workflow runs once at start, before any job: each says what is wrong in one line."""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import vcq

# Import names whose distribution (what pip installs) is named otherwise.
DISTRIBUTIONS = {"PIL": "pillow", "yaml": "pyyaml", "torch_fidelity": "torch-fidelity"}
IMPORT_ERRORS = ("ImportError", "ModuleNotFoundError")
INSTALL_HINT = "pip install --require-hashes -r requirements.lock (README: Install on a cluster)"


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    """Whether an `except` clause catches ImportError (or ModuleNotFoundError)."""
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(t, ast.Name) and t.id in ("ImportError", "ModuleNotFoundError") for t in types
    )


def imported_modules(path: str | Path, optional: bool = False) -> set[str]:
    """Absolute module names a Python file imports anywhere in it (functions included; vcq has no
    relative imports): the ones it needs or, with `optional`, the ones it imports inside a `try`
    that catches ImportError (it works without them)."""
    tree = ast.parse(Path(path).read_text(), str(path))
    guarded = {
        id(n)
        for t in ast.walk(tree)
        if isinstance(t, ast.Try) and any(_catches_import_error(h) for h in t.handlers)
        for stmt in t.body
        for n in ast.walk(stmt)
    }
    names = set()
    for node in ast.walk(tree):
        if (id(node) in guarded) != optional:
            continue
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
        for name in imported_modules(path):
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


class ExternalFile(NamedTuple):
    """A file or folder a run reads but no rule makes, the rules that read it and what it is."""

    path: str
    key: str
    what: str
    rules: tuple[str, ...]


def external_files(cfg: dict) -> list[ExternalFile]:
    """Every external file the config's run reads (data folder, weights, FID reference)."""
    files = []
    if cfg["data"]["source"] == "folder":
        files.append(
            ExternalFile(
                cfg["data"]["root"],
                "data.root",
                "the image folder (train/<class>/ and val/<class>/ image files; README: Your own "
                "images)",
                ("make_dataset",),
            )
        )
    if cfg["tokenizer"]["train"]["lpips_weights"]:
        files.append(
            ExternalFile(
                cfg["tokenizer"]["train"]["lpips_weights"],
                "tokenizer.train.lpips_weights",
                "torchvision's VGG16 state dict (vgg16-397923af.pth)",
                ("train_tokenizer",),
            )
        )
    if cfg["eval"]["feature_extractor"] == "inception":
        files.append(
            ExternalFile(
                cfg["eval"]["inception_weights"],
                "eval.inception_weights",
                "torch-fidelity's Inception-v3 weights "
                "(weights-inception-2015-12-05-6726825d.pth, torch-fidelity's GitHub release)",
                ("eval_recon", "eval_fid"),
            )
        )
    if cfg["eval"]["reference"]:
        files.append(
            ExternalFile(
                cfg["eval"]["reference"],
                "eval.reference",
                "the FID reference: ADM's reference batch (VIRTUAL_imagenet256_labeled.npz, "
                "openai/guided-diffusion's evaluations) or an image folder",
                ("eval_fid",),
            )
        )
    return files


def missing_files(cfg: dict, rules: Iterable[str]) -> list[str]:
    """One line per external file that one of `rules` reads and that does not exist, saying
    where to put what."""
    rules = set(rules)
    return [
        f"{f.path} not found ({f.key}, read by {', '.join(r for r in f.rules if r in rules)}): "
        f"put {f.what} there"
        for f in external_files(cfg)
        if rules.intersection(f.rules) and not Path(f.path).exists()
    ]


def launcher_problems(cfg: dict, rules: Iterable[str], executor: str | None) -> list[str]:
    """One line per rule of `rules` whose resources need a launcher the executor cannot give:
    more than one node (srun + torchrun over the job's nodes) outside a SLURM job."""
    # here, not at the top: the module check above runs before third-party imports (jsonschema)
    from vcq.config import rule_spec

    if executor == "slurm":
        return []
    return [
        f"resources.{r}.nodes = {nodes}: more than one node needs the SLURM "
        f"executor (--profile workflow/profiles/slurm), not {executor or 'this one'}; set "
        f"resources.{r}.nodes: 1 to run {r} on this machine"
        for r in sorted(set(rules))
        if (nodes := rule_spec(cfg, r)["nodes"]) > 1
    ]
