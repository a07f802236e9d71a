"""The locked environment: requirements.lock against pyproject.toml and the live environment.

python -m vcq.lock check   # the lock was made from this pyproject.toml and satisfies it (CI)
python -m vcq.lock stamp   # record pyproject.toml's requirements in the lock (`make lock`)
python -m vcq.lock drift   # installed versions that differ from the lock, one line each
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK_FILE = "requirements.lock"
PYPROJECT = "pyproject.toml"
# The line `make lock` adds to the lock: which pyproject requirements it was resolved from.
DIGEST_PREFIX = "# pyproject-requirements-sha256: "


@dataclass(frozen=True)
class Pin:
    """One `name==version ; marker` line of the lock."""

    name: str
    version: str
    marker: str | None

    def applies(self) -> bool:
        """Whether this pin is for the running interpreter and platform."""
        return self.marker is None or Marker(self.marker).evaluate()


@dataclass(frozen=True)
class Lock:
    """A parsed lock file: its pins, its recorded pyproject digest and its own hash."""

    pins: tuple[Pin, ...]
    digest: str | None
    sha256: str

    def versions(self) -> dict[str, str]:
        """Locked version by canonical name, for the pins that apply here."""
        return {p.name: p.version for p in self.pins if p.applies()}


def declared(pyproject: str | Path = PYPROJECT) -> dict:
    """requires-python, dependencies and every optional-dependency list of a pyproject.toml."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }


def requirements_digest(pyproject: str | Path = PYPROJECT) -> str:
    """sha256 of what a pyproject.toml declares (comments and tool settings do not count)."""
    text = json.dumps(declared(pyproject), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def read_lock(path: str | Path = LOCK_FILE) -> Lock:
    """Parse a hashed requirements file (`uv pip compile --generate-hashes` output)."""
    text = Path(path).read_text()
    pins, digest = [], None
    # a requirement continues over lines ending in a backslash (its --hash options)
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith(DIGEST_PREFIX):
            digest = line[len(DIGEST_PREFIX) :].strip()
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        spec = line.split(" --hash", 1)[0].strip()
        req = Requirement(spec)
        version = str(req.specifier).removeprefix("==")
        pins.append(Pin(canonicalize_name(req.name), version, str(req.marker or "") or None))
    return Lock(tuple(pins), digest, hashlib.sha256(text.encode()).hexdigest())


def disagreements(lock: Lock, pyproject: str | Path = PYPROJECT) -> list[str]:
    """Why a lock does not belong to a pyproject.toml, one line each (empty: it does)."""
    problems = []
    if lock.digest != requirements_digest(pyproject):
        problems.append(
            f"{LOCK_FILE} was not made from {PYPROJECT}'s requirements (run `make lock`)"
        )
    d = declared(pyproject)
    wanted = list(d["dependencies"]) + [r for rs in d["optional-dependencies"].values() for r in rs]
    for text in wanted:
        req = Requirement(text)
        locked = [p.version for p in lock.pins if p.name == canonicalize_name(req.name)]
        if not locked:
            problems.append(f"{req.name}: declared in {PYPROJECT}, not in {LOCK_FILE}")
        elif not any(req.specifier.contains(Version(v), prereleases=True) for v in locked):
            has = ", ".join(locked)
            problems.append(f"{req.name}: {LOCK_FILE} has {has}, {PYPROJECT} wants {req.specifier}")
    return problems


def drift(lock: Lock) -> list[str]:
    """Installed versions that differ from the lock's pins for this platform, one line each."""
    lines = []
    for name, version in sorted(lock.versions().items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            lines.append(f"{name}: locked {version}, not installed")
            continue
        if Version(installed) != Version(version):
            lines.append(f"{name}: locked {version}, installed {installed}")
    return lines


def stamp(lock_path: str | Path = LOCK_FILE, pyproject: str | Path = PYPROJECT) -> None:
    """Write the digest of pyproject.toml's requirements into the lock's header."""
    path = Path(lock_path)
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith(DIGEST_PREFIX)]
    lines.insert(0, DIGEST_PREFIX + requirements_digest(pyproject))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`check`, `stamp` or `drift` (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "stamp", "drift"])
    parser.add_argument("--lock", default=LOCK_FILE, help="the lock file")
    parser.add_argument("--pyproject", default=PYPROJECT, help="the project's pyproject.toml")
    args = parser.parse_args(argv)
    if args.command == "stamp":
        stamp(args.lock, args.pyproject)
        return 0
    lock = read_lock(args.lock)
    problems = disagreements(lock, args.pyproject) if args.command == "check" else drift(lock)
    for line in problems:
        print(f"error: {line}" if args.command == "check" else line, file=sys.stderr)
    if args.command == "check" and not problems:
        print(f"{args.lock} matches {args.pyproject} ({len(lock.pins)} pins)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
