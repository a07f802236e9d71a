"""Training plumbing shared by the tokenizer and AR steps: distributed setup, LR schedule,
deterministic batches, RNG capture, atomic checkpoints, JSONL logs and progress bars."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from vcq.io import StepError, atomic_path


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a (possibly single-process) data-parallel job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the rank that writes outputs."""
        return self.rank == 0


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group described by torchrun or SLURM variables (if any)."""
    # torchrun's variables win: under `srun torchrun` SLURM_PROCID names the node, not the rank.
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but no CUDA device is visible")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        os.environ.setdefault(
            "MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1")
        )
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def cleanup_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def lr_at(
    step: int, base_lr: float, end_lr: float, warmup_steps: int, peak_steps: int, total_steps: int
) -> float:
    """Linear warmup 0→base, hold until `peak_steps`, then linear decay to `end_lr` at the end."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    hold_until = max(peak_steps, warmup_steps)
    if step < hold_until or total_steps <= hold_until:
        return base_lr
    frac = min(1.0, (step - hold_until) / max(1, total_steps - hold_until))
    return base_lr + (end_lr - base_lr) * frac


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices only; biases, norms and adaptive-norm params are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim < 2 or "norm" in name.lower() or "bias" in name or "ada" in name.lower()
        (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def batch_indices(
    n: int, batch_size: int, step: int, seed: int, rank: int = 0, world_size: int = 1
) -> np.ndarray:
    """Indices of this rank's micro-batch at a global step; epochs are seeded permutations."""
    global_batch = batch_size * world_size
    start = step * global_batch
    out = []
    while len(out) < global_batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + global_batch - len(out)].tolist())
    return np.asarray(out[rank * batch_size : (rank + 1) * batch_size], dtype=np.int64)


def capture_rng() -> dict:
    """Every random generator's state as tensors and plain types, for a checkpoint."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = torch.from_numpy(np_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Restore generator states captured by `capture_rng`."""
    random.setstate(state["python"])
    np_state = {**state["numpy"], "state": dict(state["numpy"]["state"])}
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointError(StepError):
    """A checkpoint that cannot be used: unreadable, unsafe, or from another configuration."""


def _plain(obj: Any, where: str) -> Any:
    """`obj` as tensors and plain Python types, the only things `weights_only` loading accepts."""
    if isinstance(obj, dict):
        return type(obj)((k, _plain(v, f"{where}.{k}")) for k, v in obj.items())
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor, torch.Size)):
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(
        f"checkpoint entry {where} is a {type(obj).__name__}: store tensors and plain types only"
    )


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """torch.save `state` atomically (a kill mid-write never leaves a broken checkpoint).

    numpy values become tensors so that `load_checkpoint` can read the file with weights_only.
    """
    state = _plain(state, "state")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        # A file object, not a path: torch then chains the OSError (e.g. ENOSPC) it hit.
        torch.save(state, f)


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", rule: str | None = None
) -> dict | None:
    """Load a checkpoint written by `save_checkpoint` (tensors and plain data only), or None.

    `rule` is the workflow rule that writes this model file; without one the file is a training
    step's resume state (last.pt), whose loss restarts the training."""
    if not Path(path).exists():
        return None
    remedy = (
        f"delete it and rerun the `{rule}` rule"
        if rule
        else "delete it and rerun the step (its training then starts from step 0)"
    )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False, which would run the payload: not repeated.
        found = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        raise CheckpointError(
            f"{path}: refused, it holds Python objects other than tensors and plain data "
            f"({found or 'not loadable with weights_only'}); {remedy}"
        ) from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint ({_first_line(e)}); {remedy}") from e


def require_checkpoint(
    path: str | os.PathLike, keys: list[str], map_location: Any = "cpu", *, rule: str
) -> dict:
    """`load_checkpoint` of a model file that the workflow's `rule` writes and that must exist
    and hold `keys`."""
    state = load_checkpoint(path, map_location, rule)
    if state is None:
        raise CheckpointError(f"{path}: no such checkpoint; the `{rule}` rule writes it")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a vcq model file (no '{missing[0]}' entry); the `{rule}` rule writes it"
        )
    return state


