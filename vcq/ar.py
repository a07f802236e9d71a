"""Class-conditional decoder-only transformer over token sequences (LlamaGen-style)."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from vcq.quantizers import leech

HEADS = ("softmax", "leech_factorized")
TOKEN_INPUTS = ("table", "codes")


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
    head: str = "softmax"  # or leech_factorized: 24 nine-way classifiers over Λ24 code coordinates
    token_input: str = "table"  # or codes: a linear map of the tokenizer's frozen code vectors
    code_dim: int = 0  # code vector size, for token_input codes (set from the tokenizer)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown AR head {self.head!r}; expected one of {HEADS}")
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


class FactorizedLeechHead(nn.Module):
    """24 nine-way classifiers, one per coordinate of the unscaled code in {-4..4} (Leech paper Eq.
    12).

    The joint log-probability of a code is the sum of its 24 coordinate log-probabilities; the head
    keeps the coordinate labels of every vocabulary entry so it can score and train on code indices.
    """

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, leech.DIM * leech.COORDINATES)
        # saved with the weights so a checkpoint samples without rebuilding the tokenizer's codebook
        self.register_buffer("code_labels", torch.zeros(vocab_size, leech.DIM, dtype=torch.uint8))

    @staticmethod
    def labels(codes: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Per-coordinate class labels (..., 24) in 0..8 for code indices into unit-norm `codes`."""
        return leech.lattice_coordinates(codes[indices]) + leech.COORDINATES // 2

    def set_codes(self, codes: torch.Tensor) -> None:
        """Record the coordinate labels of the (vocab_size, 24) unit-norm codebook of the tokens."""
        if codes.shape != (self.code_labels.shape[0], leech.DIM):
            raise ValueError(
                f"codebook {tuple(codes.shape)} does not match "
                f"vocab {self.code_labels.shape[0]} x {leech.DIM}"
            )
        self.code_labels.copy_(self.labels(codes, torch.arange(len(codes))).to(torch.uint8))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (..., 24, 9) from hidden states (..., dim)."""
        return self.proj(h).unflatten(-1, (leech.DIM, leech.COORDINATES))

    def cross_entropy(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """−log p(code) per token (...): the sum of the 24 coordinate cross-entropies."""
        target = self.code_labels[tokens].long()
        return -logits.float().log_softmax(-1).gather(-1, target[..., None])[..., 0].sum(-1)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Joint log-probability (..., vocab_size) of every code from logits (..., 24, 9)."""
        lead = logits.shape[:-2]
        flat = logits.float().log_softmax(-1).reshape(-1, leech.DIM * leech.COORDINATES)
        cols = self.code_labels.long() + leech.COORDINATES * torch.arange(
            leech.DIM, device=logits.device
        )
        # a (vocab, 24) gather-and-sum without materialising (N, vocab, 24)
        joint = F.embedding_bag(cols, flat.T.contiguous(), mode="sum")
        return joint.T.reshape(*lead, -1)


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


class ARModel(nn.Module):
    """Sequence = [class token, optional prefix embeddings, image tokens]; predicts the next."""

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
        if cfg.head == "leech_factorized":
            self.output = FactorizedLeechHead(cfg.dim, cfg.vocab_size)
        else:
            self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # room for class token + prologue tokens; extended lazily if a longer prefix arrives
        cos, sin = rope_tables(cfg.dim // cfg.n_head, cfg.seq_len + 1, cfg.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)

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

    def forward(
        self, tokens: torch.Tensor, labels: torch.Tensor, prefix_embeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V): position t predicts tokens[:, t] from tokens[:, :t]."""
        labels = self.drop_labels(labels)
        x = self.embed(labels, tokens[:, :-1], prefix_embeds)
        logits = self.forward_embeds(x)
        p = 0 if prefix_embeds is None else prefix_embeds.shape[1]
        return logits[:, p:]

    def set_codebook(self, codes: torch.Tensor) -> None:
        """Store what the model needs of the tokenizer's (vocab_size, D) codebook (saved too)."""
        if codes.shape[0] != self.cfg.vocab_size:
            raise ValueError(
                f"codebook has {codes.shape[0]} codes, the AR vocabulary {self.cfg.vocab_size}"
            )
        if self.cfg.token_input == "codes":
            self.input_codes.copy_(codes)
        if self.cfg.head == "leech_factorized":
            self.output.set_codes(codes)

    def vocab_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Next-token scores: the head's logits, or the factorised joint log-probs."""
        return logits if self.cfg.head == "softmax" else self.output.log_probs(logits)

    def position_ce(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy (B, L) in nats of the head's logits against `tokens`."""
        if self.cfg.head == "softmax":
            # (B·L, V) rows: 2.5-3x faster than cross-entropy over the transposed (B, V, L) layout
            flat = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="none"
            )
            return flat.view_as(tokens)
        return self.output.cross_entropy(logits, tokens)

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
    model = ARModel(ARConfig.from_dict(blob["config"]))
    restore_module(model, blob["state_dict"], path)
    return model.to(
        map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    ).eval(), blob["extra"]
