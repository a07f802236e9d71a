"""Numerical precision and guards: bf16/TF32 inference, fp32 islands, non-finite detection."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from vcq.io import StepError


class NonFiniteError(StepError, RuntimeError):
    """A loss, gradient norm or weight is NaN or infinite (a step reports it in one line)."""


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions on CUDA use TF32 tensor cores."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast with TF32 for inference on CUDA; a no-op on other devices (fp32 stays fp32)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    enable_tf32()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Switch autocast off inside a block, so code assignments do not depend on the precision."""
    return torch.autocast(device_type=device.type, enabled=False)


class FiniteGuard:
    """Remembers on the device the first step at which a watched value was non-finite.

    `observe` adds no host synchronisation; `check` (one sync) raises NonFiniteError naming that
    step and value. Training calls `check` at logging intervals and before every checkpoint, so
    no checkpoint holds weights updated from a non-finite step.
    """

    def __init__(self) -> None:
        self._names: list[str] = []
        self._ids: dict[tuple[str, ...], torch.Tensor] = {}
        self._first_step: torch.Tensor | None = None
        self._first_name: torch.Tensor | None = None

    def observe(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """Watch the scalar tensors `values` (name -> value) of `step`."""
        keys = tuple(values)
        vals = torch.stack([v.detach().float().reshape(()) for v in values.values()])
        if keys not in self._ids:
            for k in keys:
                if k not in self._names:
                    self._names.append(k)
            self._ids[keys] = torch.tensor([self._names.index(k) for k in keys], device=vals.device)
        if self._first_step is None:
            self._first_step = torch.full((), -1, dtype=torch.long, device=vals.device)
            self._first_name = torch.zeros((), dtype=torch.long, device=vals.device)
        bad = ~torch.isfinite(vals)
        new = bad.any() & (self._first_step < 0)
        self._first_step = torch.where(new, step, self._first_step)
        self._first_name = torch.where(new, self._ids[keys][bad.int().argmax()], self._first_name)

    def check(self) -> None:
        """Raise NonFiniteError if any observed value was non-finite."""
        if self._first_step is None:
            return
        step = int(self._first_step)
        if step >= 0:
            name = self._names[int(self._first_name)]
            raise NonFiniteError(f"non-finite {name} at step {step}")


def check_finite_weights(model: nn.Module, what: str) -> None:
    """Raise NonFiniteError naming `what` if any floating-point weight or buffer is NaN or infinite."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point() and t.numel()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        raise NonFiniteError(f"{what}: the model has NaN or infinite weights (training diverged); retrain it")
