"""TiTok-style 1D tokenizer: ViT encoder → L latent tokens → quantizer → ViT decoder → pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from vcq.quantizers import QuantizerOutput, build_quantizer, latent_dim, quantizer_class


class Block(nn.Module):
    """Pre-norm transformer block with fused scaled-dot-product attention."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C)."""
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attn.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A stack of blocks with a final LayerNorm."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C)."""
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


@dataclass
class TokenizerConfig:
    """Architecture, quantizer and K_t of a tokenizer; stored in every checkpoint."""

    image_size: int
    patch_size: int
    enc_width: int
    enc_depth: int
    enc_heads: int
    dec_width: int
    dec_depth: int
    dec_heads: int
    k_sizes: list[int]  # K_t per latent position; its length is the latent length L
    quantizer: dict  # {kind: K, K: options}: a schedule's resolved `tokenizer.quantizer`
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        self.k_sizes = [int(k) for k in self.k_sizes]
        self.quantizer = dict(self.quantizer)
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide {self.image_size}")
        for part in ("enc", "dec"):
            width, heads = getattr(self, f"{part}_width"), getattr(self, f"{part}_heads")
            if width % heads:
                raise ValueError(f"{part}_heads {heads} does not divide {part}_width {width}")
        quantizer_class(self.quantizer["kind"])  # an unknown kind fails here, not mid-build

    @property
    def code_dim(self) -> int:
        """Size of the latent vectors the quantizer reads (set by its kind and options)."""
        return latent_dim(self.quantizer)

    @property
    def num_tokens(self) -> int:
        """Latent sequence length L."""
        return len(self.k_sizes)

    @classmethod
    def from_section(cls, tokenizer_cfg: dict, k_sizes: Sequence[int]) -> TokenizerConfig:
        """From the resolved `tokenizer` config section and one schedule's K_t."""
        if len(k_sizes) != tokenizer_cfg["num_tokens"]:
            raise ValueError(
                f"{len(k_sizes)} codebook sizes for {tokenizer_cfg['num_tokens']} tokens"
            )
        model = {k: v for k, v in tokenizer_cfg["model"].items() if k != "name"}
        return cls(**model, k_sizes=list(k_sizes), quantizer=tokenizer_cfg["quantizer"])


class Tokenizer(nn.Module):
    """1D tokenizer; images are in [-1, 1] both at the input and at the output."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.k_sizes, self.num_tokens = cfg.k_sizes, cfg.num_tokens
        self.image_size, self.patch = cfg.image_size, cfg.patch_size
        self.grid = self.image_size // self.patch
        n_patches, patch_dim = self.grid**2, 3 * self.patch**2
        ew, dw, code_dim = cfg.enc_width, cfg.dec_width, cfg.code_dim
        scale = 0.02
        self.patch_embed = nn.Linear(patch_dim, ew)
        self.enc_pos = nn.Parameter(scale * torch.randn(n_patches + self.num_tokens, ew))
        self.latents = nn.Parameter(scale * torch.randn(self.num_tokens, ew))
        self.encoder = ViT(ew, cfg.enc_depth, cfg.enc_heads, cfg.mlp_ratio)
        self.to_code = nn.Linear(ew, code_dim)
        self.quantizer = build_quantizer(cfg.quantizer, self.k_sizes)
        self.from_code = nn.Linear(code_dim, dw)
        self.mask_token = nn.Parameter(scale * torch.randn(dw))
        self.dec_pos = nn.Parameter(scale * torch.randn(self.num_tokens + n_patches, dw))
        self.decoder = ViT(dw, cfg.dec_depth, cfg.dec_heads, cfg.mlp_ratio)
        self.to_pixels = nn.Linear(dw, patch_dim)

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        p, g, b = self.patch, self.grid, x.shape[0]
        x = x.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 3, g * p, g * p)

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous pre-quantization latents (B, L, code_dim)."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(f"expected {self.image_size}px images, got {tuple(x.shape)}")
        tokens = self.patch_embed(self._patchify(x))
        latents = self.latents.expand(x.shape[0], -1, -1)
        h = self.encoder(torch.cat([tokens, latents], dim=1) + self.enc_pos)
        return self.to_code(h[:, -self.num_tokens :])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token indices (B, L) and quantized latents (B, L, code_dim) of images in [-1, 1]."""
        out = self.quantizer(self.encode_latents(x))
        return out.indices, out.quantized

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (unclamped) from quantized latents (B, L, code_dim)."""
        b = quantized.shape[0]
        masks = self.mask_token.expand(b, self.grid**2, -1)
        h = torch.cat([self.from_code(quantized), masks], dim=1) + self.dec_pos
        h = self.decoder(h)[:, self.num_tokens :]
        return self._unpatchify(self.to_pixels(h))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (clamped) from token indices (B, L)."""
        return self.decode(self.quantizer.lookup(indices)).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction (unclamped) and the quantizer output."""
        out = self.quantizer(self.encode_latents(x))
        return self.decode(out.quantized), out


def build_tokenizer(tokenizer_cfg: dict, k_sizes: Sequence[int]) -> Tokenizer:
    """A tokenizer from the resolved `tokenizer` config section and the schedule's K_t."""
    return Tokenizer(TokenizerConfig.from_section(tokenizer_cfg, k_sizes))


