"""What a training loop reports: the JSONL metrics log, the progress bar with terminal
heartbeats and throughput (step time, items/s, data wait, MFU), and the loss plot.

Throughput goes to the bar, not to the JSONL log: the log of a resumed run equals an
uninterrupted one (tested), which timings would break."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vcq.io import atomic_path


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
        """All records of a log file; a last line without its line break is the record a kill
        cut off (`write`), not a record."""
        text = Path(path).read_text()
        lines = text.split("\n")[:-1]  # the text after the last line break is cut off or empty
        return [json.loads(line) for line in lines if line.strip()]


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


# Dense bf16 tensor-core peak of one GPU (FLOP/s), by a substring of torch's device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    """The bf16 peak of `device` from `PEAK_BF16_FLOPS`, or None (CPU, unknown GPU: no MFU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for gpu, peak in PEAK_BF16_FLOPS.items() if gpu in name), None)


class Throughput:
    """Step time, items (images or tokens) per second, data-wait fraction and MFU of a loop.

    Measured on the host between two `report()` calls, which a loop makes right after a host sync
    (its logging), so the device's work is inside the interval. Items are those of the whole job
    (all ranks). MFU follows nanoGPT: achieved FLOP/s (`flops_per_item` x items per second) over
    the bf16 peak of `world_size` GPUs; without a peak (CPU) it is left out.
    """

    def __init__(
        self,
        items_per_step: int,
        unit: str,
        flops_per_item: float,
        peak: float | None,
        world_size: int = 1,
    ) -> None:
        self.items_per_step, self.unit = items_per_step, unit
        self.flops_per_item = flops_per_item
        self.peak = peak * world_size if peak else None
        self._start, self._steps, self._wait = time.perf_counter(), 0, 0.0

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Count the time inside the block as waiting for data."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._wait += time.perf_counter() - start

    def step(self) -> None:
        """One optimiser step done."""
        self._steps += 1

    def report(self) -> dict[str, str]:
        """Figures since the last report (for the progress bar), then start a new interval."""
        now = time.perf_counter()
        elapsed = max(now - self._start, 1e-9)
        rate = self.items_per_step * self._steps / elapsed
        out = {
            "step": f"{1e3 * elapsed / max(self._steps, 1):.0f}ms",
            f"{self.unit}/s": f"{rate:.4g}",
            "data_wait": f"{self._wait / elapsed:.0%}",
        }
        if self.peak:
            out["mfu"] = f"{rate * self.flops_per_item / self.peak:.1%}"
        self._start, self._steps, self._wait = now, 0, 0.0
        return out
