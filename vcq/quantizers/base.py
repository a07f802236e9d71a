"""Quantizer interface, output record, registry and code-usage statistics."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """Result of quantizing a latent sequence."""

    quantized: torch.Tensor  # (B, L, D), straight-through: forward = codes, backward = identity
    indices: torch.Tensor  # (B, L) int64
    loss: torch.Tensor  # scalar quantizer loss (codebook + commitment), 0 when not applicable
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Quantizer(nn.Module, ABC):
    """Maps latents (B, L, D) to codes; position t may use only its first K_t codes."""

    def __init__(self, sizes: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        sizes = torch.as_tensor(sizes, dtype=torch.long, device="cpu")
        if sizes.ndim != 1 or bool((sizes < 1).any()):
            raise ValueError(f"codebook sizes must be a 1-D tensor of positive ints, got {sizes}")
        self.register_buffer("codebook_sizes", sizes, persistent=False)

    @property
    def num_tokens(self) -> int:
        """Sequence length L."""
        return int(self.codebook_sizes.numel())

    @property
    def k_max(self) -> int:
        """Largest codebook size over positions."""
        return int(self.codebook_sizes.max())

    @abstractmethod
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize latents z of shape (B, L, D)."""

    @abstractmethod
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, L, D) for indices (B, L)."""

    @abstractmethod
    def codebook_vectors(self) -> torch.Tensor:
        """All Kmax code vectors as a (K, D) tensor."""


_REGISTRY: dict[str, Callable[..., Quantizer]] = {}


def register_quantizer(name: str) -> Callable[[type], type]:
    """Class decorator registering a quantizer under `cfg["kind"] == name`."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"quantizer kind {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return wrap


def build_quantizer(cfg_quantizer: dict, sizes: Sequence[int] | torch.Tensor) -> Quantizer:
    """Build the quantizer named by `cfg_quantizer["kind"]`; other keys go to its constructor."""
    cfg = dict(cfg_quantizer)
    kind = cfg.pop("kind", "vcq")
    if kind not in _REGISTRY:
        raise ValueError(f"unknown quantizer kind {kind!r}; known: {sorted(_REGISTRY)}")
    cls = _REGISTRY[kind]
    # The config section holds schema defaults for every kind; pass each kind only the keys its
    # constructor (or, through **kwargs, a base class constructor) accepts.
    accepted = {name for c in cls.__mro__ if "__init__" in vars(c)
                for name in inspect.signature(c.__init__).parameters}
    return cls(sizes=sizes, **{k: v for k, v in cfg.items() if k in accepted})


def code_counts(indices: torch.Tensor, k_max: int) -> torch.Tensor:
    """How often each of k_max codes occurs in `indices` (float); unlike bincount, no host sync on CUDA."""
    flat = indices.reshape(-1)
    ones = torch.ones(flat.shape, device=flat.device)
    return torch.zeros(k_max, device=flat.device).index_add_(0, flat, ones)


def usage_histogram(indices: torch.Tensor, k_max: int) -> torch.Tensor:
    """Per-position code counts (L, k_max) from indices (N, L)."""
    n, length = indices.shape
    offsets = torch.arange(length, device=indices.device) * k_max
    flat = (indices.long() + offsets).reshape(-1)
    return torch.bincount(flat, minlength=length * k_max).reshape(length, k_max)


def usage_stats(hist: torch.Tensor, sizes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-position utilization (used codes / K_t) and perplexity from a usage histogram."""
    sizes = sizes.to(hist.device)
    used = (hist > 0).sum(dim=1)
    p = hist.float() / hist.sum(dim=1, keepdim=True).clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=1)
    return {"utilization": used.float() / sizes.float(), "perplexity": entropy.exp(), "used": used}
