"""Quantizer interface, output record, registry, AR-head interface and code-usage statistics."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn


@dataclass
class QuantizerOutput:
    """Result of quantizing a latent sequence."""

    quantized: torch.Tensor  # (B, L, D), straight-through: forward = codes, backward = identity
    indices: torch.Tensor  # (B, L) int64
    loss: torch.Tensor  # scalar quantizer loss (codebook + commitment), 0 when not applicable
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def option(default: object, description: str, **schema: object) -> dict:
    """JSON schema of one quantizer option: its default, description and constraints."""
    return {"default": default, "description": description, **schema}


class ARHead(nn.Module, ABC):
    """An AR output head over a quantizer's codes, built as `Head(dim, vocab_size)`.

    The AR model calls only these methods, so a quantizer's own head (e.g. Λ24's factorised one)
    needs no case in the model or the training loop.
    """

    name: ClassVar[str]  # the value of a schedule's `ar_head` that selects this head
    needs_codes: ClassVar[bool] = False  # whether set_codes must receive the tokenizer's codebook

    @abstractmethod
    def cross_entropy(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """−log p(token) per token (...) from the head's outputs for those positions."""

    @abstractmethod
    def vocab_logits(self, out: torch.Tensor) -> torch.Tensor:
        """Next-token scores (..., vocab_size) whose softmax is the head's distribution."""

    def set_codes(self, codes: torch.Tensor) -> None:
        """Record what the head needs of the (vocab_size, D) codebook (nothing by default)."""


class Quantizer(nn.Module, ABC):
    """Maps latents (B, L, D) to codes; position t may use only its first K_t codes.

    A kind is one subclass plus one registry entry (`_KINDS` below, or `register_quantizer` in a
    module the config's `plugins` name). Its options are the mapping
    under `tokenizer.quantizer.<kind>`, validated against `options` (JSON schema of each keyword
    of the constructor) when the config is loaded.
    """

    options: ClassVar[
        dict[str, dict]
    ] = {}  # option name -> JSON schema (with default, description)
    ar_head: ClassVar[type[ARHead] | None] = None  # a head of its own, besides the softmax head

    def __init__(self, k_sizes: Sequence[int] | torch.Tensor) -> None:
        super().__init__()
        k_sizes = torch.as_tensor(k_sizes, dtype=torch.long, device="cpu")
        if k_sizes.ndim != 1 or bool((k_sizes < 1).any()):
            raise ValueError(f"codebook sizes must be a 1-D tensor of positive ints, got {k_sizes}")
        self.register_buffer("k_sizes", k_sizes, persistent=False)

    @classmethod
    def build(cls, options: dict, k_sizes: Sequence[int] | torch.Tensor) -> Quantizer:
        """The quantizer for one schedule's K_t from its (validated) options."""
        return cls(k_sizes, **options)

    @classmethod
    @abstractmethod
    def latent_dim(cls, options: dict) -> int:
        """Size D of the latent vectors the tokenizer's encoder hands it."""

    @classmethod
    def capacity(cls, options: dict) -> int | None:
        """The most codes it can index with `options` (K_max's upper bound); None = no bound."""
        return None

    @classmethod
    def check_k_max(cls, options: dict, k_max: int) -> str | None:
        """Why a schedule's K_max cannot work with `options` (None if it can); checked at load."""
        cap = cls.capacity(options)
        if cap is not None and k_max > cap:
            return f"{k_max} exceeds the {cap} codes this quantizer can index with its options"
        return None

    def export(self, spec: dict) -> tuple[dict, Quantizer]:
        """The quantizer spec and module inference uses; training-only parts may be dropped."""
        return spec, self

    @property
    def num_tokens(self) -> int:
        """Sequence length L."""
        return int(self.k_sizes.numel())

    @property
    def k_max(self) -> int:
        """Largest codebook size over positions."""
        return int(self.k_sizes.max())

    @abstractmethod
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize latents z of shape (B, L, D)."""

    @abstractmethod
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, L, D) for indices (B, L)."""

    @abstractmethod
    def codebook_vectors(self) -> torch.Tensor:
        """All Kmax code vectors as a (K, D) tensor."""


