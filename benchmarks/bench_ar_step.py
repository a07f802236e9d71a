"""AR training step of vcq.ar against a plain reference GPT written here, at the same shapes.

Both are LlamaGen-style (class token prefix, RMSNorm, SwiGLU, RoPE, untied head) and take the
same step: forward, flattened cross-entropy, backward, grad clip 1.0, AdamW (fused on CUDA).
Dropout is off in both. Timings are interleaved in one process; the medians are compared.
Last line: the time ratio project / reference (target <= 1.05).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vcq.ar import ARConfig, ARModel
from vcq.train.common import adamw


class RefBlock(nn.Module):
    """Pre-norm block: causal SDPA with rotate-half RoPE, SwiGLU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(dim, eps=1e-5), nn.RMSNorm(dim, eps=1e-5)
        self.qkv, self.o = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.n1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )

        def rope(u: torch.Tensor) -> torch.Tensor:
            u1, u2 = u.chunk(2, dim=-1)
            return u * cos + torch.cat([-u2, u1], dim=-1) * sin

        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(b, t, d))
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class RefGPT(nn.Module):
    """Class-conditional decoder-only transformer, written as plainly as possible."""

    def __init__(
        self, vocab: int, classes: int, length: int, dim: int, layers: int, heads: int, hidden: int
    ) -> None:
        super().__init__()
        self.cls, self.tok = nn.Embedding(classes + 1, dim), nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(RefBlock(dim, heads, hidden) for _ in range(layers))
        self.norm, self.head = nn.RMSNorm(dim, eps=1e-5), nn.Linear(dim, vocab, bias=False)
        hd = dim // heads
        ang = torch.outer(
            torch.arange(length).float(), 1.0 / 10000 ** (torch.arange(0, hd, 2).float() / hd)
        )
        self.register_buffer("cos", torch.cat([ang.cos()] * 2, -1), persistent=False)
        self.register_buffer("sin", torch.cat([ang.sin()] * 2, -1), persistent=False)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls(labels)[:, None], self.tok(tokens[:, :-1])], 1)
        for blk in self.blocks:
            x = blk(x, self.cos, self.sin)
        return self.head(self.norm(x))


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    tok: torch.Tensor,
    lab: torch.Tensor,
    project: bool,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step; the loss stays on the device."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(tok, lab).logits
        if project:
            loss = model.token_ce(logits, tok).mean()
        else:
            loss = F.cross_entropy(logits.float().flatten(0, 1), tok.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=12)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ARConfig(
        vocab_size=args.vocab,
        seq_len=args.length,
        num_classes=1000,
        n_layer=args.layers,
        n_head=args.heads,
        dim=args.dim,
        dropout=0.0,
        token_dropout=0.0,
        class_dropout=0.0,
    )
    project = ARModel(cfg).to(device)
    hidden = project.layers[0].feed_forward.w1.out_features
    ref = RefGPT(args.vocab, 1000, args.length, args.dim, args.layers, args.heads, hidden).to(
        device
    )
    n_proj = sum(q.numel() for q in project.parameters())
    n_ref = sum(q.numel() for q in ref.parameters())
    print(
        f"parameters: project {n_proj / 1e6:.2f}M, reference {n_ref / 1e6:.2f}M; "
        f"B={args.batch} L={args.length} V={args.vocab} on {device}"
    )
    models = {"project": project, "reference": ref}
    opts = {
        k: adamw(list(m.parameters()), device, lr=1e-4, betas=(0.9, 0.96))
        for k, m in models.items()
    }
    tok = torch.randint(0, args.vocab, (args.batch, args.length), device=device)
    lab = torch.randint(0, 1000, (args.batch,), device=device)
    times: dict[str, list[float]] = {k: [] for k in models}
    for r in range(args.repeats + 2):
        for name, m in models.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_step(m, opts[name], tok, lab, name == "project", device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if r >= 2:  # two warm-up steps
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, t in med.items():
        print(f"{name:>10s}: {t * 1e3:8.1f} ms/step  {args.batch * args.length / t:9.0f} tokens/s")
    assert math.isclose(n_proj, n_ref, rel_tol=1e-6), "the two models must have the same parameters"
    print(
        f"AR step time ratio project/reference: {med['project'] / med['reference']:.3f} "
        "(target <= 1.05)"
    )


if __name__ == "__main__":
    main()