def parameter_breakdown(model: Tokenizer) -> dict[str, int]:
    """Parameter (and buffer-codebook) counts per part of the tokenizer."""

    def count(*mods: nn.Module | nn.Parameter) -> int:
        total = 0
        for m in mods:
            params = [m] if isinstance(m, nn.Parameter) else list(m.parameters())
            total += sum(p.numel() for p in params)
        return total

    parts = {
        "encoder": count(model.patch_embed, model.enc_pos, model.latents, model.encoder),
        "to_code": count(model.to_code),
        "codebook": model.quantizer.codebook_vectors().numel(),
        "from_code": count(model.from_code),
        "decoder": count(model.mask_token, model.dec_pos, model.decoder, model.to_pixels),
    }
    parts["total"] = sum(parts.values())
    return parts


def export_for_inference(model: Tokenizer) -> Tokenizer:
    """The model with training-only quantizer parts dropped (VQBridge -> its projected codebook)."""
    spec, quantizer = model.quantizer.export(model.cfg.quantizer)
    if quantizer is model.quantizer:
        return model
    plain = Tokenizer(replace(model.cfg, quantizer=spec)).to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("quantizer.")}
    plain.load_state_dict(state, strict=False)
    plain.quantizer = quantizer
    return plain.train(model.training)


def save_tokenizer(
    path: str | os.PathLike, model: Tokenizer, cfg: dict, extra: dict | None = None
) -> None:
    """Save weights and everything needed to rebuild the model (atomic)."""
    from vcq.train.checkpoint import save_checkpoint

    spec = asdict(model.cfg)
    # Loader-private keys (`_config_path`) would make the file, and so its hash, depend on where
    # the checkout lives.
    config = {k: v for k, v in cfg.items() if not k.startswith("_")}
    state = {"spec": spec, "state_dict": model.state_dict(), "config": config, "extra": extra or {}}
    save_checkpoint(path, state)


# Checkpoints written before per-kind quantizer options held one flat mapping with every kind's
# keys; the bridge's were prefixed.
_FLAT_NAMES = {f"bridge_{k}": k for k in ("group", "width", "depth", "heads")}


def _per_kind(spec: dict) -> dict:
    """A quantizer spec in the `{kind: K, K: options}` layout, also from the flat layout."""
    kind = spec.get("kind", "vcq")
    if isinstance(spec.get(kind), dict):
        return spec
    known = quantizer_class(kind).options
    options = {_FLAT_NAMES.get(k, k): v for k, v in spec.items()}
    return {"kind": kind, kind: {k: v for k, v in options.items() if k in known}}


def _config_of(spec: dict) -> TokenizerConfig:
    """The config of a checkpoint's `spec`, also from the layouts written before this one."""
    if "model" not in spec:
        return TokenizerConfig(**{**spec, "quantizer": _per_kind(spec["quantizer"])})
    # Older checkpoints hold the raw sections (and, older still, call K_t `sizes`); tokenizers
    # are costly to train, so they stay loadable.
    model = {k: v for k, v in spec["model"].items() if k != "name"}
    k_sizes = spec["k_sizes"] if "k_sizes" in spec else spec["sizes"]
    return TokenizerConfig(**model, k_sizes=k_sizes, quantizer=_per_kind(spec["quantizer"]))


def _restored(state: dict, path: str | os.PathLike, map_location: str | torch.device) -> Tokenizer:
    """The eval-mode tokenizer of a loaded `save_tokenizer` checkpoint."""
    from vcq.train.checkpoint import restore_module

    model = Tokenizer(_config_of(state["spec"]))
    restore_module(model, state["state_dict"], path)
    return model.to(map_location).eval()


def load_tokenizer_with_extra(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Tokenizer, dict]:
    """`load_tokenizer` and the checkpoint's `extra` (schedule, training metadata), one read."""
    from vcq.train.checkpoint import require_checkpoint

    state = require_checkpoint(
        path, ["spec", "state_dict", "extra"], map_location, rule="train_tokenizer"
    )
    return _restored(state, path, map_location), state["extra"]


def load_tokenizer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild a tokenizer saved by `save_tokenizer`, in eval mode."""
    from vcq.train.checkpoint import require_checkpoint

    state = require_checkpoint(path, ["spec", "state_dict"], map_location, rule="train_tokenizer")
    return _restored(state, path, map_location)
