"""End of a time slice: SLURM's warning signal (or SIGTERM) asks a step to save and stop cleanly.

A long step calls `install()` once, checks `stop_requested()` at each point where its state is
complete on disk-able terms (after an optimiser step, after a chunk), saves, and calls
`end_slice()`, which requeues the SLURM job (same job id, no Snakemake retry consumed) or exits with
`EXIT_SLICE` outside SLURM so a caller can tell "continue me" from a failure.

SLURM sends the warning (`sbatch --signal=USR1@margin`) to every process of the job's steps, not
only to the step's Python: Snakemake inside the job, its shell and torchrun ignore SIGUSR1 (the
workflow sets it to SIG_IGN, which children inherit; `python -m vcq.preempt` starts torchrun so on
other nodes too), and only the ranks, which call `install()`, act on it.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import subprocess
import sys
import time
from typing import NoReturn

import torch
import torch.distributed as dist

from vcq.cluster import MARGIN_ENV, time_left_s

# EX_TEMPFAIL from sysexits.h: "try again later", distinct from a step's error exit 1.
EXIT_SLICE = 75
_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
# slurmctld checks time limits every 30 s (PERIODIC_TIMEOUT): the warning comes up to this early
SLURM_CHECK_PERIOD_S = 30
# How long a requeued job's ranks wait for SLURM's SIGTERM before exiting on their own.
REQUEUE_WAIT_S = 20
_state = {"signal": None}


def _handler(signum: int, _frame: object) -> None:
    _state["signal"] = signum


def install() -> None:
    """Record SIGUSR1/SIGTERM instead of dying on them (once per process, from the main thread).

    A slice that starts with less time left than the warning margin ($VCQ_SIGNAL_MARGIN_S, set
    by the workflow) plus SLURM's 30 s check period is told to stop at once: SLURM may have sent
    its warning before this handler existed (to a process that ignored it).
    """
    for sig in _SIGNALS:
        signal.signal(sig, _handler)
    job, margin = os.environ.get("SLURM_JOB_ID"), os.environ.get(MARGIN_ENV)
    if job and margin:
        left = time_left_s(job)
        if left is not None and left <= int(margin) + SLURM_CHECK_PERIOD_S:
            _state["signal"] = signal.SIGUSR1


def signalled() -> bool:
    """Whether this process was asked to stop (local, not collective)."""
    return _state["signal"] is not None


def stop_requested(device: torch.device | None = None) -> bool:
    """Whether this process (or, under torch.distributed, any rank) was told to stop; collective."""
    local = _state["signal"] is not None
    if dist.is_available() and dist.is_initialized():
        flag = torch.tensor([int(local)], device=device or "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
    return local


def end_slice(what: str, log: logging.Logger | None = None) -> NoReturn:
    """After the state is saved: requeue this SLURM job (rank 0 asks) or exit with EXIT_SLICE.

    Only SLURM's slice warning (SIGUSR1) requeues: the requeue ends the job with SIGTERM to every
    process, so each rank waits for it (with the default action restored) instead of exiting
    first, and Snakemake, which polls the job id, sees it pending again, never failed. A SIGTERM
    (scancel, the time limit itself, preemption) exits at once: a cancelled job stays cancelled,
    and SLURM kills what outlives its KillWait.
    """
    log = log or logging.getLogger("vcq")
    job = os.environ.get("SLURM_JOB_ID")
    warned = _state["signal"] == signal.SIGUSR1
    if not job or not warned or os.environ.get("VCQ_REQUEUE", "1") != "1":
        log.info("%s: stopped on request; state saved; rerun to continue", what)
        logging.shutdown()
        sys.exit(EXIT_SLICE)
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    requeued = True
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("%s: time slice ends; state saved; requeueing SLURM job %s", what, job)
        for h in logging.getLogger().handlers:
            h.flush()
        out = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        requeued = out.returncode == 0
        if not requeued:
            log.warning(
                "scontrol requeue %s failed (%s): exiting with %d; Snakemake resubmits it if "
                "retries allow",
                job,
                (out.stderr or out.stdout).strip(),
                EXIT_SLICE,
            )
    if requeued:
        time.sleep(REQUEUE_WAIT_S)
        log.warning("SLURM job %s still runs %d s after its requeue: exiting", job, REQUEUE_WAIT_S)
    logging.shutdown()
    sys.exit(EXIT_SLICE)


def main(argv: list[str] | None = None) -> None:
    """`python -m vcq.preempt ARGS...`: `torchrun ARGS...` with SIGUSR1 ignored by the agent."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    sys.argv = ["torchrun", *(sys.argv[1:] if argv is None else argv)]
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
