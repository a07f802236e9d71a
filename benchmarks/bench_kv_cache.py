"""Sampling throughput with the KV cache vs recomputing the prefix at each step (CPU, L = 256)."""

import time

import numpy as np
import torch

from vcq.ar import ARConfig, ARModel
from vcq.sampling import generate

L, B = 256, 8


@torch.no_grad()
def generate_recompute(model: ARModel, labels: torch.Tensor, k_sizes: np.ndarray) -> torch.Tensor:
    """Reference sampler without a cache: a full forward over the prefix at every position."""
    out = torch.empty(labels.shape[0], 0, dtype=torch.long)
    for t in range(len(k_sizes)):
        logits = model.forward_embeds(model.embed(labels, out))[:, -1, : int(k_sizes[t])]
        out = torch.cat([out, torch.multinomial(logits.softmax(-1), 1)], 1)
    return out


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = ARModel(
        ARConfig(vocab_size=1024, seq_len=L, num_classes=10, n_layer=4, n_head=4, dim=128)
    ).eval()
    k = np.full(L, 1024)
    labels = torch.arange(B) % 10
    preset = {"guidance": "none", "temperature": 1.0}
    times = {}
    for name, fn in [
        ("kv-cache", lambda: generate(model, labels, k, preset)),
        ("recompute", lambda: generate_recompute(model, labels, k)),
    ]:
        t0 = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t0
        print(f"{name:>10s}: {B / times[name]:8.2f} images/s  {B * L / times[name]:9.1f} tokens/s")
    print(f"speed-up of the KV cache: {times['recompute'] / times['kv-cache']:.1f}x")


if __name__ == "__main__":
    main()
