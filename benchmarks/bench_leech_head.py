"""Factorised Λ24 head: joint log-probs of all 196,560 codes by embedding_bag vs a dense gather."""

import time

import torch

from vcq.quantizers.leech import FactorizedLeechHead, leech_codebook

B, REPEAT = 32, 3


def dense_log_probs(head: FactorizedLeechHead, logits: torch.Tensor) -> torch.Tensor:
    """Reference: gather (B, V, 24) coordinate log-probs and sum them (materialises B x V x 24)."""
    lp = logits.log_softmax(-1)  # (B, 24, 9)
    labels = head.code_labels.long()  # (V, 24)
    return lp[:, torch.arange(24)[None, :], labels].sum(-1)


def main() -> None:
    torch.set_num_threads(2)
    codes = leech_codebook()
    head = FactorizedLeechHead(8, len(codes))
    head.set_codes(codes)
    logits = torch.randn(B, 24, 9, generator=torch.Generator().manual_seed(0))
    times = {}
    for name, fn in (
        ("embedding_bag", head.vocab_logits),
        ("dense gather", lambda x: dense_log_probs(head, x)),
    ):
        fn(logits)  # warm-up
        t0 = time.perf_counter()
        for _ in range(REPEAT):
            fn(logits)
        times[name] = (time.perf_counter() - t0) / REPEAT
        print(f"{name:>14s}: {times[name] * 1e3:8.1f} ms per step for {B} x {len(codes)} codes")
    assert torch.allclose(head.vocab_logits(logits), dense_log_probs(head, logits), atol=1e-4)
    dense_gib = B * len(codes) * 24 * 4 / 2**30
    print(
        f"intermediate of the dense gather: {dense_gib:.2f} GiB "
        f"(embedding_bag: none beyond the {B} x V output)"
    )
    print(f"speed-up of embedding_bag: {times['dense gather'] / times['embedding_bag']:.1f}x")


if __name__ == "__main__":
    main()
