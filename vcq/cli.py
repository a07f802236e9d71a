"""Shared command-line plumbing for the pipeline steps."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from vcq import cluster
from vcq.config import ConfigError, load_config, rule_spec
from vcq.doctor import cpu_model
from vcq.io import StepError, disk_full_error, is_disk_full


def step_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every step shares (`--config`, `--set`)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", default="config/default.yaml", help="experiment YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set ar.train.steps=10 (repeatable)",
    )
    return parser


def report_parser(
    description: str, out_dir: str, manifest: str, only_theory: str, **inputs: str
) -> argparse.ArgumentParser:
    """`step_parser` with the flags of the report steps (tables, figures): `--out-dir`,
    `--manifest`, `--only-theory` (each with the step's help) and one `--NAME FILE...` list of run
    files per keyword (`entropy_csv="help"` gives `--entropy-csv`, default none)."""
    parser = step_parser(description)
    parser.add_argument("--out-dir", required=True, help=out_dir)
    for name, help_text in inputs.items():
        parser.add_argument(f"--{name.replace('_', '-')}", nargs="*", default=[], help=help_text)
    parser.add_argument("--manifest", default=None, help=manifest)
    parser.add_argument("--only-theory", action="store_true", help=only_theory)
    return parser


def step_rule() -> str:
    """The resources entry of this step: its script's name, the rule that runs it (the report
    steps make_tables and plot_figures name no rule, so they take `default`)."""
    return Path(sys.argv[0]).stem


def step_threads(cfg: dict, rule: str) -> int:
    """CPU threads of one process of a step: its rule's `cpus_per_task`, shared by the ranks that
    torchrun starts on the node (LOCAL_WORLD_SIZE)."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, rule_spec(cfg, rule)["cpus_per_task"] // ranks)


def set_threads(threads: int) -> None:
    """Use `threads` CPU threads in torch and in any process this step starts. The config decides
    them, not the caller's environment: Snakemake gives a job OMP_NUM_THREADS=threads, a shell
    gives none (torch then takes every core), and a float sum over another number of threads
    trains another model."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def load_step_config(args: argparse.Namespace) -> dict:
    """Load the validated config named by the parsed args (exit with a one-line error if bad) and
    set the step's thread count from its rule's resources, logging it with the CPU and torch."""
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        sys.exit(f"config error: {e}")
    rule = step_rule()
    threads = step_threads(cfg, rule)
    set_threads(threads)
    print(
        f"threads: {threads} (resources.{rule}.cpus_per_task) on {cpu_model()}, "
        f"torch {torch.__version__}",
        file=sys.stderr,
        flush=True,
    )
    return cfg


def setup_logging(log_file: str | None = None, name: str = "vcq") -> logging.Logger:
    """Log INFO to stderr and, if given, to `log_file`; under torchrun only rank 0 logs INFO (what
    rank 0 does: "wrote final.pt"), the other ranks their warnings and errors, marked."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    # the rank vcq.train.distributed.init_distributed joins as (torchrun's variable first)
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=("" if rank == 0 else f"[rank {rank}] ")
        + "%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    return logging.getLogger(name)


# Uncaught exceptions that a retry raises again (a bug, a bad value the config checks missed): the
# traceback ends with an `error:` line, so the retry needs no GPU (vcq.cluster.failed_for_good).
# RuntimeError (CUDA, NCCL, out of memory) and OSError (a lost file system) may pass on a retry.
DETERMINISTIC_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    ZeroDivisionError,
    NotImplementedError,
    ImportError,
)


def _close_progress_bars() -> None:
    """An interrupted progress bar has no newline yet: close it so what follows starts a line."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def run_step(main: Callable[[], None]) -> None:
    """Run a step's `main`; a StepError, a ConfigError, a missing input file, a folder it may not
    write (read-only, no permission) or a full disk ends it with one line and exit status 1; an
    uncaught exception that fails again on a retry (DETERMINISTIC_ERRORS) with its traceback and
    one line."""
    try:
        main()
        # done: the step's output has no owner any more (vcq.cluster.claim)
        cluster.release()
    except (StepError, ConfigError, OSError, RuntimeError) as e:
        full = is_disk_full(e)
        missing = isinstance(e, FileNotFoundError)
        refused = getattr(e, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)
        if not (full or missing or refused or isinstance(e, (StepError, ConfigError))):
            raise
        if missing:
            e = StepError(f"{e.filename}: no such file" if e.filename else str(e))
        elif refused:
            e = StepError(f"{e.filename or 'an output file'}: {e.strerror or e}")
        elif full and not isinstance(e, (StepError, ConfigError)):
            e = disk_full_error(getattr(e, "filename", None) or "an output file")
        logging.shutdown()
        _close_progress_bars()
        print(f"error: {e}", file=sys.stderr, flush=True)
        if full:
            # After a failed write HDF5 crashes while Python tears its objects down (exit 139).
            os._exit(1)
        sys.exit(1)
    except DETERMINISTIC_ERRORS as e:  # after StepError and ConfigError, which are ValueErrors
        logging.shutdown()
        _close_progress_bars()
        traceback.print_exc()
        print(
            f"error: uncaught {type(e).__name__}: {e} (a bug or a bad value, which a retry "
            "raises again: traceback above)",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
