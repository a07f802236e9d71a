"""Tests for the quantizer interface and the VCQ shared-codebook quantizer."""

import pytest
import torch

from vcq.quantizers import (
    base,
    build_quantizer,
    register_quantizer,
    usage_histogram,
    usage_stats,
)
from vcq.quantizers.vcq import SharedCodebookQuantizer
from vcq.schedules import schedule_k_sizes


def _sizes():
    return torch.as_tensor(schedule_k_sizes("cosine", 4, 64, length=32))


@pytest.mark.parametrize("l2_norm", [True, False])
@pytest.mark.parametrize("groups", [1, 3, 8, 32])
def test_indices_below_k_t_and_equal_brute_force(l2_norm, groups):
    torch.manual_seed(0)
    k_sizes = _sizes()
    q = SharedCodebookQuantizer(k_sizes, code_dim=8, l2_norm=l2_norm, search_groups=groups)
    z = torch.randn(5, 32, 8)
    out = q(z)
    assert out.indices.dtype == torch.long and out.indices.shape == (5, 32)
    assert bool((out.indices < k_sizes).all())
    zz = torch.nn.functional.normalize(z, dim=-1) if l2_norm else z
    dist = torch.cdist(zz, q.codebook_vectors()[None].expand(5, -1, -1))
    dist = dist.masked_fill(torch.arange(64) >= k_sizes[:, None], float("inf"))
    assert torch.equal(out.indices, dist.argmin(-1))
    assert torch.allclose(out.quantized, q.lookup(out.indices), atol=1e-6)


def test_constant_codebook_is_same_class():
    q = SharedCodebookQuantizer([64] * 16, code_dim=4)
    assert q.k_max == 64 and q.codebook_vectors().shape == (64, 4)


def test_straight_through_gradient_reaches_encoder_and_codebook():
    torch.manual_seed(0)
    q = SharedCodebookQuantizer(_sizes(), code_dim=8, l2_norm=False)
    z = torch.randn(2, 32, 8, requires_grad=True)
    out = q(z)
    (out.quantized.sum() + out.loss).backward()
    assert z.grad is not None and bool((z.grad.abs() > 0).all())
    assert q.embedding.grad.abs().sum() > 0


def test_ema_update_moves_used_codes_towards_latents():
    torch.manual_seed(0)
    q = SharedCodebookQuantizer([8] * 4, code_dim=4, l2_norm=False, update="ema", ema_decay=0.5)
    assert not any(p.requires_grad for p in q.parameters())
    z = torch.randn(16, 4, 4)
    before = q.embedding.clone()
    out = q(z)
    used = out.indices.unique()
    assert not torch.allclose(q.embedding[used], before[used])
    for _ in range(50):
        q(z)
    assert q(z).loss < out.loss
    q.eval()
    frozen = q.embedding.clone()
    q(z)
    assert torch.equal(q.embedding, frozen)


def test_registry_and_errors(monkeypatch):
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))  # the registration ends with the test
    with pytest.raises(ValueError, match="unknown quantizer kind 'nope'"):
        build_quantizer({"kind": "nope"}, [4])
    with pytest.raises(ValueError, match="update must be"):
        build_quantizer({"kind": "vcq", "vcq": {"update": "x"}}, [4])

    class Dummy(SharedCodebookQuantizer):
        pass

    register_quantizer("test_dummy", Dummy)
    q = build_quantizer({"kind": "test_dummy", "test_dummy": {"code_dim": 2}}, [4, 4])
    assert isinstance(q, Dummy) and q.code_dim == 2
    with pytest.raises(ValueError, match="'test_dummy' registered twice"):
        register_quantizer("test_dummy", SharedCodebookQuantizer)


def test_usage_histogram_and_stats():
    idx = torch.tensor([[0, 1], [0, 3], [2, 3]])
    hist = usage_histogram(idx, 4)
    assert hist.tolist() == [[2, 0, 1, 0], [0, 1, 0, 2]]
    stats = usage_stats(hist, torch.tensor([4, 4]))
    assert stats["utilization"].tolist() == [0.5, 0.5]


def test_dead_codes_restart_onto_latents_of_positions_that_can_use_them():
    from vcq.quantizers.vcq import SharedCodebookQuantizer

    torch.manual_seed(0)
    q = SharedCodebookQuantizer([2, 8], code_dim=4, restart_after=1).train()
    z = torch.randn(16, 2, 4)
    z[:, 0] = torch.tensor([1.0, 0, 0, 0])  # position 0 only ever sees one direction
    z[:, 1] = torch.tensor([0, 1.0, 0, 0])
    before = q.embedding.detach().clone()
    out = q(z)
    used = set(out.indices.flatten().tolist())
    for j in range(8):
        moved = not torch.equal(q.embedding[j], before[j])
        assert moved == (j not in used)
        if moved:  # codes >= K_0 = 2 are only reachable from position 1: they take its latent
            expected = z[0, 1] if j >= 2 else None
            if expected is not None:
                torch.testing.assert_close(q.embedding[j], expected)
    assert int(q.unused_steps.max()) == 0
    q.eval()(z)  # no restarts outside training
