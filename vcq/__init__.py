"""vcq: Variable Codebook Size Quantization for autoregressive image generation."""

__version__ = "0.1.0"
