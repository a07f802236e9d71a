"""Class-conditional decoder-only transformer over token sequences (LlamaGen-style)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from vcq.prologue import PrologueEncoder
from vcq.quantizers import ARHead, ar_head_class

TOKEN_INPUTS = ("table", "codes")


class SoftmaxHead(nn.Linear, ARHead):
    """One linear layer to K_max logits (a Linear, so `output.weight` stays the checkpoint key)."""

    name = "softmax"

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__(dim, vocab_size, bias=False)

    def cross_entropy(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy (...) in nats of logits (..., V) against `tokens`."""
        # (B·L, V) rows: 2.5-3x faster than cross-entropy over the transposed (B, V, L) layout
        flat = F.cross_entropy(out.reshape(-1, out.shape[-1]), tokens.reshape(-1), reduction="none")
        return flat.view_as(tokens)

    def vocab_logits(self, out: torch.Tensor) -> torch.Tensor:
        """The logits themselves."""
        return out


def head_class(name: str) -> type[ARHead]:
    """The AR head called `name`: softmax, or the head a quantizer kind offers."""
    return SoftmaxHead if name == SoftmaxHead.name else ar_head_class(name)


@dataclass
class ARConfig:
    """Model hyper-parameters; stored in every checkpoint."""

    vocab_size: int = 16384
    seq_len: int = 256
    num_classes: int = 1000
    n_layer: int = 12
    n_head: int = 12
    dim: int = 768
    ffn_multiple: int = 256
    dropout: float = 0.1  # residual ("AR") dropout
    attn_dropout: float = 0.0  # on attention weights; App. A names class, AR and token dropout only
    token_dropout: float = 0.1
    class_dropout: float = 0.1
    rope_base: float = 10000.0
    head: str = (
        "softmax"  # or a head a quantizer offers (leech_factorized: 24 nine-way classifiers)
    )
    token_input: str = "table"  # or codes: a linear map of the tokenizer's frozen code vectors
    code_dim: int = 0  # code vector size, for token_input codes (set from the tokenizer)
    k_sizes: list[int] = field(default_factory=list)  # K_t of the tokens' schedule ([]: unknown)
    restrict_k: bool = False  # training and validation CE over the first K_t codes at position t
    # PrologueEncoder options (num_tokens, codebook_size, width, depth, heads); no num_tokens = none
    prologue: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            head_class(self.head)
        except ValueError as e:
            raise ValueError(f"unknown AR head {self.head!r}: {e}") from e
        if self.restrict_k and len(self.k_sizes) != self.seq_len:
            raise ValueError(f"restrict_k needs {self.seq_len} K_t values, got {len(self.k_sizes)}")
        if self.prologue.get("codebook_size", 0) > self.vocab_size and self.prologue["num_tokens"]:
            raise ValueError(
                f"prologue codebook {self.prologue['codebook_size']} exceeds the AR vocabulary "
                f"{self.vocab_size} (prologue ids share the output head)"
            )
        if self.token_input not in TOKEN_INPUTS:
            raise ValueError(
                f"unknown token_input {self.token_input!r}; expected one of {TOKEN_INPUTS}"
            )
        if self.token_input == "codes" and self.code_dim <= 0:
            raise ValueError(
                "token_input codes needs code_dim > 0 (the tokenizer's code vector size)"
            )

    @classmethod
    def from_dict(cls, d: dict) -> ARConfig:
        """Build from a mapping, ignoring keys that are not model hyper-parameters (e.g. `name`)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(
            x
        ) * self.weight


def rope_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (length, head_dim/2) for rotary embeddings."""
    inv = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    ang = torch.outer(torch.arange(length).float(), inv)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hd) by the tables already sliced to the T positions."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Pre-allocated per-layer key/value buffers for incremental decoding."""

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ):
        shape = (batch, n_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.pos = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values at the current position; return everything cached so far."""
        end = self.pos + k.shape[2]
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


class Attention(nn.Module):
    """Multi-head causal self-attention with RoPE and an optional KV cache."""

    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.dim // cfg.n_head
        self.wqkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.p = cfg.attn_dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0):
        b, t, _ = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(layer, k, v)
        if past == 0:
            mask, causal = None, True
        else:
            # new queries sit at positions past..past+t-1 and see every cached key up to themselves
            qi = torch.arange(past, past + t, device=x.device)[:, None]
            mask, causal = qi >= torch.arange(k.shape[2], device=x.device)[None, :], False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.p if self.training and self.p else 0.0,
        )
        return self.resid_drop(self.wo(y.transpose(1, 2).reshape(b, t, -1)))


class FeedForward(nn.Module):
    """SwiGLU MLP with LlamaGen's hidden size (2/3 of 4·dim, rounded up to a multiple)."""

    def __init__(self, cfg: ARConfig):
        super().__init__()
        hidden = int(2 * 4 * cfg.dim / 3)
        hidden = cfg.ffn_multiple * math.ceil(hidden / cfg.ffn_multiple)
        self.w1 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.attention_norm, self.attention = RMSNorm(cfg.dim), Attention(cfg)
        self.ffn_norm, self.feed_forward = RMSNorm(cfg.dim), FeedForward(cfg)

    def forward(self, x, cos, sin, cache=None, layer=0):
        x = x + self.attention(self.attention_norm(x), cos, sin, cache, layer)
        return x + self.feed_forward(self.ffn_norm(x))


class ARLoss(NamedTuple):
    """A teacher-forced pass: the loss to minimise and what training and validation log."""

    loss: torch.Tensor  # scalar: mean token CE (+ z-loss, + the prologue's CE)
    ce: torch.Tensor  # (B, L) per-token CE in nats, detached
    logits: torch.Tensor  # head outputs of the L visual positions ((B, L, V) for softmax)
    terms: dict[str, torch.Tensor]  # further loss terms to log, detached (prologue_loss)


class ARModel(nn.Module):
    """Sequence = [class token, optional prologue tokens, image tokens]; predicts the next.

    It owns its loss (`forward`), so its head and its prologue need no case in the training loop.
    """

    def __init__(self, cfg: ARConfig):
        super().__init__()
        self.cfg = cfg
        self.cls_embedding = nn.Embedding(cfg.num_classes + 1, cfg.dim)  # last row = null class
        if cfg.token_input == "codes":
            # a K_max-row table is 151M parameters at Λ24's 196,560 codes; this is code_dim x dim
            self.register_buffer("input_codes", torch.zeros(cfg.vocab_size, cfg.code_dim))
            self.tok_embeddings = nn.Linear(cfg.code_dim, cfg.dim, bias=False)
        else:
            self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.tok_drop = nn.Dropout(cfg.token_dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.dim)
        self.output = head_class(cfg.head)(cfg.dim, cfg.vocab_size)
        self.register_buffer(
            "k_sizes", torch.tensor(cfg.k_sizes, dtype=torch.long), persistent=False
        )
        # room for class token + prologue tokens; extended lazily if a longer prefix arrives
        cos, sin = rope_tables(cfg.dim // cfg.n_head, cfg.seq_len + 1, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        # built after the init above, which would otherwise redraw its layers
        self.prologue = None
        if cfg.prologue.get("num_tokens", 0):
            self.prologue = PrologueEncoder(
                **cfg.prologue, vocab=cfg.vocab_size, seq_len=cfg.seq_len, ar_dim=cfg.dim
            )

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    def drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Replace labels by the null class with probability class_dropout (training only)."""
        if not self.training or self.cfg.class_dropout <= 0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.cfg.class_dropout
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def _rope(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start + length > self.rope_cos.shape[0]:
            cos, sin = rope_tables(
                self.cfg.dim // self.cfg.n_head, start + length, self.cfg.rope_base
            )
            self.rope_cos, self.rope_sin = (
                cos.to(self.rope_cos.device),
                sin.to(self.rope_sin.device),
            )
        return self.rope_cos[start : start + length], self.rope_sin[start : start + length]

    def embed(
        self,
        labels: torch.Tensor | None,
        tokens: torch.Tensor | None,
        prefix_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Input embeddings of [class, prefix, tokens]; any part may be None."""
        parts = []
        if labels is not None:
            parts.append(self.cls_embedding(labels)[:, None])
        if prefix_embeds is not None:
            parts.append(prefix_embeds)
        if tokens is not None and tokens.shape[1] > 0:
            ids = self.input_codes[tokens] if self.cfg.token_input == "codes" else tokens
            parts.append(self.tok_drop(self.tok_embeddings(ids)))
        return torch.cat(parts, dim=1)

    def forward_embeds(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Run the trunk on input embeddings (continuing `cache` if given); return the head's
        logits.

        Those are (B, T, V) for the softmax head and (B, T, 24, 9) for the factorised Leech head.
        """
        start = cache.pos if cache is not None else 0
        cos, sin = self._rope(start, x.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i)
        if cache is not None:
            cache.pos += x.shape[1]
        return self.output(self.norm(x)).float()

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor, z_weight: float = 0.0) -> ARLoss:
        """Teacher-forced loss of token rows (B, L) with class labels (B,): position t predicts
        tokens[:, t] from tokens[:, :t] (after the prologue's tokens, which it predicts first).

        Training and validation call the model itself, so that DDP and torch.compile see the pass.
        """
        ids = prefix = None
        if self.prologue is not None:
            ids, prefix = self.prologue(tokens)
        x = self.embed(self.drop_labels(labels), tokens[:, :-1], prefix)
        out = self.forward_embeds(x)
        p = 0 if ids is None else ids.shape[1]
        visual = out[:, p:]
        ce = self.token_ce(visual, tokens)
        loss = ce.mean() + z_loss(visual, z_weight)
        terms = {}
        if ids is not None:
            # the prologue's only training signal: its ids, scored by the first Kp vocabulary rows
            scores = self.output.vocab_logits(out[:, :p])[..., : self.prologue.codebook_size]
            pro = F.cross_entropy(scores.float().flatten(0, 1), ids.flatten())
            loss = loss + pro
            terms["prologue_loss"] = pro.detach()
        return ARLoss(loss, ce.detach(), visual, terms)

    def token_ce(self, out: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token CE (B, L) in nats; with `restrict_k` over position t's first K_t codes only."""
        if not self.cfg.restrict_k:
            return self.output.cross_entropy(out, tokens)
        scores = self.output.vocab_logits(out).float()
        beyond = torch.arange(scores.shape[-1], device=scores.device) >= self.k_sizes[:, None]
        scores = scores.masked_fill(beyond, float("-inf"))
        ce = F.cross_entropy(scores.flatten(0, 1), tokens.flatten(), reduction="none")
        return ce.view_as(tokens)

    def set_codebook(self, codes: torch.Tensor) -> None:
        """Store what the model needs of the tokenizer's (vocab_size, D) codebook (saved too)."""
        if codes.shape[0] != self.cfg.vocab_size:
            raise ValueError(
                f"codebook has {codes.shape[0]} codes, the AR vocabulary {self.cfg.vocab_size}"
            )
        if self.cfg.token_input == "codes":
            self.input_codes.copy_(codes)
        self.output.set_codes(codes)

    def vocab_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Next-token scores (..., V) from the head's outputs."""
        return self.output.vocab_logits(logits)

    def new_cache(self, batch: int, extra: int = 0) -> KVCache:
        """Empty KV cache for `batch` sequences of up to 1 + extra + seq_len positions."""
        p = next(self.parameters())
        hd = self.cfg.dim // self.cfg.n_head
        # under autocast keys and values come out of the projections in the autocast dtype
        kind = p.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else p.dtype
        return KVCache(
            self.cfg.n_layer,
            batch,
            self.cfg.n_head,
            self.cfg.seq_len + 1 + extra,
            hd,
            p.device,
            dtype,
        )


def z_loss(logits: torch.Tensor, weight: float) -> torch.Tensor:
    """Auxiliary z-loss weight·mean(logsumexp(logits)²): keeps large-vocabulary logits bounded."""
    if weight == 0:
        return logits.new_zeros(())
    return weight * torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


def parameter_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameter counts by top-level component plus `total`."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        key = name.split(".")[0]
        out[key] = out.get(key, 0) + p.numel()
    out["total"] = sum(out.values())
    return out


def count_params(cfg: ARConfig) -> dict[str, int]:
    """Parameter breakdown of a model built on the `meta` device (no memory used)."""
    with torch.device("meta"):
        return parameter_breakdown(ARModel(cfg))


def format_breakdown(breakdown: dict[str, int]) -> str:
    """Human-readable breakdown, one component per line, in millions."""
    return "\n".join(f"{k:>16s}: {v / 1e6:9.2f}M" for k, v in breakdown.items())


def save_ar(
    path: str | os.PathLike, model: nn.Module, cfg: ARConfig, extra: dict | None = None
) -> None:
    """Atomically save weights, model config and extra metadata."""
    from vcq.train.checkpoint import save_checkpoint

    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model = getattr(model, "module", model)  # unwrap DDP
    save_checkpoint(
        path, {"config": asdict(cfg), "state_dict": model.state_dict(), "extra": extra or {}}
    )


def load_ar(path: str | os.PathLike, map_location="cpu") -> tuple[ARModel, dict]:
    """Load a model saved by save_ar (in eval mode); returns (model, extra)."""
    from vcq.train.checkpoint import require_checkpoint, restore_module

    blob = require_checkpoint(
        path, ["config", "state_dict", "extra"], map_location, rule="train_ar"
    )
    config, state = blob["config"], blob["state_dict"]
    if "prologue" in blob["extra"]:
        # written before the prologue was part of the model: its options and weights were `extra`
        old = blob["extra"].pop("prologue")
        derived = ("vocab", "seq_len", "ar_dim")
        config = {
            **config,
            "prologue": {k: v for k, v in old["config"].items() if k not in derived},
        }
        state = {**state, **{f"prologue.{k}": v for k, v in old["state_dict"].items()}}
    model = ARModel(ARConfig.from_dict(config))
    restore_module(model, state, path)
    return model.to(
        map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    ).eval(), blob["extra"]
