"""Time the VCQ nearest-code search: cosine schedule vs constant Kmax, as a ratio in one process."""

import argparse
import time

import torch

from vcq.quantizers.vcq import SharedCodebookQuantizer
from vcq.schedules import mean_codebook_size, schedule_k_sizes


def _time(q: SharedCodebookQuantizer, z: torch.Tensor, repeats: int) -> float:
    q.nearest(z)  # warm-up
    if z.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        q.nearest(z)
    if z.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    """Print seconds per search for both codebooks and the cosine/constant ratio."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--k-max", type=int, default=16384)
    p.add_argument("--k-min", type=int, default=16)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--groups", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    k_sizes = schedule_k_sizes("cosine", a.k_min, a.k_max, length=a.length)
    z = torch.randn(a.batch, a.length, a.dim, device=a.device)
    cos = SharedCodebookQuantizer(k_sizes, code_dim=a.dim, search_groups=a.groups).to(a.device)
    const = SharedCodebookQuantizer([a.k_max] * a.length, code_dim=a.dim).to(a.device)
    const.embedding.data.copy_(cos.embedding.data)
    t_cos, t_const = _time(cos, z, a.repeats), _time(const, z, a.repeats)
    print(f"K̄/Kmax = {mean_codebook_size(k_sizes) / a.k_max:.3f}  device={a.device}")
    print(f"constant {t_const * 1e3:.1f} ms  cosine {t_cos * 1e3:.1f} ms")
    print(f"ratio cosine/constant = {t_cos / t_const:.3f} (target <= 0.5)")


if __name__ == "__main__":
    main()
