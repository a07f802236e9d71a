import math

import pytest
import torch

from vcq.quantizers.base import build_quantizer
from vcq.quantizers.bsq import bsq_entropy_terms
from vcq.schedules import schedule_k_sizes


def make(d=18):
    return build_quantizer({"kind": "bsq", "bsq": {"dim": d}}, [2**d] * 4)


def test_codes_unit_norm_and_min_distance():
    q = make(6)
    codes = q.codebook_vectors()
    assert codes.shape == (64, 6)
    assert torch.allclose(codes.norm(dim=1), torch.ones(64))
    dist = torch.cdist(codes, codes) + 10 * torch.eye(64)
    assert math.isclose(float(dist.min()), 2 / math.sqrt(6), rel_tol=1e-5)


def test_index_code_roundtrip_and_gradient():
    torch.manual_seed(0)
    q = make()
    z = torch.randn(2, 4, 18, requires_grad=True)
    out = q(z)
    assert bool((out.indices < 2**18).all())
    assert torch.allclose(q.lookup(out.indices), out.quantized, atol=1e-6)
    (out.quantized.sum() + out.loss).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="code_dim 18"):
        q(torch.randn(1, 4, 8))


def test_entropy_limits():
    d = 18
    # confident, diverse codes: per-sample entropy -> 0, codebook entropy -> d·log 2
    u = torch.tensor([[1.0] * d, [-1.0] * d]) / d**0.5
    h_s, h_c = bsq_entropy_terms(u, tau=0.01)
    assert h_s < 1e-3 and math.isclose(float(h_c), d * math.log(2), rel_tol=1e-4)
    # all samples identical and confident: codebook entropy -> 0
    h_s, h_c = bsq_entropy_terms(u[:1].repeat(3, 1), tau=0.01)
    assert h_c < 1e-3
    # huge temperature: both maximal
    h_s, h_c = bsq_entropy_terms(u, tau=1e6)
    assert math.isclose(float(h_s), d * math.log(2), rel_tol=1e-4)


def test_vcq_schedule_indices_below_k_t_and_equal_brute_force():
    # cosine schedule Kmin 2 -> Kmax 64 over 32 positions: K_t is rounded down to a power of two
    d = 6
    k_sizes = schedule_k_sizes("cosine", 2, 2**d, length=32)
    q = build_quantizer({"kind": "bsq", "bsq": {"dim": d}}, k_sizes)
    bits = torch.tensor([int(k).bit_length() - 1 for k in k_sizes])
    assert bits[0] == 1 and bits[-1] == d and bool((2**bits <= torch.as_tensor(k_sizes)).all())
    assert bool((2 ** (bits + 1) > torch.as_tensor(k_sizes)).all())
    torch.manual_seed(0)
    z = torch.randn(50, 32, d)
    out = q(z)
    assert bool((out.indices < torch.as_tensor(k_sizes)).all())
    assert bool((out.indices < 2**bits).all()) and bool((out.indices >= 2 ** (bits - 1)).any())
    # nearest among the first 2^b_t codes, by brute force over the whole 2^d codebook
    u = torch.nn.functional.normalize(z, dim=-1)
    dist = torch.cdist(u, q.codebook_vectors()[None].expand(50, -1, -1))
    dist = dist.masked_fill(torch.arange(2**d) >= (2**bits)[:, None], float("inf"))
    assert torch.equal(out.indices, dist.argmin(-1))
    assert torch.allclose(q.lookup(out.indices), out.quantized, atol=1e-6)
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(50, 32))


def test_fixed_bits_carry_no_entropy():
    # position 0 keeps 1 of 4 bits, position 1 all 4: per-sample entropy is their mean (1 + 4)/2
    # bits
    # (at maximal temperature), and the codebook entropy counts each coordinate once
    q = build_quantizer({"kind": "bsq", "bsq": {"dim": 4, "tau": 1e6}}, [2, 16])
    out = q(torch.randn(3, 2, 4))
    assert math.isclose(float(out.stats["entropy_sample"]), 2.5 * math.log(2), rel_tol=1e-4)
    assert math.isclose(float(out.stats["entropy_codebook"]), 4 * math.log(2), rel_tol=1e-4)
