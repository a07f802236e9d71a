import torch

from vcq.quantizers.base import build_quantizer, usage_histogram, usage_stats
from vcq.quantizers.bridge import bridge_lr_at

CFG = {"kind": "vcq_bridge", "code_dim": 8, "bridge_group": 4, "bridge_width": 32, "bridge_heads": 2}


def test_gradients_reach_bridge_and_export_loads():
    torch.manual_seed(0)
    sizes = [16, 32, 64]
    q = build_quantizer(CFG, sizes)
    z = torch.randn(4, 3, 8)
    out = q(z)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.bridge.compress.parameters())
    assert q.embedding.grad.abs().sum() > 0
    assert bool((out.indices < torch.tensor(sizes)).all())
    plain = build_quantizer({"kind": "vcq", "code_dim": 8}, sizes)
    plain.embedding.data.copy_(q.export())
    assert torch.allclose(plain.codebook_vectors(), q.codebook_vectors(), atol=1e-6)
    assert torch.equal(plain(z).indices, out.indices)
    stats = usage_stats(usage_histogram(out.indices, q.k_max), q.codebook_sizes)
    assert stats["utilization"].shape == (3,)


def test_lr_schedule():
    assert bridge_lr_at(0, 1000, warmup_steps=10) == 1e-5
    assert abs(bridge_lr_at(9, 1000, warmup_steps=10) - 1e-4) < 1e-12
    assert abs(bridge_lr_at(1000, 1000, warmup_steps=10) - 1e-6) < 1e-12
