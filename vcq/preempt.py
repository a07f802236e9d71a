"""End of a time slice: SLURM's warning signal (or SIGTERM) asks a step to save and stop cleanly.

A long step calls `install()` once, checks `stop_requested()` at each point where its state is
complete on disk-able terms (after an optimiser step, after a chunk), saves, and calls
`end_slice()`, which requeues the SLURM job (same job id, no Snakemake retry consumed) or exits with
`EXIT_SLICE` outside SLURM so a caller can tell "continue me" from a failure.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import NoReturn

import torch
import torch.distributed as dist

# EX_TEMPFAIL from sysexits.h: "try again later", distinct from a step's error exit 1.
EXIT_SLICE = 75
_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
_state = {"signal": None}


def _handler(signum: int, _frame: object) -> None:
    _state["signal"] = signum


def install() -> None:
    """Record SIGUSR1/SIGTERM instead of dying on them (call once per process, from the main thread)."""
    for sig in _SIGNALS:
        signal.signal(sig, _handler)


def stop_requested(device: torch.device | None = None) -> bool:
    """Whether this process (or, under torch.distributed, any rank) was asked to stop; collective."""
    local = _state["signal"] is not None
    if dist.is_available() and dist.is_initialized():
        flag = torch.tensor([int(local)], device=device or "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
    return local


def end_slice(what: str, log: logging.Logger | None = None) -> NoReturn:
    """After the state is saved: requeue this SLURM job (rank 0 asks) or exit with EXIT_SLICE."""
    log = log or logging.getLogger("vcq")
    job = os.environ.get("SLURM_JOB_ID")
    rank = int(os.environ.get("RANK", "0"))
    if job and rank == 0 and os.environ.get("VCQ_REQUEUE", "1") == "1":
        log.info("%s: time slice ends; state saved; requeueing SLURM job %s", what, job)
        subprocess.run(["scontrol", "requeue", job], check=False)
    else:
        log.info("%s: stopped on request; state saved; rerun to continue", what)
    logging.shutdown()
    sys.exit(EXIT_SLICE)