# The one list of quantizer kinds: kind -> "module:Class", imported when first used (so a config
# check or a tokenizer of one kind imports only that kind's module), or a class registered at run
# time by `register_quantizer` (e.g. by a module named in the config's `plugins`).
_KINDS: dict[str, str | type[Quantizer]] = {
    "vcq": "vcq.quantizers.vcq:SharedCodebookQuantizer",
    "vcq_bridge": "vcq.quantizers.bridge:BridgedSharedCodebookQuantizer",
    "leech": "vcq.quantizers.leech:LeechQuantizer",
    "bsq": "vcq.quantizers.bsq:BinarySphericalQuantizer",
}


def register_quantizer(kind: str, cls: type[Quantizer] | str) -> None:
    """Make `kind` (a config's `tokenizer.quantizer.kind`) build `cls` (or "module:Class")."""
    if kind in _KINDS and _KINDS[kind] != cls:
        raise ValueError(f"quantizer kind {kind!r} registered twice")
    _KINDS[kind] = cls


def quantizer_kinds() -> list[str]:
    """Every registered kind, sorted."""
    return sorted(_KINDS)


def quantizer_class(kind: str) -> type[Quantizer]:
    """The class registered for `kind` (its module imported on first use)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown quantizer kind {kind!r}; known: {quantizer_kinds()}")
    entry = _KINDS[kind]
    if isinstance(entry, str):
        module, name = entry.split(":")
        entry = _KINDS[kind] = getattr(importlib.import_module(module), name)
    return entry


def options_schema(kind: str) -> dict:
    """JSON schema of the options mapping of `kind` (unknown keys refused, defaults filled)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": quantizer_class(kind).options,
    }


def build_quantizer(spec: dict, k_sizes: Sequence[int] | torch.Tensor) -> Quantizer:
    """Build the quantizer of a spec `{kind: K, K: options}` (a resolved `tokenizer.quantizer`)."""
    return quantizer_class(spec["kind"]).build(spec.get(spec["kind"], {}), k_sizes)


def latent_dim(spec: dict) -> int:
    """Latent size D the quantizer of `spec` expects."""
    return quantizer_class(spec["kind"]).latent_dim(spec.get(spec["kind"], {}))


def ar_head_class(name: str) -> type[ARHead]:
    """The AR head a registered quantizer kind offers under `name`."""
    offered = {}
    for kind in quantizer_kinds():
        head = quantizer_class(kind).ar_head
        if head is not None:
            offered[head.name] = head
    if name not in offered:
        raise ValueError(f"no quantizer offers the AR head {name!r}; offered: {sorted(offered)}")
    return offered[name]


def code_counts(indices: torch.Tensor, k_max: int) -> torch.Tensor:
    """Counts of each of k_max codes in `indices` (float); unlike bincount, no host sync on CUDA."""
    flat = indices.reshape(-1)
    ones = torch.ones(flat.shape, device=flat.device)
    return torch.zeros(k_max, device=flat.device).index_add_(0, flat, ones)


def usage_histogram(indices: torch.Tensor, k_max: int) -> torch.Tensor:
    """Per-position code counts (L, k_max) from indices (N, L)."""
    n, length = indices.shape
    offsets = torch.arange(length, device=indices.device) * k_max
    flat = (indices.long() + offsets).reshape(-1)
    return torch.bincount(flat, minlength=length * k_max).reshape(length, k_max)


def usage_stats(hist: torch.Tensor, k_sizes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-position utilization (used codes / K_t) and perplexity from a usage histogram."""
    k_sizes = k_sizes.to(hist.device)
    used = (hist > 0).sum(dim=1)
    p = hist.float() / hist.sum(dim=1, keepdim=True).clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=1)
    return {
        "utilization": used.float() / k_sizes.float(),
        "perplexity": entropy.exp(),
        "used": used,
    }
