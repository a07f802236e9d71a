"""Codebook-size schedules K_t (VCQ Eq. 3) and the information quantities derived from them."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Shape = Callable[[np.ndarray, float], np.ndarray]


def _constant(tau: np.ndarray, alpha: float) -> np.ndarray:
    """K_t = K_max everywhere (k_min is ignored)."""
    return np.ones_like(tau)


def _linear(tau: np.ndarray, alpha: float) -> np.ndarray:
    """VCQ-Linear: f(τ) = τ."""
    return tau


def _cosine(tau: np.ndarray, alpha: float) -> np.ndarray:
    """VCQ-Cosine: f(τ) = 1 − cos(πτ/2), slow early growth."""
    return 1.0 - np.cos(np.pi * tau / 2.0)


def _power(tau: np.ndarray, alpha: float) -> np.ndarray:
    """VCQ-Power: f(τ) = τ^α."""
    return tau**alpha


# The schedule kinds, by the name a config's `schedules[].kind` gives: the schema's list of kinds
# is read from here, so a new kind is one function and one entry (docs/EXTENDING.md).
SHAPES: dict[str, Shape] = {
    "constant": _constant,
    "linear": _linear,
    "cosine": _cosine,
    "power": _power,
}


def schedule_shape(schedule: str, tau: np.ndarray, alpha: float = 2.5) -> np.ndarray:
    """The growth function f(τ) with f(0)=0, f(1)=1 for a named schedule."""
    if schedule not in SHAPES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {sorted(SHAPES)}")
    return SHAPES[schedule](tau, alpha)


def schedule_k_sizes(
    schedule: str, k_min: int, k_max: int, length: int = 256, alpha: float = 2.5
) -> np.ndarray:
    """Integer K_t for t = 0..L-1: K_min + (K_max - K_min)·f(t/(L-1)), rounded to nearest."""
    if not 1 <= k_min <= k_max:
        raise ValueError(f"need 1 <= k_min <= k_max, got k_min={k_min}, k_max={k_max}")
    if schedule == "constant":
        return np.full(length, k_max, dtype=np.int64)
    tau = np.arange(length, dtype=np.float64) / max(length - 1, 1)
    # np.rint rounds half to even; Eq. 3 asks for the nearest integer, ties never occur in Table 2
    # but floor(x + 0.5) keeps the rule explicit.
    k_sizes = np.floor(k_min + (k_max - k_min) * schedule_shape(schedule, tau, alpha) + 0.5)
    return np.clip(k_sizes, k_min, k_max).astype(np.int64)


def mean_codebook_size(k_sizes: np.ndarray) -> float:
    """K̄, the mean codebook size over positions."""
    return float(np.mean(k_sizes))


def bits_per_pixel(k_sizes: np.ndarray, image_size: int = 256) -> float:
    """BPP = Σ_t log2 K_t / (image_size²)."""
    return float(np.sum(np.log2(k_sizes)) / (image_size * image_size))


def cumulative_information(k_sizes: np.ndarray) -> np.ndarray:
    """I(t) = Σ_{i<t} log2 K_i for t = 0..L (Eq. 2); I(0) = 0."""
    return np.concatenate([[0.0], np.cumsum(np.log2(k_sizes.astype(np.float64)))])


def remaining_budget(k_sizes: np.ndarray, n_images: int) -> np.ndarray:
    """log2 N − I(t) for t = 0..L, the theoretical curve of Fig. 2(a)."""
    return math.log2(n_images) - cumulative_information(k_sizes)


def cliff_position_vcq(k_sizes: np.ndarray, n_images: int) -> int:
    """t*_vcq: the smallest t with I(t) >= log2 N (L+1 if the sequence never reaches it)."""
    info = cumulative_information(k_sizes)
    hits = np.nonzero(info >= math.log2(n_images) - 1e-12)[0]
    return int(hits[0]) if hits.size else len(k_sizes) + 1
