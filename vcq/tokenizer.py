"""TiTok-style 1D tokenizer: ViT encoder → L latent tokens → quantizer → ViT decoder → pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vcq.quantizers import QuantizerOutput, build_quantizer


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


class Tokenizer(nn.Module):
    """1D tokenizer; images are in [-1, 1] both at the input and at the output."""

    def __init__(
        self, model: dict, num_tokens: int, quantizer: dict, sizes: Sequence[int]
    ) -> None:
        super().__init__()
        self.model_cfg, self.quantizer_cfg = dict(model), dict(quantizer)
        self.sizes = [int(k) for k in sizes]
        if len(self.sizes) != num_tokens:
            raise ValueError(f"{len(self.sizes)} codebook sizes for {num_tokens} tokens")
        self.num_tokens = num_tokens
        self.image_size, self.patch = model["image_size"], model["patch_size"]
        self.grid = self.image_size // self.patch
        n_patches, patch_dim = self.grid**2, 3 * self.patch**2
        ew, dw, mlp = model["enc_width"], model["dec_width"], model.get("mlp_ratio", 4.0)
        code_dim = quantizer.get("code_dim", 16)
        scale = 0.02
        self.patch_embed = nn.Linear(patch_dim, ew)
        self.enc_pos = nn.Parameter(scale * torch.randn(n_patches + num_tokens, ew))
        self.latents = nn.Parameter(scale * torch.randn(num_tokens, ew))
        self.encoder = ViT(ew, model["enc_depth"], model["enc_heads"], mlp)
        self.to_code = nn.Linear(ew, code_dim)
        self.quantizer = build_quantizer(quantizer, self.sizes)
        self.from_code = nn.Linear(code_dim, dw)
        self.mask_token = nn.Parameter(scale * torch.randn(dw))
        self.dec_pos = nn.Parameter(scale * torch.randn(num_tokens + n_patches, dw))
        self.decoder = ViT(dw, model["dec_depth"], model["dec_heads"], mlp)
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


def build_tokenizer(tokenizer_cfg: dict, sizes: Sequence[int]) -> Tokenizer:
    """A tokenizer from the resolved `tokenizer` config section and the schedule's K_t."""
    return Tokenizer(
        tokenizer_cfg["model"], tokenizer_cfg["num_tokens"], tokenizer_cfg["quantizer"], sizes
    )


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


def format_breakdown(parts: dict[str, int]) -> str:
    """One line per part, in millions."""
    return "\n".join(f"{k:>10s}: {v / 1e6:8.2f}M" for k, v in parts.items())


def export_for_inference(model: Tokenizer) -> Tokenizer:
    """The model with training-only quantizer parts dropped (VQBridge -> its projected codebook)."""
    if not hasattr(model.quantizer, "export"):
        return model
    plain_cfg = {**model.quantizer_cfg, "kind": "vcq"}
    plain = Tokenizer(model.model_cfg, model.num_tokens, plain_cfg, model.sizes).to(next(model.parameters()).device)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("quantizer.")}
    plain.load_state_dict(state, strict=False)
    plain.quantizer.embedding.data.copy_(model.quantizer.export())
    return plain.train(model.training)


def save_tokenizer(path: str | os.PathLike, model: Tokenizer, cfg: dict, extra: dict | None = None) -> None:
    """Save weights and everything needed to rebuild the model (atomic)."""
    from vcq.training import save_checkpoint

    spec = {
        "model": model.model_cfg,
        "num_tokens": model.num_tokens,
        "quantizer": model.quantizer_cfg,
        "sizes": model.sizes,
    }
    # Loader-private keys (`_config_path`) would make the file, and so its hash, depend on where
    # the checkout lives.
    config = {k: v for k, v in cfg.items() if not k.startswith("_")}
    state = {"spec": spec, "state_dict": model.state_dict(), "config": config, "extra": extra or {}}
    save_checkpoint(path, state)


def load_tokenizer(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Tokenizer:
    """Rebuild a tokenizer saved by `save_tokenizer`, in eval mode."""
    from vcq.training import require_checkpoint, restore_module

    state = require_checkpoint(path, ["spec", "state_dict"], map_location)
    spec = state["spec"]
    model = Tokenizer(spec["model"], spec["num_tokens"], spec["quantizer"], spec["sizes"])
    restore_module(model, state["state_dict"], path)
    return model.to(map_location).eval()
