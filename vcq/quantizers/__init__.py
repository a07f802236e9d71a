"""Quantizers: the shared interface and the registry (kinds are imported when first used)."""

from vcq.quantizers.base import (
    ARHead,
    Quantizer,
    QuantizerOutput,
    ar_head_class,
    build_quantizer,
    latent_dim,
    options_schema,
    quantizer_class,
    quantizer_kinds,
    register_quantizer,
    usage_histogram,
    usage_stats,
)

__all__ = [
    "ARHead",
    "Quantizer",
    "QuantizerOutput",
    "ar_head_class",
    "build_quantizer",
    "latent_dim",
    "options_schema",
    "quantizer_class",
    "quantizer_kinds",
    "register_quantizer",
    "usage_histogram",
    "usage_stats",
]
