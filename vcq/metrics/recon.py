"""Reconstruction metrics: PSNR, the mean-colour baseline and per-position codebook usage."""

from __future__ import annotations

import numpy as np
import torch

from vcq.data.images import to_uint8_nhwc
from vcq.numerics import inference_autocast
from vcq.quantizers import usage_histogram, usage_stats
from vcq.train.log import progress


def psnr_sum(x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Sum of per-image PSNR (dB, images in [-1, 1] measured on [0, 1]) and the image count."""
    mse = (((x - y) / 2) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).sum()), x.shape[0]


class ReconStats:
    """Running PSNR, mean-colour-baseline PSNR and code usage over batches.

    The baseline replaces each image by its own mean colour: what a tokenizer that keeps only the
    average colour would score.
    """

    def __init__(self, k_sizes: torch.Tensor) -> None:
        self.k_sizes = torch.as_tensor(k_sizes)
        self.hist = torch.zeros(len(self.k_sizes), int(self.k_sizes.max()), dtype=torch.long)
        self.psnr = self.base = 0.0
        self.n = 0

    def update(self, x: torch.Tensor, recon: torch.Tensor, indices: torch.Tensor) -> None:
        """Add a batch of originals, reconstructions (both in [-1, 1]) and token indices."""
        x, recon = x.float().cpu(), recon.float().cpu().clamp(-1, 1)
        s, n = psnr_sum(x, recon)
        b, _ = psnr_sum(x, x.mean((2, 3), keepdim=True).expand_as(x))
        self.psnr, self.base, self.n = self.psnr + s, self.base + b, self.n + n
        self.hist += usage_histogram(indices.cpu(), self.hist.shape[1])

    def result(self) -> dict:
        """PSNR, baseline PSNR and per-position usage (utilization and perplexity)."""
        usage = usage_stats(self.hist, self.k_sizes)
        return {
            "psnr": self.psnr / max(self.n, 1),
            "psnr_mean_colour_baseline": self.base / max(self.n, 1),
            # the codebook is shared by all positions: a code counts as used at any of them
            "codebook_usage": float((self.hist.sum(0) > 0).float().mean()),
            "usage_per_position": [
                {
                    "t": t,
                    "k_t": int(k),
                    "used": int(u),
                    "utilization": float(r),
                    "perplexity": float(p),
                }
                for t, (k, u, r, p) in enumerate(
                    zip(
                        self.k_sizes,
                        usage["used"],
                        usage["utilization"],
                        usage["perplexity"],
                        strict=True,
                    )
                )
            ],
        }


@torch.no_grad()
def reconstruct(
    model,
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    device: torch.device,
    recon_out: np.ndarray,
    orig_out: np.ndarray,
) -> dict:
    """Encode and decode every image of `dataset` with a tokenizer; return the ReconStats result.

    uint8 NHWC originals and reconstructions are written into `orig_out` / `recon_out` (memory-maps
    at scale), for rFID.
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    stats = ReconStats(torch.as_tensor(model.k_sizes))
    bar, row = progress(len(loader), desc="recon"), 0
    for x, _ in loader:
        with inference_autocast(device):
            idx, q = model.encode(x.to(device))
            recon = model.decode(q)
        stats.update(x, recon, idx)
        recon_out[row : row + len(x)], orig_out[row : row + len(x)] = (
            to_uint8_nhwc(recon),
            to_uint8_nhwc(x),
        )
        row += len(x)
        bar.update(1)
    bar.close()
    return stats.result()