def restore_module(target: Any, state: dict, path: str | os.PathLike) -> None:
    """`target.load_state_dict(state)` (a model or optimiser), failing in one line naming `path`."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as e:
        detail = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), _first_line(e))
        raise CheckpointError(
            f"{path} does not fit this configuration's {type(target).__name__} ({detail}); "
            "delete it to start afresh, or restore the configuration it was written with"
        ) from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class JsonlLog:
    """Append-only JSONL metrics log of one schedule that rewinds to a resumed step.

    Every record carries `schedule` (first), so the log names what it measured
    (`vcq.runfiles.read_log`); records kept on resume get it too, so a resumed run's log equals
    an uninterrupted one.
    """

    def __init__(
        self, path: str | os.PathLike, schedule: str, resume_step: int | None = None
    ) -> None:
        self.path, self.schedule = Path(path), schedule
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            keep = [r for r in self.read(self.path) if r.get("step", -1) <= resume_step]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(self._line(r) for r in keep))

    def _line(self, record: dict) -> str:
        return json.dumps({"schedule": self.schedule, **record}) + "\n"

    def write(self, record: dict) -> None:
        """Append one record (flushed at once, so a kill loses at most this line)."""
        with open(self.path, "a") as f:
            f.write(self._line(record))

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict]:
        """All records of a log file."""
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


PROGRESS_FD_ENV = "VCQ_PROGRESS_FD"
PROGRESS_EVERY_ENV = "VCQ_PROGRESS_EVERY"


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


class Progress(tqdm):
    """A tqdm bar (to the log) that also sends a one-line heartbeat to a terminal file descriptor.

    The workflow's rules send stdout and stderr to a log file, so the bar never reaches the user;
    they pass the terminal as the descriptor named by $VCQ_PROGRESS_FD. Every $VCQ_PROGRESS_EVERY
    seconds (default 30), and at the end, one line with step, rate and ETA is written there. With
    `lines` (the bar's file is a log, not a terminal) the bar is a whole line every 5 %.
    """

    def __init__(
        self,
        *args: Any,
        heartbeat_fd: int | None = None,
        every: float = 30.0,
        lines: bool = False,
        **kwargs: Any,
    ) -> None:
        self.lines = lines
        if lines:
            total, initial = kwargs.get("total") or 0, kwargs.get("initial", 0)
            kwargs |= {"miniters": max(1, (total - initial) // 20), "mininterval": 0}
            kwargs |= {"maxinterval": float("inf")}  # tqdm's monitor would reset miniters to 1
        super().__init__(*args, **kwargs)
        self.heartbeat_fd, self.every = heartbeat_fd, every
        self._last_beat = time.monotonic()

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        """tqdm's postfix; in a log file it shows on the next 5 % line, not as a line of its own."""
        super().set_postfix(ordered_dict, refresh=refresh and not self.lines, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        """Redraw the bar in place, or, in a log file, write it as one more line."""
        if not self.lines:
            super().display(msg, pos)
            return
        self.fp.write((self.__str__() if msg is None else msg) + "\n")
        self.fp.flush()

    def heartbeat_line(self) -> str:
        """`<desc>: <n>/<total> (<pct>%), <rate>/s, ETA <t>` from the bar's counters."""
        d = self.format_dict
        n, total, elapsed = d["n"], d["total"], d["elapsed"]
        rate = d["rate"] or ((n - self.initial) / elapsed if elapsed > 0 else 0.0)
        line = f"{self.desc or 'progress'}: {n}/{total}" if total else f"{self.desc}: {n}"
        if total:
            line += f" ({100 * n / total:.0f}%)"
        if rate:
            line += f", {rate:.2f}/s"
            if total and n < total:
                line += f", ETA {_duration((total - n) / rate)}"
        return line + f", elapsed {_duration(elapsed)}"

    def _beat(self) -> None:
        if self.heartbeat_fd is None:
            return
        self._last_beat = time.monotonic()
        try:
            os.write(self.heartbeat_fd, (self.heartbeat_line() + "\n").encode())
        except OSError:
            # The terminal went away (closed pipe, detached session): keep training, stop beating.
            self.heartbeat_fd = None

    def update(self, n: float = 1) -> bool | None:
        """Advance the bar; beat if `every` seconds passed since the last line."""
        out = super().update(n)
        if self.heartbeat_fd is not None and time.monotonic() - self._last_beat >= self.every:
            self._beat()
        return out

    def close(self) -> None:
        """Close the bar with a final heartbeat line (once)."""
        if not self.disable and self.heartbeat_fd is not None and self.n > self.initial:
            self._beat()
            self.heartbeat_fd = None
        super().close()


def progress(total: int, initial: int = 0, desc: str = "", enabled: bool = True) -> Progress:
    """A tqdm bar with rate and ETA plus terminal heartbeats (enabled=False on non-main ranks)."""
    fd = os.environ.get(PROGRESS_FD_ENV)
    return Progress(
        total=total,
        initial=initial,
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0,
        smoothing=0.1,
        heartbeat_fd=int(fd) if fd and enabled else None,
        every=float(os.environ.get(PROGRESS_EVERY_ENV, "30")),
        lines=not sys.stderr.isatty(),
    )


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU runs stay in fp32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plot_log(jsonl_path: str | os.PathLike, png_path: str | os.PathLike, keys: list[str]) -> None:
    """Plot the named keys of a JSONL log against step into a PNG."""
    from vcq.plotting import pyplot, save_figure

    plt = pyplot()

    records = JsonlLog.read(jsonl_path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, [png_path], dpi=120)
