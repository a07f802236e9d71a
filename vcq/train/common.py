"""What every training step shares: LR schedule, batch order, optimiser, compile and autocast.

Each loop is `train(cfg, schedule, data, out, stop_at=None)` with the phases of nanoGPT's
train.py, each opened by a one-line comment: build, resume, step, evaluate, checkpoint, finish.
`stop_at` is the early-stop hook of the tests: checkpoint after that step and return, as a kill
right after a checkpoint would.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from vcq.io import StepError
from vcq.numerics import NonFiniteError


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


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; a no-op elsewhere (CPU runs stay in fp32)."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def micro_batch(batch_size: int, world_size: int, accum: int, key: str) -> int:
    """Per-rank micro-batch of a global batch; a StepError naming `key` if it does not divide."""
    micro, rem = divmod(batch_size, world_size * accum)
    if rem or micro == 0:
        raise StepError(
            f"{key} {batch_size} is not divisible by world_size {world_size} x grad_accum {accum}"
        )
    return micro


def grad_sync(module: torch.nn.Module, last_micro_step: bool) -> contextlib.AbstractContextManager:
    """DDP's gradient all-reduce on the last accumulation micro-step only (`no_sync` before it);
    a no-op for a module that is not data-parallel."""
    no_sync = getattr(module, "no_sync", None)
    return no_sync() if no_sync is not None and not last_micro_step else contextlib.nullcontext()


def clip_grads(params: Iterator[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Total gradient norm of `params`, clipped to `max_norm` first when it is > 0 (no host sync).

    With `max_norm` 0 the gradients are scaled by exactly 1: training is as unclipped."""
    return torch.nn.utils.clip_grad_norm_(list(params), max_norm or math.inf)


def matmul_params(module: torch.nn.Module) -> int:
    """Weights of the Linear layers: each costs 2 FLOPs per token forward, 6 with backward."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
