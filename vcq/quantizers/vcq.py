"""VCQ shared-codebook quantizer: position t searches only the first K_t entries of one codebook."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vcq.numerics import full_precision
from vcq.quantizers.base import Quantizer, QuantizerOutput, code_counts, option


def position_groups(k_sizes: torch.Tensor, num_groups: int) -> list[tuple[torch.Tensor, int]]:
    """Split positions, sorted by K_t, into equal-count groups; each searches its own max K_t."""
    order = torch.argsort(k_sizes, stable=True)
    groups = []
    for chunk in torch.tensor_split(order, min(num_groups, len(order))):
        if len(chunk):
            groups.append((chunk, int(k_sizes[chunk].max())))
    return groups


class SharedCodebookQuantizer(Quantizer):
    """One codebook of Kmax entries shared by all positions; a constant codebook is K_t = Kmax."""

    options = {
        "code_dim": option(16, "Code vector dimension.", type="integer", minimum=1),
        "l2_norm": option(True, "L2-normalise latents and codes (cosine search).", type="boolean"),
        "update": option("loss", "Codebook learning rule.", enum=["loss", "ema"]),
        "commitment_weight": option(
            0.25, "β of the commitment term inside the quantizer loss.", type="number"
        ),
        "codebook_weight": option(
            1.0, "Weight of the codebook term (loss update only).", type="number"
        ),
        "ema_decay": option(0.99, "EMA decay (ema update only).", type="number"),
        "ema_epsilon": option(
            1.0e-5, "Laplace smoothing epsilon (ema update only).", type="number"
        ),
        "search_groups": option(
            8, "Position groups of the K_t-bucketed search.", type="integer", minimum=1
        ),
        "restart_after": option(
            0,
            "Replace a code unused for this many training steps by a random current latent of a "
            "position that can use it (0 = never; against codebook collapse).",
            type="integer",
            minimum=0,
        ),
    }

    def __init__(
        self,
        k_sizes: Sequence[int] | torch.Tensor,
        code_dim: int = 16,
        l2_norm: bool = True,
        update: str = "loss",
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
        search_groups: int = 8,
        restart_after: int = 0,
    ) -> None:
        super().__init__(k_sizes)
        if update not in ("loss", "ema"):
            raise ValueError(f"update must be 'loss' or 'ema', got {update!r}")
        self.code_dim, self.l2_norm, self.update = code_dim, l2_norm, update
        self.commitment_weight, self.codebook_weight = commitment_weight, codebook_weight
        self.ema_decay, self.ema_epsilon = ema_decay, ema_epsilon
        init = torch.randn(self.k_max, code_dim)
        if l2_norm:
            init = F.normalize(init, dim=-1)
        if update == "ema":
            self.register_buffer("embedding", init)
            self.register_buffer("cluster_size", torch.ones(self.k_max))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.embedding = nn.Parameter(init)
        self._groups = position_groups(self.k_sizes, search_groups)
        self.restart_after = restart_after
        self.register_buffer("unused_steps", torch.zeros(self.k_max, dtype=torch.long))

    @classmethod
    def latent_dim(cls, options: dict) -> int:
        """The code dimension: latents and codes have the same size."""
        return int(options.get("code_dim", cls.options["code_dim"]["default"]))

    def codebook_vectors(self) -> torch.Tensor:
        """The (Kmax, D) codebook as used for search (normalised when l2_norm)."""
        return F.normalize(self.embedding, dim=-1) if self.l2_norm else self.embedding

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, L, D) for indices (B, L)."""
        return F.embedding(indices, self.codebook_vectors())

    @torch.no_grad()
    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Exact masked nearest-code indices (B, L): cost ∝ Σ_groups |group|·max K in group.

        Always in fp32, also under bf16 autocast: bf16 distances reassign a few % of the codes.
        """
        with full_precision(z.device):
            return self._nearest_fp32(z.float())

    def _nearest_fp32(self, z: torch.Tensor) -> torch.Tensor:
        codes = self.codebook_vectors().float()
        k_sizes = self.k_sizes.to(z.device)
        indices = torch.empty(z.shape[:2], dtype=torch.long, device=z.device)
        if self._groups[0][0].device != z.device:  # moved once: a copy per call would sync the host
            self._groups = [(positions.to(z.device), k) for positions, k in self._groups]
        for positions, k in self._groups:
            zg = z[:, positions]  # (B, G, D)
            cb = codes[:k]
            # ||z||² is constant per row, so it is left out of the argmin
            dist = (cb * cb).sum(-1) - 2 * zg @ cb.T  # (B, G, k)
            invalid = torch.arange(k, device=z.device) >= k_sizes[positions, None]
            dist = dist.masked_fill(invalid, float("inf"))
            indices[:, positions] = dist.argmin(-1)
        return indices

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (B, L, D) with a straight-through gradient to z."""
        if self.l2_norm:
            z = F.normalize(z, dim=-1)
        indices = self.nearest(z.detach())
        q = self.lookup(indices).to(z.dtype)
        commit = F.mse_loss(z, q.detach())
        if self.update == "loss":
            loss = (
                self.codebook_weight * F.mse_loss(q, z.detach()) + self.commitment_weight * commit
            )
        else:
            loss = self.commitment_weight * commit
        # one count of this batch's codes serves the statistics and, summed over ranks, the updates
        counts = code_counts(indices, self.k_max)
        ema = self.training and self.update == "ema"
        restart = self.training and self.restart_after > 0
        if ema or restart:
            total = counts.clone()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(total)
            if ema:
                self._ema_update(z.detach().float(), indices, total)
            if restart:
                self._restart_dead_codes(z.detach().float(), total)
        quantized = z + (q - z).detach()
        return QuantizerOutput(quantized, indices, loss, self._batch_stats(counts))

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor) -> None:
        """EMA codebook step from this batch's latents and the code `counts` of all ranks."""
        flat_idx, flat_z = indices.reshape(-1), z.reshape(-1, z.shape[-1])
        sums = torch.zeros_like(self.embed_sum).index_add_(0, flat_idx, flat_z)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        d = self.ema_decay
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        # Laplace smoothing keeps never-chosen codes from dividing by zero
        n = self.cluster_size.sum()
        eps = self.ema_epsilon
        smoothed = (self.cluster_size + eps) / (n + self.k_max * eps) * n
        self.embedding.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor, counts: torch.Tensor) -> None:
        """Move codes unused for `restart_after` steps onto random current latents that may use
        them.

        A code j is only reachable from positions with K_t > j, so its new value is drawn from those
        positions. Rank 0 draws and broadcasts, keeping the codebook identical across DDP ranks.
        """
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = torch.nonzero(self.unused_steps >= self.restart_after).flatten()
        if dead.numel() == 0:
            return
        k_sizes = self.k_sizes.to(z.device)
        reachable = (k_sizes[None, :] > dead[:, None]).float()  # (n_dead, L)
        t = torch.multinomial(reachable, 1).flatten()
        b = torch.randint(z.shape[0], (dead.numel(),), device=z.device)
        fresh = z[b, t]
        if distributed:
            torch.distributed.broadcast(fresh, src=0)
        self.embedding.data[dead] = fresh
        if self.update == "ema":
            self.cluster_size[dead] = 1.0
            self.embed_sum[dead] = fresh
        self.unused_steps[dead] = 0

    @torch.no_grad()
    def _batch_stats(self, counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Perplexity and used fraction of this rank's code `counts`."""
        p = counts / counts.sum()
        perplexity = torch.exp(-(p * p.clamp_min(1e-12).log()).sum())
        return {"perplexity": perplexity, "used_fraction": (counts > 0).float().mean()}
