"""Check the environment a step runs in: torch, CUDA, GPUs, CPU and threads, versions vs the lock.

    python -m vcq.doctor            # on a login node
    srun --gpus=1 python -m vcq.doctor --gpus 1   # on a compute node, as a job sees it

Exit status 1 when a step's module does not import, the installed versions differ from
requirements.lock, or fewer GPUs than --gpus are visible.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from vcq.lock import LOCK_FILE, drift, read_lock
from vcq.preflight import third_party_imports

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SLURM_CPUS_PER_TASK")


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux, else what platform knows)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def lock_record(lock_path: str | Path = LOCK_FILE) -> dict:
    """The lock's hash and how the installed packages differ from it (`missing` without a lock)."""
    if not Path(lock_path).is_file():
        return {"file": str(lock_path), "missing": True}
    lock = read_lock(lock_path)
    return {"file": str(lock_path), "sha256": lock.sha256, "drift": drift(lock)}


def drift_line(lock_path: str | Path = LOCK_FILE) -> str | None:
    """One line naming the installed packages that differ from the lock (None: none differ)."""
    if not Path(lock_path).is_file():
        return f"{lock_path}: no such file, installed versions unchecked"
    lines = drift(read_lock(lock_path))
    if not lines:
        return None
    shown = "; ".join(lines[:3]) + (f"; {len(lines) - 3} more" if len(lines) > 3 else "")
    return (
        f"{len(lines)} installed package(s) differ from {Path(lock_path).name} ({shown}): "
        "`python -m vcq.doctor` lists them, `make setup` installs the lock"
    )


def environment_record(lock_path: str | Path = LOCK_FILE) -> dict:
    """Machine, thread settings, torch build, GPUs and lock agreement of this process."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "cuda_available": torch.cuda.is_available(),
        "gpus": gpus,
        "lock": lock_record(lock_path),
    }


def driver_version() -> str | None:
    """The NVIDIA driver's version from nvidia-smi (None where there is no nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return None
    return out.stdout.split("\n", 1)[0].strip() or None


def import_failures(steps_dir: str | Path = "pipeline_steps") -> list[str]:
    """One line per third-party module of the steps that fails to import (really imported, so a
    broken install such as a torchvision built for another torch shows too)."""
    modules = set().union(*(third_party_imports(p) for p in Path(steps_dir).glob("*.py")))
    failures = []
    for module in sorted(modules):
        try:
            importlib.import_module(module)
        except Exception as e:  # any failure of an import is what we report
            failures.append(f"{module}: {type(e).__name__}: {str(e).splitlines()[0]}")
    return failures


def main(argv: list[str] | None = None) -> int:
    """Print the environment report; exit 1 on a problem (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default=LOCK_FILE, help="the lock file to compare against")
    parser.add_argument("--steps", default="pipeline_steps", help="folder of the pipeline steps")
    parser.add_argument("--gpus", type=int, default=0, help="fail with fewer visible GPUs")
    args = parser.parse_args(argv)
    problems = [f"import {line}" for line in import_failures(args.steps)]
    rec = environment_record(args.lock)
    print(f"python {rec['python']} ({sys.executable}) on {rec['platform']}")
    print(f"cpu: {rec['cpu_model']}, {rec['cpus_usable']} of {rec['cpus']} cores usable")
    env = " ".join(f"{k}={v}" for k, v in rec["thread_env"].items()) or "no thread variables set"
    print(f"threads: torch {rec['torch_threads']} intra-op; {env}")
    print(f"torch {rec['torch']} (CUDA {rec['torch_cuda']}, cuDNN {rec['cudnn']})")
    if rec["cuda_available"]:
        print(f"gpus: {len(rec['gpus'])} ({', '.join(rec['gpus'])}), driver {driver_version()}")
    else:
        print(f"gpus: none visible to torch (CUDA not available; driver {driver_version()})")
    if len(rec["gpus"]) < args.gpus:
        problems.append(f"{len(rec['gpus'])} GPUs visible, --gpus {args.gpus} wanted")
    lock = rec["lock"]
    if lock.get("missing"):
        problems.append(f"{lock['file']}: no such file (run from the repository's root)")
    else:
        print(f"lock: {lock['file']} sha256 {lock['sha256'][:16]}")
        problems += [f"not as locked: {line}" for line in lock["drift"]]
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    print("ok: every step's modules import and the versions are the lock's" if not problems else "")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
