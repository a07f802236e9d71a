"""Quantizers: the shared interface, the registry and the VCQ shared-codebook quantizer."""

from vcq.quantizers.base import (
    Quantizer,
    QuantizerOutput,
    build_quantizer,
    register_quantizer,
    usage_histogram,
    usage_stats,
)
from vcq.quantizers.vcq import SharedCodebookQuantizer

# imported for their @register_quantizer side effect, so build_quantizer knows every kind
from vcq.quantizers import bridge, bsq, leech  # noqa: E402,F401  isort: skip

__all__ = [
    "Quantizer",
    "QuantizerOutput",
    "SharedCodebookQuantizer",
    "build_quantizer",
    "register_quantizer",
    "usage_histogram",
    "usage_stats",
]
