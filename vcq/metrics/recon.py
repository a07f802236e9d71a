"""Reconstruction metrics: PSNR, the mean-colour baseline and per-position codebook usage."""

from __future__ import annotations

import torch

from vcq.quantizers import usage_histogram, usage_stats


def psnr_sum(x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Sum of per-image PSNR (dB, images in [-1, 1] measured on [0, 1]) and the image count."""
    mse = (((x - y) / 2) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).sum()), x.shape[0]


class ReconStats:
    """Running PSNR, mean-colour-baseline PSNR and code usage over batches."""

    def __init__(self, sizes: torch.Tensor, mean_colour: torch.Tensor) -> None:
        self.sizes = torch.as_tensor(sizes)
        self.mean_colour = mean_colour.view(1, 3, 1, 1)
        self.hist = torch.zeros(len(self.sizes), int(self.sizes.max()), dtype=torch.long)
        self.psnr = self.base = 0.0
        self.n = 0

    def update(self, x: torch.Tensor, recon: torch.Tensor, indices: torch.Tensor) -> None:
        """Add a batch of originals, reconstructions (both in [-1, 1]) and token indices."""
        x, recon = x.float().cpu(), recon.float().cpu().clamp(-1, 1)
        s, n = psnr_sum(x, recon)
        b, _ = psnr_sum(x, self.mean_colour.expand_as(x))
        self.psnr, self.base, self.n = self.psnr + s, self.base + b, self.n + n
        self.hist += usage_histogram(indices.cpu(), self.hist.shape[1])

    def result(self) -> dict:
        """PSNR, baseline PSNR and per-position usage (utilization and perplexity)."""
        usage = usage_stats(self.hist, self.sizes)
        return {
            "psnr": self.psnr / max(self.n, 1),
            "psnr_mean_colour_baseline": self.base / max(self.n, 1),
            "usage_per_position": [
                {"t": t, "k_t": int(k), "used": int(u), "utilization": float(r), "perplexity": float(p)}
                for t, (k, u, r, p) in enumerate(zip(
                    self.sizes, usage["used"], usage["utilization"], usage["perplexity"]
                ))
            ],
        }
