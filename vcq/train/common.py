"""What every training loop shares: the metrics-log name, compile and optimiser choices.

Each loop is `train(cfg, schedule, data, out, stop_at=None)` with the phases of nanoGPT's
train.py, each opened by a one-line comment: build, resume, step, evaluate, checkpoint, finish.
`stop_at` is the early-stop hook of the tests: checkpoint after that step and return, as a kill
right after a checkpoint would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from vcq.io import StepError
from vcq.numerics import NonFiniteError

# One name for the JSONL metrics log beside every model's final.pt.
METRICS_LOG = "train_log.jsonl"


def use_compile(setting: bool | str, device: torch.device) -> bool:
    """torch.compile on when asked, or with "auto" on CUDA only (on CPU compiling costs more than
    it saves)."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def adamw(
    groups: list[dict] | list[torch.nn.Parameter], device: torch.device, **kwargs
) -> torch.optim.AdamW:
    """AdamW, with the fused CUDA kernel on CUDA."""
    return torch.optim.AdamW(groups, fused=device.type == "cuda", **kwargs)


@contextmanager
def divergence_reported(model: str, schedule: str) -> Iterator[None]:
    """Turn a non-finite loss or gradient inside the block into the one-line step error."""
    try:
        yield
    except NonFiniteError as e:
        raise StepError(
            f"{model} {schedule}: training diverged: {e}; no checkpoint was written after it"
        ) from e
